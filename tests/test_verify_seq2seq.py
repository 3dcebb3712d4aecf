"""symrnn.verify.verify_seq2seq: a textbook encoder-decoder (tests/corpus/dlfs2_seq2seq.py, plain and
peeky) is verified right, and each planted mistake is caught and placed in the right part (bridge,
decoder, peeky context) with the first wrong step; symrnn.Seq2Seq's own gradients with a 0.1% error
in one entry are caught and placed in the readout, attention, bridge, decoder or encoder."""
import numpy as np
import pytest

import symrnn as sr
import symrnn.verify as V
from symrnn.errors import UnknownNameError, UserCodeError

from corpus import dlfs2_seq2seq as textbook

DLFS2 = dict(layout="dlfs2", bridge="copy", reduction="mean", batch_major=True)


@pytest.mark.parametrize("peeky", [False, True])
def test_the_textbook_seq2seq_is_right(peeky):
    result = V.verify_seq2seq(textbook.make_loss(peeky), "lstm", context=peeky, context_first=peeky, **DLFS2)
    assert result.ok, str(result)
    assert result.verdict() == "RIGHT: lstm seq2seq code, 10 gradients exact (float64 error model, 4 cases)"


@pytest.mark.parametrize("peeky, bug, part, path, step", [
    (False, "bridge_dropped", "bridge", "initial state", None),
    (True, "bridge_dropped", "bridge", "final state", None),
    (False, "decoder_drop_recurrent", "decoder", None, 5),
    (True, "decoder_drop_recurrent", "decoder", None, 5),
    (True, "peeky_context_dropped", "decoder", "context (decoder input)", None),
])
def test_a_planted_mistake_is_caught_and_placed(peeky, bug, part, path, step):
    result = V.verify_seq2seq(textbook.make_loss(peeky, bug), "lstm", context=peeky, context_first=peeky, **DLFS2)
    loc = result.localisation
    assert not result.ok and (loc["part"], loc["path"], loc["step"]) == (part, path, step), str(result)
    assert result.verdict().startswith("WRONG: denc.Wx") and result.verdict().endswith(
        f": {part}" + (f", step {step}" if step else ""))


def own(model, wrong=None, factor=1.001):
    """symrnn.Seq2Seq's exact loss and gradients, one entry of ``wrong`` off by ``factor``."""
    def loss_fn(params, src, tgt_in, tgt_out):
        loss, grads = model.loss_and_grads(params, src, tgt_in, tgt_out)
        grads = {k: np.array(v) for k, v in grads.items()}
        if wrong is not None:
            grads[wrong][(-1,) * grads[wrong].ndim] *= factor
        return loss, grads
    return loss_fn


OPTIONS = {"luong": dict(attention="general", bridge="tanh"),
           "bahdanau": dict(attention="additive", attention_style="bahdanau", bridge="linear")}


@pytest.mark.parametrize("style", sorted(OPTIONS))
def test_attention_models_right_and_each_part_named(style):
    options = OPTIONS[style]
    model = sr.Seq2Seq("gru", src_vocab=12, tgt_vocab=10, E=3, H=4, **options)
    assert V.verify_seq2seq(own(model), "gru", **options).ok
    for key, part in (("out.V", "readout"), ("attn.W_a", "attention"), ("bridge.W_h", "bridge"),
                      ("dec.W_z", "decoder"), ("enc.l0.fwd.U_r", "encoder")):
        result = V.verify_seq2seq(own(model, key), "gru", **options)
        assert not result.ok and result.localisation["part"] == part, (key, str(result))
        assert result.wrong[0].name == "d" + key


def test_a_dense_source_gradient_is_judged_with_its_step():
    model = sr.Seq2Seq("rnn-tanh", src_vocab=None, tgt_vocab=10, E=3, H=4)

    def loss_fn(params, src, tgt_in, tgt_out):
        loss, grads = own(model)(params, src, tgt_in, tgt_out)
        if len(grads["src"]) > 2:
            grads["src"][2] *= 1.001  # wrong at source step 3 alone: a local derivative of step 3
        return loss, grads

    result = V.verify_seq2seq(loss_fn, "rnn-tanh", src_vocab=None)
    assert [g.name for g in result.wrong] == ["dsrc"], str(result)
    # not the message from step 4 to 3 (tryout 4, F3): that would reach steps 1 and 2 too
    loc = result.localisation
    assert (loc["part"], loc["step"]) == ("encoder", 3), str(result)
    assert "in the encoder (t counts its steps from 1), a local derivative at t=3 is wrong" in loc["message"], loc


def test_bad_declarations_and_returns_are_refused():
    model = sr.Seq2Seq("lstm", src_vocab=12, tgt_vocab=10, E=3, H=4)
    with pytest.raises(UnknownNameError, match=r"args=\('params', 'source'\): the roles are"):
        V.verify_seq2seq(own(model), args=("params", "source"))
    with pytest.raises(UnknownNameError, match="context_first=True orders the context"):
        V.verify_seq2seq(own(model), context_first=True)
    with pytest.raises(UnknownNameError, match="layout='dlfs2' names the weights of one unidirectional encoder"):
        V.verify_seq2seq(own(model), layout="dlfs2", bidirectional=True)

    with pytest.raises(UserCodeError, match=r"returned no gradient for \['out.c'\]"):
        V.verify_seq2seq(lambda *a: (own(model)(*a)[0], {k: v for k, v in own(model)(*a)[1].items() if k != "out.c"}))
    with pytest.raises(UserCodeError, match=r"returned gradients under \['outc'\], which name no parameter"):
        V.verify_seq2seq(lambda *a: (own(model)(*a)[0], {("outc" if k == "out.c" else k): v
                                                         for k, v in own(model)(*a)[1].items()}))
    with pytest.raises(UserCodeError, match=r"under \['dec.W'\], which name no parameter"):
        V.verify_seq2seq(lambda *a: (own(model)(*a)[0], {**own(model)(*a)[1], "dec.W": 0}))

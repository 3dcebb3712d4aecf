"""Sequence to sequence beyond torch: the unrolled scalar program, central differences, the paths by
which the gradient reaches the encoder, the rules over source positions, and bad input."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symrnn as sr
from symrnn.errors import ShapeError, UnknownNameError
from symrnn.engine.examples import minimal_gated_unit, peephole_lstm
from symrnn.engine.sequence_rules import SEQUENCE_RULES
from symrnn.oracles.seq2seq import ScalarSeq2SeqOracle


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b), initial=0.0) / max(1e-10, np.max(np.abs(b), initial=0.0)))


@functools.lru_cache(maxsize=None)
def seq2seq(**kwargs):
    return sr.Seq2Seq(**kwargs)


def data(m, S, T, N, pad, seed):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, m.src_vocab, (S, N)) if m.src_vocab is not None else rng.normal(size=(S, N, m.E))
    tin, tout = rng.integers(0, m.tgt_vocab, (T, N)), rng.integers(0, m.tgt_vocab, (T, N))
    smask = tmask = None
    if pad:
        smask = np.arange(S)[:, None] < rng.integers(1, S + 1, N)
        tmask = np.arange(T)[:, None] < rng.integers(1, T + 1, N)
    return src, tin, tout, smask, tmask


# -- the unrolled scalar program ------------------------------------------------------------------
SCALAR_CASES = [
    dict(encoder_cell="lstm", decoder_cell="gru", src_vocab=3, tgt_vocab=3, E=2, H=2, bidirectional=True,
         num_layers=2, merge="sum", bridge="tanh", context=True, attention="additive", attention_style="bahdanau",
         reduction="token-mean"),
    dict(encoder_cell="rnn-tanh", decoder_cell="lstm", src_vocab=None, tgt_vocab=3, E=2, H=2, bridge="copy",
         attention="general", reduction="sum"),
    dict(encoder_cell="gru-reset-before", decoder_cell="rnn-sigmoid", src_vocab=4, tgt_vocab=3, E=2, H=2,
         bidirectional=True, attention="dot", H_dec=4, bridge="linear", reduction="mean"),
    dict(encoder_cell="gru-chung", decoder_cell="rnn-relu", src_vocab=3, tgt_vocab=2, E=1, H=2, context=True,
         bridge="copy", reduction="batch-mean"),
    dict(encoder_cell=peephole_lstm(), decoder_cell=minimal_gated_unit(), src_vocab=3, tgt_vocab=3, E=2, H=2,
         bridge="linear", context=True, attention="general", attention_style="bahdanau", reduction="token-mean"),
]


def _case_id(kw):
    cell = kw["encoder_cell"]
    return f"{getattr(cell, 'name', cell)}-{kw.get('attention')}"


@pytest.mark.parametrize("kw", SCALAR_CASES, ids=_case_id)
def test_agrees_with_the_unrolled_scalar_program(kw):
    """Tiny sizes, padded source and target of unequal lengths; cells torch does not have included (Cho's GRU,
    the Chung convention, a sigmoid RNN, and user-defined cells: a peephole LSTM, a minimal gated unit).
    Float64 to 1e-12 relative, and the 40-digit program agrees as closely."""
    m = seq2seq(**kw)
    params = m.init_params(seed=1, scale=0.9)
    src, tin, tout, smask, tmask = data(m, 3, 2, 2, True, 5)
    loss, grads = m.loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    oracle = ScalarSeq2SeqOracle(m)
    loss_s, grads_s = oracle.loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    assert abs(loss - loss_s) <= 1e-13 * abs(loss_s)
    assert sorted(grads) == sorted(grads_s)
    assert max(rel(grads[k], grads_s[k]) for k in grads) <= 1e-12
    _, exact = oracle.loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask, precision=40)
    assert max(rel(grads[k], np.array(exact[k], dtype=float)) for k in grads) <= 1e-12


# sLSTM from zero states has dL/db_i exactly 0 (a common shift of every ibar cancels in c_t / n_t): both routes
# return rounding noise there, which a relative measure cannot judge; tests/test_modern_cells.py covers sLSTM
PAIRABLE = sorted(c for c in sr.BUILTIN_CELLS if not c.startswith("slstm") and c not in ("mlstm", "s6"))
DECODERS = [c for c in PAIRABLE if c != "lru"]  # LRU's output has its input's width: an encoder only


@settings(max_examples=5)
@given(st.sampled_from(PAIRABLE), st.sampled_from(DECODERS),
       st.sampled_from([None, "dot", "general", "additive"]), st.sampled_from(["luong", "bahdanau"]),
       st.booleans(), st.booleans(), st.integers(0, 1000))
def test_any_builtin_cells_agree_with_the_scalar_program(enc, dec, score, style, bidirectional, context, seed):
    """Any pair of built-in cells, any score and style, tiny sizes, a padded batch: float64 to 1e-12."""
    H_dec = (4 if bidirectional else 2) if score == "dot" else 2
    m = seq2seq(encoder_cell=enc, decoder_cell=dec, src_vocab=3, tgt_vocab=3, E=2, H=2, H_dec=H_dec,
                bidirectional=bidirectional, bridge="tanh", context=context or score is None, attention=score,
                attention_style=style, reduction="token-mean")
    params = m.init_params(seed=seed, scale=0.9)
    src, tin, tout, smask, tmask = data(m, 3, 2, 2, True, seed)
    _, grads = m.loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    _, ref = ScalarSeq2SeqOracle(m).loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    for k in grads:
        assert rel(grads[k], ref[k]) <= 1e-12, k


# -- central differences -------------------------------------------------------------------------
def central_differences(m, params, *args, eps=1e-6, **kwargs):
    arrays = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    out = {}
    for name, a in arrays.items():
        g = np.empty_like(a)
        for idx in np.ndindex(*a.shape):
            keep = a[idx]
            a[idx] = keep + eps
            up = m.loss(arrays, *args, **kwargs)
            a[idx] = keep - eps
            down = m.loss(arrays, *args, **kwargs)
            a[idx] = keep
            g[idx] = (up - down) / (2 * eps)
        out[name] = g
    return out


@settings(max_examples=6)
@given(st.sampled_from(["dot", "general", "additive", None]), st.sampled_from(["luong", "bahdanau"]),
       st.sampled_from(["lstm", "gru", "rnn-tanh"]), st.booleans(), st.integers(0, 1000))
def test_agrees_with_central_differences(score, style, cell, bidirectional, seed):
    H_dec = (4 if bidirectional else 2) if score == "dot" else 3  # the dot score needs equal widths
    m = seq2seq(encoder_cell=cell, src_vocab=4, tgt_vocab=3, E=2, H=2, H_dec=H_dec, bidirectional=bidirectional,
                bridge="tanh", context=score is None, attention=score, attention_style=style, reduction="mean")
    params = m.init_params(seed=seed, scale=0.8)
    src, tin, tout, smask, tmask = data(m, 4, 3, 2, True, seed)
    _, grads = m.loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    fd = central_differences(m, params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    for k in grads:
        assert np.max(np.abs(grads[k] - fd[k])) <= 1e-8, k


# -- the paths to the encoder ----------------------------------------------------------------------
def _long_problem(attention):
    m = seq2seq(encoder_cell="rnn-tanh", src_vocab=20, tgt_vocab=12, E=8, H=8, context=attention is None,
                attention=attention)
    rng = np.random.default_rng(0)
    S, T, N = 30, 10, 4
    src, tin, tout = rng.integers(0, 20, (S, N)), rng.integers(0, 12, (T, N)), rng.integers(0, 12, (T, N))
    return m, m.init_params(seed=1), src, tin, tout


@pytest.mark.parametrize("attention", [None, "general", "additive"])
def test_path_decomposition_sums_to_the_total_adjoint(attention):
    """``dL/dh_enc_t`` = initial-state path + context path (+ attention path), to rounding; and the total is
    the encoder's adjoint itself: ``sum_t outer(bar h_t * (1 - h_t^2), x_t)`` is the gradient of ``U``."""
    m, params, src, tin, tout = _long_problem(attention)
    paths = m.gradient_paths(params, src, tin, tout)
    expected = {"initial state"} | ({"context"} if attention is None else {"attention"}) | {"total"}
    assert set(paths) == expected
    parts = sum(v for k, v in paths.items() if k != "total")
    assert rel(parts, paths["total"]) <= 1e-14
    h = m.forward(params, src, tin)["encoder_states"]
    x = params["emb_src"][src]
    dU = np.einsum("snh,snd->hd", paths["total"] * (1 - h ** 2), x)
    _, grads = m.loss_and_grads(params, src, tin, tout)
    assert rel(dU, grads["enc.l0.fwd.U"]) <= 1e-13


def test_attention_reaches_early_source_positions():
    """S = 30 source tokens, T = 10, N = 4, tanh RNN encoder H = 8 with PyTorch's default scale.
    Measured (mean over the batch of ||dL/dh_enc_t||, first position over last):
    context-only (Cho: final state as initial state and as context) 5.2e-11 -- the gradient reaches
    h_enc_1 only through 29 steps of the encoder's recurrence; with the general attention score 0.24 --
    attention sends gradient to every position directly (||dL/dh_enc_1|| = 3.2e-2 against 1.2e-10)."""
    ratios, firsts = {}, {}
    for attention in (None, "general"):
        m, params, src, tin, tout = _long_problem(attention)
        total = m.gradient_paths(params, src, tin, tout)["total"]
        norms = np.linalg.norm(total, axis=-1).mean(axis=1)
        ratios[attention], firsts[attention] = norms[0] / norms[-1], norms[0]
    assert ratios[None] < 1e-9
    assert ratios["general"] > 0.1
    assert firsts["general"] > 1e7 * firsts[None]


def test_paths_of_a_bidirectional_stacked_encoder_add_up():
    m = seq2seq(encoder_cell="lstm", src_vocab=5, tgt_vocab=4, E=3, H=2, num_layers=2, bidirectional=True,
                bridge="tanh", context=True, attention="additive")
    params = m.init_params(seed=2)
    src, tin, tout, smask, tmask = data(m, 5, 3, 3, True, 4)
    paths = m.gradient_paths(params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    assert set(paths) == {"attention", "initial state", "context", "total"}
    assert paths["total"].shape == (5, 3, 4)
    assert rel(sum(v for k, v in paths.items() if k != "total"), paths["total"]) <= 1e-14
    assert np.all(paths["total"][~smask] == 0)  # padding is never read


def test_paths_with_bahdanau_attention_and_context_add_up():
    m = seq2seq(encoder_cell="gru", decoder_cell="lstm", src_vocab=5, tgt_vocab=4, E=3, H=3, bridge="tanh",
                context=True, attention="dot", attention_style="bahdanau")
    params = m.init_params(seed=5)
    src, tin, tout, smask, tmask = data(m, 6, 4, 2, True, 8)
    paths = m.gradient_paths(params, src, tin, tout, src_mask=smask, tgt_mask=tmask, by_step=True)
    assert set(paths) == {"attention", "initial state", "context", "total", "attention by step", "context by step"}
    parts = ("attention", "initial state", "context")
    assert rel(sum(paths[k] for k in parts), paths["total"]) <= 1e-14
    for k in ("attention", "context"):  # the part each decoder step sends
        assert paths[f"{k} by step"].shape == (4,) + paths[k].shape
        assert rel(paths[f"{k} by step"].sum(axis=0), paths[k]) <= 1e-14


def test_attention_path_by_decoder_step_adds_up_luong():
    m, params, src, tin, tout = _long_problem("additive")
    paths = m.gradient_paths(params, src, tin, tout, by_step=True)
    assert paths["attention by step"].shape == (10, 30, 4, 8)
    assert rel(paths["attention by step"].sum(axis=0), paths["attention"]) <= 1e-14


# -- the rules over source positions -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SEQUENCE_RULES))
def test_each_sequence_rule_against_central_differences(name):
    rule = SEQUENCE_RULES[name]
    rng = np.random.default_rng(0)
    T, N, S, A, C = 2, 3, 4, 3, 2
    args = {"linear": [rng.normal(size=(A, C)), rng.normal(size=(S, N, C))],
            "dot": [rng.normal(size=(T, N, A)), rng.normal(size=(S, N, A))],
            "pairs": [rng.normal(size=(T, N, A)), rng.normal(size=(S, N, A))],
            "tanh": [rng.normal(size=(T, N, S, A))],
            "project": [rng.normal(size=(T, N, S, A)), rng.normal(size=A)],
            "softmax": [rng.normal(size=(T, N, S))],
            "context": [rng.dirichlet(np.ones(S), size=(T, N)), rng.normal(size=(S, N, C))]}[name]
    y = rule.forward(*args)
    g = rng.normal(size=y.shape)
    for k in range(len(args)):
        exact = rule.vjp[k](g, y, *args)
        numeric = np.zeros_like(args[k])
        for idx in np.ndindex(*args[k].shape):
            keep = args[k][idx]
            args[k][idx] = keep + 1e-6
            up = (g * rule.forward(*args)).sum()
            args[k][idx] = keep - 1e-6
            down = (g * rule.forward(*args)).sum()
            args[k][idx] = keep
            numeric[idx] = (up - down) / 2e-6
        assert np.max(np.abs(exact - numeric)) <= 1e-8, (name, k)


def test_masked_positions_get_no_weight_and_no_gradient():
    m = seq2seq(encoder_cell="gru", src_vocab=5, tgt_vocab=4, E=2, H=3, attention="dot")
    params = m.init_params(seed=0)
    src, tin, tout, _, _ = data(m, 4, 3, 2, False, 1)
    smask = np.array([[1, 1], [1, 1], [1, 0], [0, 0]], dtype=bool)
    out = m.forward(params, src, tin, src_mask=smask)
    assert np.all(out["attention"][:, ~smask.T] == 0)
    assert np.allclose(out["attention"].sum(-1), 1)
    src2 = src.copy()
    src2[~smask] = (src2[~smask] + 1) % 5  # padding tokens change nothing
    assert m.loss(params, src, tin, tout, src_mask=smask) == m.loss(params, src2, tin, tout, src_mask=smask)


def test_derivation_prints_the_decomposition():
    m = seq2seq(encoder_cell="lstm", src_vocab=5, tgt_vocab=4, E=2, H=3, context=True, attention="general")
    text = repr(m.derive())
    for piece in ("softmax_s", "bar hbar[s]", "attention path", "initial-state path", "context path",
                  "bar e[t,s]"):
        assert piece in text, piece


# -- bad input ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    m = sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=3, attention="general")
    rng = np.random.default_rng(0)
    return m, m.init_params(seed=0), rng.integers(0, 5, (4, 2)), rng.integers(0, 4, (3, 2)), rng.integers(0, 4, (3, 2))


def test_token_ids_outside_the_vocabulary(small):
    m, params, src, tin, tout = small
    bad = src.copy()
    bad[2, 1] = 5
    with pytest.raises(ShapeError, match=r"src holds token id 5 at \(t, n\) = \(2, 1\), outside the vocabulary 0..4"):
        m.loss_and_grads(params, bad, tin, tout)
    with pytest.raises(ShapeError, match="tgt_in holds token id -1"):
        m.loss_and_grads(params, src, tin - 1, tout)
    with pytest.raises(ShapeError, match=r"tgt_out holds token id \d+ at \(t, n\)"):
        m.loss_and_grads(params, src, tin, tout + 4)
    with pytest.raises(ShapeError, match="integer token ids"):
        m.loss_and_grads(params, src.astype(float), tin, tout)


def test_masks_of_the_wrong_shape(small):
    m, params, src, tin, tout = small
    with pytest.raises(ShapeError, match=r"src_mask has shape \(3, 2\); expected \(4, 2\)"):
        m.loss_and_grads(params, src, tin, tout, src_mask=np.ones((3, 2), bool))
    with pytest.raises(ShapeError, match=r"tgt_mask has shape \(4, 2\); expected \(3, 2\)"):
        m.loss_and_grads(params, src, tin, tout, tgt_mask=np.ones((4, 2), bool))


def test_a_mask_that_hides_a_whole_sequence(small):
    m, params, src, tin, tout = small
    mask = np.ones((4, 2), bool)
    mask[:, 1] = False
    with pytest.raises(ShapeError, match="hides the whole src sequence 1"):
        m.loss_and_grads(params, src, tin, tout, src_mask=mask)
    tmask = np.ones((3, 2), bool)
    tmask[:, 0] = False
    with pytest.raises(ShapeError, match="hides the whole tgt sequence 0"):
        m.loss_and_grads(params, src, tin, tout, tgt_mask=tmask)
    holes = np.ones((4, 2), bool)
    holes[1, 0] = False
    with pytest.raises(ShapeError, match="padding before a real token"):
        m.loss_and_grads(params, src, tin, tout, src_mask=holes)


def test_lengths_that_contradict_the_mask(small):
    m, params, src, tin, tout = small
    mask = np.arange(4)[:, None] < np.array([4, 2])
    with pytest.raises(ShapeError, match=r"src_lengths\[1\] = 3 contradicts src_mask\[:, 1\]"):
        m.loss_and_grads(params, src, tin, tout, src_mask=mask, src_lengths=np.array([4, 3]))
    with pytest.raises(ShapeError, match="tgt_lengths must be N = 2 integers in 1..3"):
        m.loss_and_grads(params, src, tin, tout, tgt_lengths=np.array([4, 1]))
    with pytest.raises(ShapeError, match="batch size 1 but src has 2"):
        m.loss_and_grads(params, src, tin[:, :1], tout[:, :1])
    with pytest.raises(ShapeError, match="tgt_out has shape"):
        m.loss_and_grads(params, src, tin, tout[:2])
    lengths_loss = m.loss(params, src, tin, tout, src_lengths=np.array([4, 2]), tgt_lengths=np.array([3, 1]))
    mask_loss = m.loss(params, src, tin, tout, src_mask=mask, tgt_mask=np.arange(3)[:, None] < np.array([3, 1]))
    assert lengths_loss == mask_loss


def test_unknown_options():
    with pytest.raises(UnknownNameError, match="Unknown attention score 'cosine'"):
        sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=3, attention="cosine")
    with pytest.raises(UnknownNameError, match="dot score"):
        sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=3, bidirectional=True, attention="dot")
    with pytest.raises(UnknownNameError, match="attention_style"):
        sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=3, attention="dot", attention_style="cho")
    with pytest.raises(ShapeError, match="bridge='copy'"):
        sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=3, bidirectional=True, bridge="copy")
    with pytest.raises(UnknownNameError, match="unconnected"):
        sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=3, bridge="none")
    with pytest.raises(UnknownNameError, match="Unknown bridge"):
        sr.Seq2Seq("gru", src_vocab=5, tgt_vocab=4, E=2, H=3, bridge="mean")


# -- documentation, reports, demo ------------------------------------------------------------------------
def test_the_readme_example_runs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Sequence to sequence"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    namespace = {}
    exec(compile(code.replace("print(model.derive())", "repr(model.derive())"), "README-seq2seq", "exec"),
         namespace)
    assert namespace["out"]["attention"].shape == (5, 3, 7)
    assert sorted(namespace["paths"]) == ["attention", "initial state", "total"]


def test_report_and_picture(tmp_path):
    from symrnn.report.seq2seq import plot_attention, write_seq2seq_report

    m = seq2seq(encoder_cell="gru", src_vocab=5, tgt_vocab=4, E=2, H=3, context=True, attention="additive",
                attention_style="bahdanau", bridge="linear")
    params = m.init_params(seed=0)
    src, tin, tout, smask, tmask = data(m, 4, 3, 2, True, 0)
    path = write_seq2seq_report(m, "md", tmp_path / "s.md", (params, src, tin, tout, {"src_mask": smask}))
    text = path.read_text()
    for piece in ("How the gradient reaches the encoder", "| s | attention | initial state | context | total |",
                  r"\operatorname{softmax}_{s}", "context path"):
        assert piece in text, piece
    tex = write_seq2seq_report(m, "tex", tmp_path / "s.tex").read_text()
    assert r"\begin{document}" in tex
    weights = m.forward(params, src, tin, src_mask=smask)["attention"][:, 0, :]
    png = plot_attention(weights, tmp_path / "a.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_part_writes_its_report_and_picture(tmp_path):
    from symrnn.demo import _seq2seq

    lines, written = _seq2seq(tmp_path, steps=3)
    names = sorted(p.name for p in written)
    assert "seq2seq_attention.png" in names and "seq2seq_bigru_general-attention.md" in names
    assert any("| unrolled scalar program (SymPy, float64)" in line for line in "\n".join(lines).splitlines())


def test_the_torch_composition_names_a_cell_torch_lacks():
    from symrnn.oracles.seq2seq import torch_loss_and_grads

    m = seq2seq(encoder_cell="gru-chung", src_vocab=4, tgt_vocab=3, E=2, H=2, attention="dot")
    src, tin, tout, _, _ = data(m, 3, 2, 1, False, 0)
    with pytest.raises(UnknownNameError, match="PyTorch has no module for the cell 'gru-chung'"):
        torch_loss_and_grads(m, m.init_params(0), src, tin, tout)


def test_missing_targets_are_refused_by_loss_and_gradients():
    import numpy as np
    import pytest

    import symrnn as sr
    from symrnn.errors import ShapeError

    m = sr.Seq2Seq("gru", "gru", src_vocab=5, tgt_vocab=4, E=2, H=3)
    params = m.init_params(seed=0)
    src, tin = np.zeros((3, 2), dtype=int), np.zeros((2, 2), dtype=int)
    for call in (m.loss, m.loss_and_grads):
        with pytest.raises(ShapeError, match="tgt_out is None"):
            call(params, src, tin, None)
    assert m.forward(params, src, tin)["logits"].shape == (2, 2, 4)

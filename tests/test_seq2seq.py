"""Sequence to sequence (symrnn.models.seq2seq) against an encoder-decoder composed from torch modules.

The torch side: ``nn.Embedding``-style lookups of leaf tensors, ``nn.RNN/LSTM/GRU`` encoders (one module
per layer, sequences packed with ``pack_padded_sequence`` so a padded sequence's final state is at its
length, directions merged with torch operations), the bridge, the attention scores, the masked softmax
and the context written with torch operations, an ``nn.RNN/LSTM/GRU`` decoder (run step by step for
Bahdanau's style), the readout and the masked cross-entropy; torch's autograd through all of it.  Weights
are copied from symrnn's (``symrnn.models.layouts.to_torch``).  The composition is
``symrnn.oracles.seq2seq.torch_loss_and_grads``: it shares no code with ``symrnn.models.seq2seq`` but the layouts.

Tolerance: ``max|ours - torch| / max|torch| <= 1e-12`` per gradient array (see :func:`rel`), float64.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import symrnn as sr
from symrnn.oracles.seq2seq import torch_loss_and_grads

TOL = 1e-12
TORCH_CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]


def rel(a, b):
    """The largest difference relative to the array's largest entry (floor 1e-10: an array that is zero up to
    rounding, such as the attention weights' gradients when every source has one token, is compared absolutely)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b), initial=0.0) / max(1e-10, np.max(np.abs(b), initial=0.0)))


@functools.lru_cache(maxsize=None)
def seq2seq(**kwargs):
    return sr.Seq2Seq(**kwargs)


# -- problems ---------------------------------------------------------------------------------------
@st.composite
def problems(draw, styles=("luong", "bahdanau")):
    enc_cell = draw(st.sampled_from(TORCH_CELLS))
    dec_cell = draw(st.sampled_from(TORCH_CELLS))
    num_layers = draw(st.integers(1, 2))
    bidirectional = draw(st.booleans())
    merge = draw(st.sampled_from(["concat", "sum", "ave", "mul", "max"])) if bidirectional else "concat"
    H = draw(st.integers(1, 3))
    width = H * (2 if bidirectional and merge == "concat" else 1)
    Z = H * (2 if bidirectional else 1)
    attention = draw(st.sampled_from([None, "dot", "general", "additive"]))
    H_dec = width if attention == "dot" else draw(st.sampled_from([H, Z, H + 1]))
    bridges = ["linear", "tanh"] + (["copy"] if H_dec == Z else []) + (["none"] if attention else [])
    return dict(
        kw=dict(encoder_cell=enc_cell, decoder_cell=dec_cell, src_vocab=draw(st.sampled_from([None, 3, 5])),
                tgt_vocab=draw(st.integers(2, 5)), E=draw(st.integers(1, 3)), H=H, E_tgt=draw(st.integers(1, 3)),
                H_dec=H_dec, num_layers=num_layers, bidirectional=bidirectional, merge=merge,
                residual=num_layers > 1 and width == H and draw(st.booleans()),
                bridge=draw(st.sampled_from(bridges)), context=draw(st.booleans()), attention=attention,
                attention_style=draw(st.sampled_from(styles)),
                attention_size=draw(st.sampled_from([None, 2])) if attention == "additive" else None,
                reduction=draw(st.sampled_from(["sum", "mean", "token-mean", "batch-mean"]))),
        S=draw(st.integers(1, 5)), T=draw(st.integers(1, 4)), N=draw(st.integers(1, 3)),
        pad=draw(st.booleans()), scale=draw(st.sampled_from([0.3, 0.8, 1.2])), seed=draw(st.integers(0, 2**31)))


def make_data(m, S, T, N, pad, seed):
    rng = np.random.default_rng(seed)
    src = (rng.integers(0, m.src_vocab, (S, N)) if m.src_vocab is not None else rng.normal(size=(S, N, m.E)))
    tin, tout = rng.integers(0, m.tgt_vocab, (T, N)), rng.integers(0, m.tgt_vocab, (T, N))
    smask = tmask = None
    if pad:
        sl, tl = rng.integers(1, S + 1, N), rng.integers(1, T + 1, N)
        smask, tmask = np.arange(S)[:, None] < sl, np.arange(T)[:, None] < tl
    return src, tin, tout, smask, tmask


@given(problems())
def test_gradients_match_the_torch_composition(torch64, p):
    """Every cell pair, bridge, context feeding, score and style, uni/bidirectional and stacked encoders,
    unequal lengths, padded batches: every gradient to 1e-12 relative."""
    m = seq2seq(**p["kw"])
    params = m.init_params(seed=p["seed"] % 1000, scale=p["scale"])
    src, tin, tout, smask, tmask = make_data(m, p["S"], p["T"], p["N"], p["pad"], p["seed"])
    loss, grads = m.loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    loss_t, theirs = torch_loss_and_grads(m, params, src, tin, tout, smask, tmask)
    assert abs(loss - loss_t) <= TOL * max(1.0, abs(loss_t))
    assert sorted(grads) == sorted(theirs)
    apart = [k for k in grads if rel(grads[k], theirs[k]) > TOL]
    if apart:  # two float64 routes apart: the exact gradient (40-digit scalar program) arbitrates
        assert_as_exact_as_float64_allows(m, params, src, tin, tout, smask, tmask, grads, theirs, apart)


def assert_as_exact_as_float64_allows(m, params, src, tin, tout, smask, tmask, grads, theirs, keys):
    """Ours within 1e-12 relative of the exact gradient, or no further from it than 4x torch's float64 error
    (an ill-conditioned entry: a sum that cancels); a real bug is far from the exact value while torch is near."""
    from symrnn.oracles.seq2seq import ScalarSeq2SeqOracle

    _, exact = ScalarSeq2SeqOracle(m).loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask,
                                                     precision=40)
    for k in keys:
        g = np.array(exact[k], dtype=float)
        mine, torch_error = rel(grads[k], g), rel(theirs[k], g)
        assert mine <= max(TOL, 4 * torch_error), (
            f"{m}: grads[{k!r}] is {mine:.2e} from the exact gradient (torch {torch_error:.2e})")


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
@pytest.mark.parametrize("style", ["luong", "bahdanau"])
def test_each_score_and_style_against_torch(torch64, score, style):
    """Deterministic beside the property test: a 2-layer bidirectional GRU encoder, an LSTM decoder,
    context feeding, padded source and target of unequal lengths."""
    m = seq2seq(encoder_cell="gru", decoder_cell="lstm", src_vocab=6, tgt_vocab=5, E=3, H=2, H_dec=4,
                num_layers=2, bidirectional=True, bridge="tanh", context=True, attention=score,
                attention_style=style, reduction="token-mean")
    params = m.init_params(seed=3, scale=0.9)
    src, tin, tout, smask, tmask = make_data(m, 6, 4, 3, True, 11)
    loss, grads = m.loss_and_grads(params, src, tin, tout, src_mask=smask, tgt_mask=tmask)
    loss_t, theirs = torch_loss_and_grads(m, params, src, tin, tout, smask, tmask)
    assert abs(loss - loss_t) <= TOL * abs(loss_t)
    worst = max(rel(grads[k], theirs[k]) for k in grads)
    assert worst <= TOL, worst

"""Sequence to sequence (symrnn.seq2seq) against an encoder-decoder composed from torch modules.

The torch side: ``nn.Embedding``-style lookups of leaf tensors, ``nn.RNN/LSTM/GRU`` encoders (one module
per layer, sequences packed with ``pack_padded_sequence`` so a padded sequence's final state is at its
length, directions merged with torch operations), the bridge, the attention scores, the masked softmax
and the context written with torch operations, an ``nn.RNN/LSTM/GRU`` decoder (run step by step for
Bahdanau's style), the readout and the masked cross-entropy; torch's autograd through all of it.  Weights
are copied from symrnn's (``symrnn.layouts.to_torch``).

Tolerance: ``max|ours - torch| / max|torch| <= 1e-12`` per gradient array (see :func:`rel`), float64.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import symrnn as sr
from symrnn.layouts import from_torch, to_torch

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


# -- the torch composition -------------------------------------------------------------------------
def torch_module(torch, cell, D, H, bidirectional=False):
    nn = torch.nn
    if cell == "lstm":
        return nn.LSTM(D, H, bidirectional=bidirectional).double()
    if cell == "gru":
        return nn.GRU(D, H, bidirectional=bidirectional).double()
    return nn.RNN(D, H, bidirectional=bidirectional, nonlinearity=cell.split("-")[1]).double()


def load(torch, module, cell, params_by_direction):
    sd = {}
    for k, p in enumerate(params_by_direction):
        sd.update(to_torch(cell, p, layer=0, reverse=k == 1))
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})


def module_grads(cell, module, H, n_dirs):
    """Torch's gradients of one module under symrnn's names, per direction (bias pairs as in
    tests/test_bidirectional.py: bias_hh zeroed where it duplicates bias_ih, then added by from_torch)."""
    sd = {k: p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape))
          for k, p in module.named_parameters()}
    for k in sd:
        if k.startswith("bias_hh"):
            sd[k][:2 * H if cell == "gru" else None] = 0
    return [from_torch(cell, sd, layer=0, reverse=d == 1) for d in range(n_dirs)]


def merge_torch(torch, name, f, b):
    return {"concat": lambda: torch.cat([f, b], dim=-1), "sum": lambda: f + b, "ave": lambda: (f + b) / 2,
            "mul": lambda: f * b, "max": lambda: torch.maximum(f, b)}[name]()


def torch_loss_and_grads(T, m, params, src, tin, tout, smask, tmask):
    torch = T.torch
    rnn_utils = torch.nn.utils.rnn
    P = {k: T.tensor(v, grad=True) for k, v in params.items()
         if not k.startswith(("enc.", "dec."))}
    enc, dec_cell = m.encoder, m.decoder.cell.name
    enc_cell, H = enc.cell.name, m.H
    S, N = src.shape[:2]
    lengths = smask.sum(axis=0) if smask is not None else np.full(N, S)
    src_t = None
    if m.src_vocab is not None:
        x = P["emb_src"][torch.from_numpy(np.asarray(src))]
    else:
        src_t = T.tensor(src, grad=True)
        x = src_t
    lengths_t = torch.from_numpy(np.asarray(lengths, dtype=np.int64))
    modules, finals = [], None
    for layer in enc.layers:
        module = torch_module(torch, enc_cell, layer.input_width, H, layer.bidirectional)
        load(torch, module, enc_cell, [enc.direction_params({k[4:]: v for k, v in params.items()
                                                             if k.startswith("enc.")}, layer.index, d)
                                       for d in layer.directions])
        packed = rnn_utils.pack_padded_sequence(x, lengths_t, enforce_sorted=False)
        out, hn = module(packed)
        out, _ = rnn_utils.pad_packed_sequence(out, total_length=S)
        hn = hn[0] if enc_cell == "lstm" else hn
        y = merge_torch(torch, enc.merge.name, out[..., :H], out[..., H:]) if layer.bidirectional else out
        if layer.residual:
            y = y + x
        modules.append((module, layer))
        x, finals = y, hn
    memory = x
    z = torch.cat([finals[k] for k in range(finals.shape[0])], dim=-1)  # (N, Z): fwd then bwd
    Tn = tin.shape[0]
    Hd = m.H_dec
    states = m.decoder.state_names
    if m.bridge_mode == "copy":
        init = {s: (z if s == m.out_state else torch.zeros(N, Hd)) for s in states}
    elif m.bridge_mode in ("linear", "tanh"):
        act = torch.tanh if m.bridge_mode == "tanh" else (lambda u: u)
        init = {s: act(z @ P[f"bridge.W_{s}"].T + P[f"bridge.b_{s}"]) for s in states}
    else:
        init = {s: torch.zeros(N, Hd) for s in states}
    dec = torch_module(torch, dec_cell, m.decoder.sizes["D"], Hd)
    load(torch, dec, dec_cell, [{k[4:]: v for k, v in params.items() if k.startswith("dec.")}])
    emb = P["emb_tgt"][torch.from_numpy(np.asarray(tin))]
    parts = [emb] + ([z.expand(Tn, N, z.shape[-1])] if m.context else [])
    mask_t = None if smask is None else torch.from_numpy(np.asarray(smask).T.copy())  # (N, S)

    def attend(q):  # q (Tq, N, Hd) -> weights (Tq, N, S), context (Tq, N, C)
        score = m.attention.score
        if score == "dot":
            e = torch.einsum("tnh,snh->tns", q, memory)
        elif score == "general":
            e = torch.einsum("tnh,hc,snc->tns", q, P["attn.W_a"], memory)
        else:
            u = torch.tanh((q @ P["attn.W_a"].T)[:, :, None, :] + (memory @ P["attn.U_a"].T).permute(1, 0, 2)[None])
            e = u @ P["attn.v_a"]
        if mask_t is not None:
            e = e.masked_fill(~mask_t[None], float("-inf"))
        a = torch.softmax(e, dim=-1)
        return a, torch.einsum("tns,snc->tnc", a, memory)

    def hx(state):
        return (state["h"][None], state["c"][None]) if dec_cell == "lstm" else state["h"][None]

    if not m.bahdanau:
        out, _ = dec(torch.cat(parts, dim=-1), hx(init))
        top = out
        if m.attention is not None:
            a, ctx = attend(out)
            top = torch.tanh(torch.cat([ctx, out], dim=-1) @ P["attn.W_c"].T)
        pieces = [top]
    else:
        state, hs, cs = init, [], []
        for t in range(Tn):
            a, ctx = attend(state["h"][None])
            x_t = torch.cat([p[t:t + 1] for p in parts] + [ctx], dim=-1)
            out, new = dec(x_t, hx(state))
            state = {"h": new[0][0], "c": new[1][0]} if dec_cell == "lstm" else {"h": new[0]}
            hs.append(out[0])
            cs.append(ctx[0])
        pieces = [torch.stack(hs), torch.stack(cs)]
    if m.context:
        pieces.append(z.expand(Tn, N, z.shape[-1]))
    logits = torch.cat(pieces, dim=-1) @ P["out.V"].T + P["out.c"]
    logp = torch.log_softmax(logits, dim=-1)
    tout_np = np.asarray(tout)
    scored = (tout_np != -1) if tmask is None else (np.asarray(tmask) & (tout_np != -1))
    picked = logp.gather(-1, torch.from_numpy(np.where(tout_np == -1, 0, tout_np))[..., None])[..., 0]
    total = -(picked * torch.from_numpy(scored.astype(np.float64))).sum()
    scale = {"sum": 1.0, "batch-mean": 1.0 / N}.get(m.reduction, 1.0 / max(int(scored.sum()), 1))
    loss = total * scale
    loss.backward()
    grads = {k: v.grad.numpy().copy() if v.grad is not None else np.zeros(tuple(v.shape)) for k, v in P.items()}
    for module, layer in modules:
        for d, g in zip(layer.directions, module_grads(enc_cell, module, H, len(layer.directions))):
            grads.update({f"enc.{enc.key(layer.index, d, k)}": v for k, v in g.items()})
    grads.update({f"dec.{k}": v for k, v in module_grads(dec_cell, dec, Hd, 1)[0].items()})
    if src_t is not None:
        grads["src"] = src_t.grad.numpy().copy()
    return float(loss.detach()), grads


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
    loss_t, theirs = torch_loss_and_grads(torch64, m, params, src, tin, tout, smask, tmask)
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
    loss_t, theirs = torch_loss_and_grads(torch64, m, params, src, tin, tout, smask, tmask)
    assert abs(loss - loss_t) <= TOL * abs(loss_t)
    worst = max(rel(grads[k], theirs[k]) for k in grads)
    assert worst <= TOL, worst

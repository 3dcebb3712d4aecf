"""The unrolled scalar oracle of a sequence-to-sequence model.

A second route to :class:`symrnn.models.seq2seq.Seq2Seq`'s gradients that shares nothing with it but the
cells' equations: for each example of a batch, the embedding lookups, every encoder direction and
layer (the backward direction walked from the sequence's last real token to its first), the merge,
the bridge, the decoder steps, the attention (scores, a softmax written as ``exp(e_s - log sum exp)``
over the real source positions, the context as a scalar sum), Luong's combination, the readout and
the cross-entropy become straight-line scalar SymPy assignments.  The gradient is reverse
accumulation over that program with ``sympy.diff`` of one assignment at a time: no rule table, no
tape, no generated block code.  For tiny sizes only (a program of a few thousand lines).

:func:`torch_loss_and_grads` is a third route: the same model composed from torch modules
(``nn.RNN/LSTM/GRU`` with sequences packed by ``pack_padded_sequence``, one module per encoder layer,
the merges, the bridge, the attention, the masked softmax and the readout written with torch
operations) with the weights copied by :mod:`symrnn.models.layouts`, differentiated by torch's autograd.
"""
from __future__ import annotations

from itertools import takewhile

import mpmath
import numpy as np
import sympy as sp

from ..errors import DerivationTooLargeError, UnknownNameError
from ..models.layouts import TORCH_GATES, from_torch, to_torch
from ..engine.losses import scale_of
from ..engine.symbols import parse, tsym
from .torch_autograd import TORCH_MERGES, module_gradients, rnn_module
from .finite_differences import differences_in_place
from .scalar import float_namespace, mpmath_namespace, ScalarPrinter
from .unroll import SCALE, Unroller, parameter_symbols, program_source


class _Program:
    """One example's program: the encoder unrolled from the model's parts by :class:`Unroller` (as every
    scalar route unrolls a wiring), then the bridge, attention, decoder steps and readout as straight-line
    scalar lines, then the same reverse accumulation over all of them."""

    def __init__(self, model, src, tin, tout, src_len, scored, max_lines=60_000):
        self.model, self.lines, self.max_lines = model, [], max_lines
        self.params = parameter_symbols(model.param_shapes)
        enc = model.encoder
        self.unroller = Unroller(enc.sizes, self.params, enc.state_names, enc.input_name)
        self.dense = model.src_vocab is None
        steps = self._encode(src, src_len)
        self._decode(tin, tout, src_len, scored)
        self._compile_program(steps + [(self.lines, {})])

    def _grow(self, more=1):
        if len(self.lines) + more > self.max_lines:
            raise DerivationTooLargeError(f"The scalar program of {self.model!r} passes {self.max_lines} lines; "
                                          f"use smaller sizes (it is meant for T, H, D of a few).")

    def _new(self, expr, name=None):
        self._grow()
        self.lines.append(self.unroller.line(name or f"_v{len(self.lines)}", expr))
        return self.lines[-1][0]

    def _dot(self, u, v):
        return sp.Add(*[a * b for a, b in zip(u, v)])

    def _encode(self, src, L):
        """The encoder's parts unrolled over the ``L`` real tokens (padding is never read): its steps;
        :attr:`memory` (the top layer's outputs) and :attr:`z` (its final states, forward then backward)."""
        m, u = self.model, self.unroller
        parts = list(takewhile(lambda p: p.kind in ("cell", "merge", "residual"), m.parts()))  # up to the bridge
        order = u.unroll(parts, L, range(L))
        self.inputs = [f"{m.encoder.input_name}__{t + 1}_{j}" for t in range(L) for j in range(m.E)]
        embedded = [] if self.dense else [u.line(name, self.params["emb_src"][src[k // m.E], k % m.E])
                                          for k, name in enumerate(self.inputs)]
        self.memory = [u.at(parts[-1].name, t + 1) for t in range(L)]
        top = max(p.layer for p in parts)
        self.z = [s for p in parts if p.kind == "cell" and p.layer == top for s in u.at(p.name, 1 if p.reverse else L)]
        return [(embedded, {})] + [(u.templates[key], fill) for key, fill in order]

    def _initial_states(self, z):
        m, p, Hd = self.model, self.params, self.model.H_dec
        if m.bridge_mode == "copy":
            return {s: (list(z) if s == m.out_state else [sp.Integer(0)] * Hd) for s in m.decoder.state_names}
        if m.bridge_mode in ("linear", "tanh"):
            act = sp.tanh if m.bridge_mode == "tanh" else (lambda u: u)
            return {s: [self._new(act(self._dot(p[f"bridge.W_{s}"][i], z) + p[f"bridge.b_{s}"][i]))
                        for i in range(Hd)] for s in m.decoder.state_names}
        return {s: [sp.Integer(0)] * Hd for s in m.decoder.state_names}

    def _attention(self, L):
        """``attend(q)``: the context for the query ``q`` over the ``L`` real source positions."""
        m, p, memory, att = self.model, self.params, self.memory, self.model.attention
        keys = memory
        if att.score == "general":
            keys = [[self._new(self._dot(p["attn.W_a"][i], hs)) for i in range(m.H_dec)] for hs in memory]
        elif att.score == "additive":
            keys = [[self._new(self._dot(p["attn.U_a"][i], hs)) for i in range(att.size)] for hs in memory]

        def attend(q):
            if att.score == "additive":
                r = [self._new(self._dot(p["attn.W_a"][i], q)) for i in range(att.size)]
                e = [self._new(self._dot(p["attn.v_a"], [sp.tanh(ri + ki) for ri, ki in zip(r, k)])) for k in keys]
            else:
                e = [self._new(self._dot(q, k)) for k in keys]
            lse = self._new(sp.log(sp.Add(*[sp.exp(es) for es in e])))
            a = [self._new(sp.exp(es - lse)) for es in e]
            return [self._new(sp.Add(*[a[s] * memory[s][c] for s in range(L)])) for c in range(m.C)]

        return attend

    def _decode(self, tin, tout, L, scored):
        """The bridge, then each decoder step (the cell scalarized by the same :meth:`Unroller.scalarize`),
        its attention, Luong's combination, the readout and the scored cross-entropy."""
        m, p, u, z = self.model, self.params, self.unroller, self.z
        state, dec, Hd = self._initial_states(z), m.decoder, m.H_dec
        attend = self._attention(L) if m.attention is not None else None
        sizes = {"D": dec.sizes["D"], "H": Hd, "K": None}
        P = u.cell_params(dec.cell, "dec.", sizes)
        self.losses = []
        for t in range(tin.shape[0]):
            x = list(p["emb_tgt"][tin[t]]) + (list(z) if m.context else [])
            ctx = attend(state[m.out_state]) if m.bahdanau else None
            env = {dec.cell.input_symbol: x + (ctx or [])}
            env.update({tsym(s, -1): v for s, v in state.items()})
            self._grow(sum(sizes[dec.cell.sizes[eq.target]] for eq in dec.cell.equations))
            self.lines += u.scalarize(dec.cell.equations, env, lambda eq: sizes[dec.cell.sizes[eq.target]],
                                      lambda eq, t=t: f"_dec_{parse(eq.target)[0]}__{t + 1}", P)
            state = {s: env[tsym(s)] for s in dec.cell.states}
            h = state[m.out_state]
            if attend is not None and not m.bahdanau:
                ctx = attend(h)
                top = [self._new(sp.tanh(self._dot(p["attn.W_c"][i], ctx + h))) for i in range(Hd)]
            else:
                top = h
            r = top + (ctx if m.bahdanau else []) + (list(z) if m.context else [])
            if scored[t]:
                o = [self._new(self._dot(p["out.V"][k], r) + p["out.c"][k]) for k in range(m.tgt_vocab)]
                lse = self._new(sp.log(sp.Add(*[sp.exp(ok) for ok in o])))
                self.losses.append(self._new(sp.Symbol(SCALE) * (lse - o[tout[t]]), f"_L__{len(self.losses)}").name)

    def _compile_program(self, steps):
        forward, backward, contributions = self.unroller.reverse_accumulation(ScalarPrinter(), steps, self.losses)
        leaves = [s.name for a in self.params.values() for s in a.ravel()]
        if self.dense:
            leaves += self.inputs
        zeros = [n for names in self.unroller.state0_names.values() for n in names]  # the encoder starts at zero
        self.n_zeros = len(zeros)
        self.source = program_source(leaves + zeros + [SCALE], forward + backward, contributions, leaves)
        self._code = compile(self.source, "<symrnn-scalar-seq2seq-oracle>", "exec")


class ScalarSeq2SeqOracle:
    """``loss_and_grads(params, src, tgt_in, tgt_out, src_mask=None, tgt_mask=None, precision=None)``
    keyed like :meth:`Seq2Seq.loss_and_grads`; ``precision`` (decimal digits) evaluates in mpmath."""

    def __init__(self, model, max_lines=60_000):
        self.model, self.max_lines = model, max_lines

    def loss_and_grads(self, params, src, tgt_in, tgt_out, src_mask=None, tgt_mask=None, precision=None):
        m = self.model
        p, dtype, ids, X, tin, tout, smask, tmask, lengths = m._prepare(params, src, tgt_in, tgt_out, src_mask,
                                                                       tgt_mask, None, None)
        scored = np.ones(tin.shape, dtype=bool) if tmask is None else tmask
        scale = scale_of(m.reduction, scored)
        convert = float if precision is None else mpmath.mpf
        N = tin.shape[1]
        loss, total, dense = 0, 0, []
        with mpmath.workdps(precision or 15):
            for n in range(N):
                L = int(lengths[n])
                source = ids[:, n] if ids is not None else np.asarray(X)[:L, n]
                prog = _Program(m, source, tin[:, n], tout[:, n], L, scored[:, n], self.max_lines)
                ns = dict(float_namespace() if precision is None else mpmath_namespace())
                exec(prog._code, ns)
                values = [v for k in prog.params for v in np.asarray(p[k]).ravel()]
                values += [] if ids is not None else list(source.ravel())
                value, grads = ns["program"]([convert(float(v)) for v in values] + [convert(0)] * prog.n_zeros
                                             + [convert(scale)])
                loss += value
                n_params = sum(a.size for a in prog.params.values())
                total = total + np.array(grads[:n_params], dtype=object)
                if ids is None:
                    g = np.zeros(np.asarray(X)[:, n].shape, dtype=object)
                    g[:L] = np.array(grads[n_params:], dtype=object).reshape(source.shape)
                    dense.append(g)
        ends = np.cumsum([int(np.prod(shape)) for shape in m.param_shapes.values()])
        out = {name: total[end - int(np.prod(shape)):end].reshape(shape)
               for (name, shape), end in zip(m.param_shapes.items(), ends)}
        if ids is None:
            out["src"] = np.stack(dense, axis=1)
        if precision is None:
            out = {k: v.astype(float) for k, v in out.items()}
        return loss, out


def seq2seq_central_differences(model, params, src, tgt_in, tgt_out, eps=1e-6, **kwargs):
    """Central differences of ``Seq2Seq.loss`` for every parameter entry; keyed like ``loss_and_grads``."""
    arrays = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    return differences_in_place(arrays, lambda: model.loss(arrays, src, tgt_in, tgt_out, **kwargs), eps)


def seq2seq_agreement_table(model, seed=0, S=3, T=2, N=2) -> str:
    """A Markdown table: a :class:`~symrnn.models.seq2seq.Seq2Seq`'s gradients (padded batch, unequal lengths) against
    the unrolled scalar program in float64 and at 40 digits, the torch composition and central differences."""
    from ..checks import agreement_text, max_error

    rng = np.random.default_rng(seed)
    params = model.init_params(seed, scale=0.8)
    src = rng.integers(0, model.src_vocab, (S, N)) if model.src_vocab else rng.normal(size=(S, N, model.E))
    tin, tout = rng.integers(0, model.tgt_vocab, (T, N)), rng.integers(0, model.tgt_vocab, (T, N))
    kwargs = dict(src_lengths=np.maximum(1, S - np.arange(N) % S), tgt_lengths=np.maximum(1, T - np.arange(N) % T))
    masks = dict(src_mask=np.arange(S)[:, None] < kwargs["src_lengths"],
                 tgt_mask=np.arange(T)[:, None] < kwargs["tgt_lengths"])
    loss, grads = model.loss_and_grads(params, src, tin, tout, **kwargs)
    oracle = ScalarSeq2SeqOracle(model)
    rows = []
    _, g = oracle.loss_and_grads(params, src, tin, tout, **masks)
    rows.append(("unrolled scalar program (SymPy, float64)", *max_error(grads, g), 1e-12))
    _, g = oracle.loss_and_grads(params, src, tin, tout, precision=40, **masks)
    rows.append(("unrolled scalar program (mpmath, 40 digits)",
                 *max_error(grads, {k: np.array(v, dtype=float) for k, v in g.items()}), 1e-12))
    try:
        _, g = torch_loss_and_grads(model, params, src, tin, tout, masks["src_mask"], masks["tgt_mask"])
        rows.append(("PyTorch composition (nn.GRU/LSTM/RNN, packed; attention in torch ops; float64)",
                     *max_error(grads, g), 1e-12))
    except ImportError:
        rows.append(("PyTorch composition (torch not installed)", float("nan"), "", 1e-12))
    except UnknownNameError:
        rows.append(("PyTorch composition (no torch module for this cell)", float("nan"), "", 1e-12))
    g = seq2seq_central_differences(model, params, src, tin, tout, **kwargs)
    rows.append(("central differences (float64, eps=1e-6)", *max_error(grads, g), 1e-6))
    return agreement_text(f"Agreement of the gradients of {model!r} (S={S}, T={T}, N={N}, lengths "
                          f"{kwargs['src_lengths'].tolist()} / {kwargs['tgt_lengths'].tolist()}; loss {loss:.6g})",
                          rows)


# -- the torch composition ----------------------------------------------------------------------------
def _load(torch, module, cell, params_by_direction):
    sd = {k: v for d, p in enumerate(params_by_direction)
          for k, v in to_torch(cell, p, layer=0, reverse=d == 1).items()}
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})


def _module_grads(cell, module, H, n_dirs):
    """Torch's gradients of one module under symrnn's names, per direction."""
    return [from_torch(cell, module_gradients(module, cell, H), layer=0, reverse=d == 1) for d in range(n_dirs)]


def _torch_encoder(torch, m, params, x, lengths):
    """The encoder as torch modules over packed sequences: ``(memory, z, [(module, layer), ...])``."""
    rnn_utils, enc, H = torch.nn.utils.rnn, m.encoder, m.H
    cell, S = enc.cell.name, x.shape[0]
    lengths_t = torch.from_numpy(np.asarray(lengths, dtype=np.int64))
    p_enc = {k[4:]: v for k, v in params.items() if k.startswith("enc.")}
    modules, finals = [], None
    for layer in enc.layers:
        module = rnn_module(torch, cell, layer.input_width, H, bidirectional=layer.bidirectional)
        _load(torch, module, cell, [enc.direction_params(p_enc, layer.index, d) for d in layer.directions])
        packed = rnn_utils.pack_padded_sequence(x, lengths_t, enforce_sorted=False)
        out, hn = module(packed)
        out, _ = rnn_utils.pad_packed_sequence(out, total_length=S)
        hn = hn[0] if cell == "lstm" else hn
        y = TORCH_MERGES[enc.merge.name](torch, out[..., :H], out[..., H:]) if layer.bidirectional else out
        if layer.residual:
            y = y + x
        modules.append((module, layer))
        x, finals = y, hn
    return x, torch.cat([finals[k] for k in range(finals.shape[0])], dim=-1), modules  # z (N, Z): fwd then bwd


def _torch_initial_states(torch, m, P, z):
    N, Hd = z.shape[0], m.H_dec
    if m.bridge_mode == "copy":
        return {s: (z if s == m.out_state else torch.zeros(N, Hd, dtype=torch.float64)) for s in m.decoder.state_names}
    if m.bridge_mode in ("linear", "tanh"):
        act = torch.tanh if m.bridge_mode == "tanh" else (lambda u: u)
        return {s: act(z @ P[f"bridge.W_{s}"].T + P[f"bridge.b_{s}"]) for s in m.decoder.state_names}
    return {s: torch.zeros(N, Hd, dtype=torch.float64) for s in m.decoder.state_names}


def _torch_attention(torch, m, P, memory, smask):
    """``attend(q)``: weights (Tq, N, S) and context (Tq, N, C) for queries ``q`` (Tq, N, Hd)."""
    mask_t = None if smask is None else torch.from_numpy(np.asarray(smask).T.copy())  # (N, S)

    def attend(q):
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

    return attend


def _torch_decoder(torch, m, params, P, inputs, init, attend):
    """The decoder as a torch module (step by step for Bahdanau): the pieces the readout reads, and the module."""
    cell = m.decoder.cell.name
    dec = rnn_module(torch, cell, m.decoder.sizes["D"], m.H_dec)
    _load(torch, dec, cell, [{k[4:]: v for k, v in params.items() if k.startswith("dec.")}])

    def hx(state):
        return (state["h"][None], state["c"][None]) if cell == "lstm" else state["h"][None]

    if not m.bahdanau:
        out, _ = dec(torch.cat(inputs, dim=-1), hx(init))
        if m.attention is None:
            return [out], dec
        _, ctx = attend(out)
        return [torch.tanh(torch.cat([ctx, out], dim=-1) @ P["attn.W_c"].T)], dec
    state, hs, cs = init, [], []
    for t in range(inputs[0].shape[0]):
        _, ctx = attend(state["h"][None])
        out, new = dec(torch.cat([p[t:t + 1] for p in inputs] + [ctx], dim=-1), hx(state))
        state = {"h": new[0][0], "c": new[1][0]} if cell == "lstm" else {"h": new[0]}
        hs.append(out[0])
        cs.append(ctx[0])
    return [torch.stack(hs), torch.stack(cs)], dec


def torch_loss_and_grads(m, params, src, tin, tout, smask=None, tmask=None):
    """The loss and gradients of ``m`` composed from torch modules and operations (float64), keyed like
    :meth:`Seq2Seq.loss_and_grads`; see :mod:`symrnn.oracles.seq2seq`."""
    import torch

    for cell in (m.encoder.cell, m.decoder.cell):
        if cell.name not in TORCH_GATES:
            raise UnknownNameError(f"PyTorch has no module for the cell {cell.name!r}; the torch composition "
                                   f"covers {list(TORCH_GATES)}.")

    def leaf(v):
        return torch.tensor(np.asarray(v, dtype=np.float64), dtype=torch.float64, requires_grad=True)

    P = {k: leaf(v) for k, v in params.items() if not k.startswith(("enc.", "dec."))}
    S, N = src.shape[:2]
    lengths = smask.sum(axis=0) if smask is not None else np.full(N, S)
    src_t = leaf(src) if m.src_vocab is None else None
    x = src_t if src_t is not None else P["emb_src"][torch.from_numpy(np.asarray(src))]
    memory, z, modules = _torch_encoder(torch, m, params, x, lengths)
    Tn = tin.shape[0]
    contexts = [z.expand(Tn, N, z.shape[-1])] if m.context else []
    inputs = [P["emb_tgt"][torch.from_numpy(np.asarray(tin))]] + contexts
    attend = _torch_attention(torch, m, P, memory, smask) if m.attention is not None else None
    pieces, dec = _torch_decoder(torch, m, params, P, inputs, _torch_initial_states(torch, m, P, z), attend)
    logits = torch.cat(pieces + contexts, dim=-1) @ P["out.V"].T + P["out.c"]
    logp = torch.log_softmax(logits, dim=-1)
    tout_np = np.asarray(tout)
    scored = (tout_np != -1) if tmask is None else (np.asarray(tmask) & (tout_np != -1))
    picked = logp.gather(-1, torch.from_numpy(np.where(tout_np == -1, 0, tout_np))[..., None])[..., 0]
    total = -(picked * torch.from_numpy(scored.astype(np.float64))).sum()
    scale = {"sum": 1.0, "batch-mean": 1.0 / N}.get(m.reduction, 1.0 / max(int(scored.sum()), 1))
    loss = total * scale
    loss.backward()
    grads = {k: v.grad.numpy().copy() if v.grad is not None else np.zeros(tuple(v.shape)) for k, v in P.items()}
    enc = m.encoder
    for module, layer in modules:
        for d, g in zip(layer.directions, _module_grads(enc.cell.name, module, m.H, len(layer.directions))):
            grads.update({f"enc.{enc.key(layer.index, d, k)}": v for k, v in g.items()})
    grads.update({f"dec.{k}": v for k, v in _module_grads(m.decoder.cell.name, dec, m.H_dec, 1)[0].items()})
    if src_t is not None:
        grads["src"] = src_t.grad.numpy().copy()
    return float(loss.detach()), grads

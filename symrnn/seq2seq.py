"""Sequence to sequence: an encoder, a bridge, attention and a decoder, wired in one unrolled graph.

Every recurrence runs the generated code of its cell (:class:`symrnn.codegen.BlockCode`),
the encoder through the wiring of :class:`symrnn.wiring.StackedModel` (any cell, uni- or
bidirectional, stacked); the bridge, Luong's combination ``tanh(W_c [ctx; h])`` and the
readout are stateless cells run by the same generator; attention is a program of the
operations over source positions of :data:`symrnn.functions.SEQUENCE_RULES`, swept
backwards by :class:`symrnn.attention.Tape`.  The gradient that attention sends to the
encoder states enters the encoder's generated backward as per-step upstream gradients,
the bridge's and the context's as upstream gradients at each sequence's last step.

>>> import numpy as np, symrnn as sr
>>> model = sr.Seq2Seq("gru", src_vocab=7, tgt_vocab=6, E=3, H=4, attention="general")
>>> params = model.init_params(seed=0)
>>> rng = np.random.default_rng(0)
>>> src, tgt_in, tgt_out = rng.integers(0, 7, (5, 2)), rng.integers(0, 6, (3, 2)), rng.integers(0, 6, (3, 2))
>>> loss, grads = model.loss_and_grads(params, src, tgt_in, tgt_out)
>>> sorted(grads) == sorted(params)
True
>>> model.forward(params, src, tgt_in)["attention"].shape     # (T, N, S): a[t, n, s]
(3, 2, 5)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from .attention import SCORES, Attention, Tape
from .bptt import Derivation
from .cell import Cell
from .codegen import BlockCode, Workspace, fresh
from .errors import NonFiniteError, ShapeError, UnknownNameError
from .functions import sum_t, tanh
from .losses import IGNORE_LABEL, get_loss, scale_of
from .model import Model, readout_cell
from .protocol import Part
from .symbols import MatTVec, Param, tsym
from .validation import as_float_array, check_param_names, check_shape
from .wiring import StackedModel

BRIDGES = ("copy", "linear", "tanh", "none")
STYLES = ("luong", "bahdanau")
_DTYPES = (np.float64, np.float32)


# -- stateless blocks run by the generated code ---------------------------------------------------
class _Stateless:
    """A cell without state (``y = f(P z + b)``) run by :class:`BlockCode` over ``M`` rows at once."""

    def __init__(self, cell: Cell, prefix: str, outputs):
        self.cell, self.prefix, self.outputs = cell, prefix, list(outputs)
        self.code = BlockCode(cell.name, cell.equations, cell.input_symbol, {}, cell.params, cell.sizes,
                              external=self.outputs)

    def keys(self):
        return {f"{self.prefix}{k}": spec.shape for k, spec in self.cell.params.items()}

    def local(self, params):
        return {k: params[f"{self.prefix}{k}"] for k in self.cell.params}

    def forward(self, params, Z, sizes, empty=fresh):
        flat = np.ascontiguousarray(Z).reshape(1, -1, Z.shape[-1])
        cache = self.code.forward(self.local(params), flat, {}, sizes, empty)
        return (flat, cache), {o: cache[f"C_{o}"].reshape(Z.shape[:-1] + (-1,)) for o in self.outputs}

    def backward(self, params, saved, douts, sizes, grads, empty=fresh):
        flat, cache = saved
        ext = {o: np.ascontiguousarray(g).reshape(1, flat.shape[1], -1) for o, g in douts.items()}
        g, dflat, _ = self.code.backward(self.local(params), flat, cache, ext, {}, sizes, empty)
        for k, v in g.items():
            grads[f"{self.prefix}{k}"] = grads.get(f"{self.prefix}{k}", 0) + v
        return dflat.reshape(flat.shape[1], -1)


def _bridge_cell(states, activation):
    cell = Cell("bridge", "the encoder's final state(s) mapped to the decoder's initial state(s)")
    z = cell.input("z", "D", role="the encoder's final output state(s), directions concatenated")
    for s, size in states.items():
        W = cell.param(f"W_{s}", size, "D", role=f"bridge weights to the decoder's initial {s}")
        b = cell.param(f"b_{s}", size, role=f"bridge bias of the decoder's initial {s}")
        cell.let(f"{s}_init", activation(W @ z + b) if activation else W @ z + b,
                 role=f"the decoder's initial {s}")
    return cell


def _combine_cell():
    cell = Cell("attention-combine", "Luong's attentional state htilde = tanh(W_c [ctx; h])")
    z = cell.input("z", "D", role="[ctx_t; h_t]")
    W_c = cell.param("W_c", "H", "D", role="combination weights")
    cell.let("htilde", tanh(W_c @ z), role="attentional hidden state")
    return cell


# -- checks ---------------------------------------------------------------------------------------
def _ids(value, name, vocab, shape_hint, allow_ignore=False):
    ids = np.asarray(value)
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
        raise ShapeError(f"{name} has dtype {ids.dtype}; expected integer token ids {shape_hint} "
                         f"(use .astype(int)).")
    if ids.ndim != 2 or 0 in ids.shape:
        raise ShapeError(f"{name} has shape {ids.shape}; expected {shape_hint} with both sizes >= 1 (time-major).")
    bad = (ids < 0) | (ids >= vocab)
    if allow_ignore:
        bad &= ids != IGNORE_LABEL
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ShapeError(
            f"{name} holds token id {int(ids[where])} at (t, n) = {where}, outside the vocabulary 0..{vocab - 1}"
            + (f" ({IGNORE_LABEL} marks an ignored step)" if allow_ignore else "")
            + "; pad with a valid id (e.g. 0) and mask the padding, or enlarge the vocabulary.")
    return ids


def _mask(mask, lengths, shape, name, prefix):
    """A (T, N) boolean mask from ``mask`` and/or ``lengths`` (None: every step); refuses contradictions."""
    T, N = shape
    out = None
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool and not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
            raise ShapeError(f"{name}_mask must hold booleans (or 0/1), got dtype {m.dtype}.")
        check_shape(m, (T, N), f"{name}_mask", f"(steps, batch) of the {name} ids: true where a token is real")
        out = m.astype(bool)
    if lengths is not None:
        L = np.asarray(lengths)
        if L.shape != (N,) or not np.issubdtype(L.dtype, np.integer) or L.min() < 1 or L.max() > T:
            raise ShapeError(f"{name}_lengths must be N = {N} integers in 1..{T} (the {name} ids have {T} steps), "
                             f"got {lengths!r}.")
        from_lengths = np.arange(T)[:, None] < L[None, :]
        if out is not None and not np.array_equal(out, from_lengths):
            n = int(np.argwhere((out != from_lengths).any(axis=0))[0][0])
            raise ShapeError(
                f"{name}_lengths[{n}] = {int(L[n])} contradicts {name}_mask[:, {n}], which marks "
                f"{int(out[:, n].sum())} step(s) {np.flatnonzero(out[:, n]).tolist()} as real; give one of them "
                f"or make them agree.")
        out = from_lengths
    if out is None:
        return None
    empty = np.flatnonzero(~out.any(axis=0))
    if empty.size:
        raise ShapeError(f"{name}_mask hides the whole {name} sequence {int(empty[0])} (no true step in column "
                         f"{int(empty[0])}); nothing of it would be read or scored: drop it from the batch.")
    if prefix:
        holes = np.flatnonzero((out[1:] & ~out[:-1]).any(axis=0))
        if holes.size:
            raise ShapeError(
                f"{name}_mask[:, {int(holes[0])}] = {out[:, holes[0]].astype(int).tolist()} has padding before a "
                f"real token; the {name} sequence must be its real tokens first, then padding (true..., false...).")
    return out


def _gather(A, index):
    """``A[index[t, n], n]``: each sequence reversed within its length (an involution)."""
    return np.take_along_axis(A, index.reshape(index.shape + (1,) * (A.ndim - 2)), axis=0)


def _reversal(lengths, S):
    t = np.arange(S)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


@dataclass
class _Run:
    """What the forward pass keeps for the backward pass."""

    params: dict
    src_ids: object
    X_src: np.ndarray
    lengths: np.ndarray
    rev: np.ndarray
    trace: list
    memory: np.ndarray
    z: np.ndarray
    bridge: object
    S0: dict
    dec: object  # luong/none: (X, cache); bahdanau: list of (X_t, cache_t, q node, start, stop)
    tape: Tape | None
    nodes: dict
    combine: object
    readout: object
    pieces: list  # (name, width) of the readout's input
    logits: np.ndarray
    weights: np.ndarray | None
    dec_states: np.ndarray
    src_mask: np.ndarray | None


class Seq2Seq:
    """An encoder-decoder with exact gradients (see the module docstring and the README).

    Parameters
    ----------
    encoder_cell, decoder_cell : str or Cell
        Any cell (the decoder's defaults to the encoder's).
    src_vocab : int or None
        Source vocabulary size; ``None`` reads dense source vectors ``(S, N, E)``.
    tgt_vocab : int
        Target vocabulary size (the readout's K).
    E, H : int
        Embedding and hidden sizes of the encoder; ``E_tgt``, ``H_dec`` default to them.
    num_layers, bidirectional, merge, residual
        The encoder's stack, as :class:`~symrnn.wiring.StackedModel`.  The decoder has one layer.
    bridge : ``copy``, ``linear``, ``tanh``, ``none`` or None
        How the encoder's final output state(s) ``z`` (the top layer's directions concatenated,
        each at its sequence's last real token) start the decoder: ``copy`` sets the decoder's
        output state ``h_0 = z`` (needs ``len(z) = H_dec``; other states such as the LSTM's ``c``
        start at zero); ``linear`` sets every decoder state ``s_0 = W_s z + b_s``, ``tanh``
        ``s_0 = tanh(W_s z + b_s)``; ``none`` starts at zero.  Default: ``copy`` when the sizes
        allow it, else ``tanh``.
    context : bool
        Cho et al. 2014: feed ``z`` into every decoder step's input (``x_t = [emb(y_{t-1}); z]``)
        and into the readout.
    attention : ``dot``, ``general``, ``additive`` or None
    attention_style : ``luong`` or ``bahdanau``
        ``luong``: the query is the decoder state ``h_t``, the readout reads
        ``htilde_t = tanh(W_c [ctx_t; h_t])``.  ``bahdanau``: the query is the previous state
        ``h_{t-1}``, ``ctx_t`` is fed into step t's input and the readout reads ``[h_t; ctx_t]``.
    attention_size : int
        The additive score's width (default ``H_dec``).
    reduction : ``sum``, ``mean``, ``token-mean`` or ``batch-mean``
        Of the per-token softmax cross-entropy (``mean``/``token-mean``: over unmasked tokens).

    Parameters and gradients are named ``emb_src``, ``emb_tgt``, ``enc.<StackedModel key>``
    (``enc.l0.fwd.W``), ``dec.<cell parameter>`` (``dec.W_i``), ``bridge.W_h``, ``bridge.b_h``
    (one pair per decoder state), ``attn.W_a``, ``attn.U_a``, ``attn.v_a``, ``attn.W_c`` and the
    readout's ``out.V``, ``out.c``.

    Examples
    --------
    >>> import numpy as np, symrnn as sr
    >>> model = sr.Seq2Seq("gru", "lstm", src_vocab=20, tgt_vocab=15, E=4, H=6,
    ...                    bridge="linear", attention="general")
    >>> params = model.init_params(seed=0)
    >>> rng = np.random.default_rng(0)
    >>> src = rng.integers(0, 20, size=(7, 2))        # (S, N) source ids
    >>> tgt_in = rng.integers(0, 15, size=(5, 2))     # (T, N) decoder inputs (teacher forcing)
    >>> tgt_out = rng.integers(0, 15, size=(5, 2))    # (T, N) ids scored at each step
    >>> loss, grads = model.loss_and_grads(params, src, tgt_in, tgt_out, src_lengths=[7, 3])
    >>> grads["attn.W_a"].shape, grads["bridge.W_c"].shape
    ((6, 6), (6, 6))
    >>> weights = model.forward(params, src, tgt_in, src_lengths=[7, 3])["attention"]
    >>> weights.shape, float(weights[:, 1, 3:].max())  # (T, N, S); no weight on padding
    ((5, 2, 7), 0.0)
    """

    def __init__(self, encoder_cell="lstm", decoder_cell=None, *, src_vocab=None, tgt_vocab, E, H, E_tgt=None,
                 H_dec=None, num_layers=1, bidirectional=False, merge="concat", residual=False, bridge=None,
                 context=False, attention=None, attention_style="luong", attention_size=None, reduction="sum"):
        for name, value in (("tgt_vocab", tgt_vocab), ("E", E), ("H", H)) + tuple(
                (n, v) for n, v in (("src_vocab", src_vocab), ("E_tgt", E_tgt), ("H_dec", H_dec),
                                    ("attention_size", attention_size)) if v is not None):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ShapeError(f"{name} must be a positive integer, got {value!r}.")
        self.src_vocab = None if src_vocab is None else int(src_vocab)
        self.tgt_vocab, self.E, self.H = int(tgt_vocab), int(E), int(H)
        self.E_tgt, self.H_dec = int(E_tgt or E), int(H_dec or H)
        self.encoder = StackedModel(encoder_cell, D=self.E, H=self.H, num_layers=num_layers,
                                    bidirectional=bidirectional, merge=merge, residual=residual, loss="upstream")
        self.top = self.encoder.layers[-1]
        self.C = self.encoder.width  # the memory's width
        self.Z = self.encoder.unit.state_size(self.encoder.out) * len(self.top.directions)
        if attention is not None and attention not in SCORES:
            raise UnknownNameError(f"Unknown attention score {attention!r}; expected one of {list(SCORES)} or None "
                                   f"(Luong's dot and general, Bahdanau's additive, also called concat).")
        if attention_style not in STYLES:
            raise UnknownNameError(f"Unknown attention_style {attention_style!r}; expected one of {list(STYLES)}.")
        self.attention = None if attention is None else Attention(attention, self.H_dec, self.C, attention_size)
        self.style = attention_style
        self.context = bool(context)
        self.bahdanau = self.attention is not None and self.style == "bahdanau"
        D_dec = self.E_tgt + (self.Z if self.context else 0) + (self.C if self.bahdanau else 0)
        self.decoder = Model(decoder_cell if decoder_cell is not None else encoder_cell, D=D_dec, H=self.H_dec,
                             loss="upstream")
        self.dec_states = {s: self.decoder.cell.states[s] for s in self.decoder.state_names}
        self.out_state = self.decoder.out
        can_copy = self.Z == self.decoder.state_size(self.out_state)
        self.bridge_mode = bridge if bridge is not None else ("copy" if can_copy else "tanh")
        if self.bridge_mode not in BRIDGES:
            raise UnknownNameError(f"Unknown bridge {bridge!r}; expected one of {list(BRIDGES)}.")
        if self.bridge_mode == "copy" and not can_copy:
            raise ShapeError(
                f"bridge='copy' sets the decoder's h_0 to the encoder's final state(s), {self.Z} wide "
                f"({len(self.top.directions)} direction(s) of H={self.H}), but the decoder's state has size "
                f"{self.decoder.state_size(self.out_state)}; use bridge='linear' or 'tanh' (a learned map).")
        if self.bridge_mode == "none" and self.attention is None and not self.context:
            raise UnknownNameError("bridge='none' without attention or context leaves the decoder unconnected to "
                                   "the encoder; choose a bridge, context=True or an attention score.")
        self.bridge = None
        if self.bridge_mode in ("linear", "tanh"):
            self.bridge = _Stateless(_bridge_cell(self.dec_states, tanh if self.bridge_mode == "tanh" else None),
                                     "bridge.", [f"{s}_init" for s in self.dec_states])
        self.combine = None
        if self.attention is not None and self.style == "luong":
            self.combine = _Stateless(_combine_cell(), "attn.", ["htilde"])
        self.readout_pieces = [("htilde" if self.combine else "h", self.H_dec)]
        if self.bahdanau:
            self.readout_pieces.append(("ctx", self.C))
        if self.context:
            self.readout_pieces.append(("z", self.Z))
        self.R = sum(w for _, w in self.readout_pieces)
        self.readout = _Stateless(readout_cell("r", "logit", "H"), "out.", ["logit"])
        self.loss_rule = get_loss("cross-entropy")
        self.loss_rule.check_reduction(reduction)
        self.reduction = reduction
        self._threads = threading.local()

    def _ws(self, key):
        """This thread's reusable arrays for one block's generated code (see :class:`~symrnn.codegen.Workspace`)."""
        spaces = self._threads.__dict__.setdefault("spaces", {})
        if key not in spaces:
            spaces[key] = Workspace()
        return spaces[key]

    def _owned(self, array):
        return any(ws.owns(array) for ws in self._threads.__dict__.get("spaces", {}).values())

    # -- parameters -----------------------------------------------------------------------------
    @property
    def param_shapes(self) -> dict:
        shapes = {}
        if self.src_vocab is not None:
            shapes["emb_src"] = (self.src_vocab, self.E)
        shapes["emb_tgt"] = (self.tgt_vocab, self.E_tgt)
        shapes.update({f"enc.{k}": v for k, v in self.encoder.param_shapes.items()})
        dec_sizes = self.decoder.sizes
        shapes.update({f"dec.{k}": v for k, v in self.decoder.param_shapes.items()})
        if self.bridge is not None:
            sizes = {"D": self.Z, **{k: dec_sizes[k] for k in ("H", "K") if dec_sizes[k]}}
            shapes.update({k: tuple(sizes[s] for s in spec) for k, spec in self.bridge.keys().items()})
        if self.attention is not None:
            shapes.update(self.attention.param_shapes)
        if self.combine is not None:
            shapes["attn.W_c"] = (self.H_dec, self.C + self.H_dec)
        shapes["out.V"] = (self.tgt_vocab, self.R)
        shapes["out.c"] = (self.tgt_vocab,)
        return shapes

    def init_params(self, seed=0, scale=None, dtype=np.float64) -> dict:
        """Weights uniform in ``[-scale, scale]`` (default ``1/sqrt(H_dec)``), embeddings ``N(0, 1)`` (PyTorch's)."""
        rng = np.random.default_rng(seed)
        scale = 1.0 / np.sqrt(self.H_dec) if scale is None else scale
        return {k: (rng.normal(size=s) if k.startswith("emb_") else rng.uniform(-scale, scale, size=s)).astype(dtype)
                for k, s in self.param_shapes.items()}

    @property
    def gradient_keys(self) -> list:
        return list(self.param_shapes) + (["src"] if self.src_vocab is None else [])

    def parts(self) -> list:
        """The blocks of the model (see :class:`symrnn.protocol.Part`): the encoder's parts (prefixed
        ``enc.``), the bridge, attention, the decoder, Luong's combination, the readout and the loss."""
        def enc(name):
            return name if name == "input" else f"enc.{name}"

        parts = [replace(p, name=enc(p.name), reads=tuple(map(enc, p.reads)), prefix=p.prefix and f"enc.{p.prefix}")
                 for p in self.encoder.parts() if p.kind in ("cell", "merge", "residual")]
        memory = parts[-1].name
        parts.append(Part("bridge", "bridge", (memory,), prefix="bridge.", width=self.Z, detail=self.bridge_mode,
                          cell=None if self.bridge is None else self.bridge.cell))
        dec = Part("cell", "dec", ("target", "bridge"), prefix="dec.", cell=self.decoder.cell,
                   width=self.decoder.sizes["D"])
        if self.attention is not None:
            parts.append(Part("attention", "attention", (memory, "dec"), prefix="attn.", width=self.C,
                              detail=f"{self.attention.score}, {self.style}"))
        parts.append(dec)
        if self.combine is not None:
            parts.append(Part("combine", "combine", ("attention", "dec"), prefix="attn.", cell=self.combine.cell,
                              width=self.C + self.H_dec))
        parts.append(Part("readout", "readout", (parts[-1].name,), prefix="out.", cell=self.readout.cell,
                          width=self.R))
        return parts + [Part("loss", "loss", ("readout",), width=self.tgt_vocab, detail=self.loss_rule.name)]

    def derive(self) -> "Seq2SeqDerivation":
        """The symbolic derivation: every block's equations and adjoints, and the paths of ``dL/dh_enc``."""
        if getattr(self, "_derivation", None) is None:
            self._derivation = Seq2SeqDerivation(self)
        return self._derivation

    # -- checks ---------------------------------------------------------------------------------
    def _check_params(self, params):
        check_param_names(params, self.param_shapes)
        params = {k: as_float_array(v, f"params[{k!r}]") for k, v in params.items()}
        dtypes = {v.dtype for v in params.values()}
        if len(dtypes) > 1:
            raise ShapeError(f"params mix dtypes {sorted(map(str, dtypes))}; give every parameter one dtype.")
        dtype = dtypes.pop()
        if dtype not in _DTYPES:
            raise ShapeError(f"parameters must be float64 or float32, got {dtype}.")
        for k, shape in self.param_shapes.items():
            check_shape(params[k], shape, f"params[{k!r}]", "shapes come from the vocabularies, E, H and the options")
        return params, dtype

    def _source(self, src, dtype):
        if self.src_vocab is None:
            X = as_float_array(src, "src").astype(dtype, copy=False)
            if X.ndim != 3 or 0 in X.shape[:2] or X.shape[2] != self.E:
                raise ShapeError(f"src has shape {X.shape}; expected dense inputs (S, N, E={self.E}) (time-major), "
                                 f"as the model was built with src_vocab=None.")
            return None, X
        return _ids(src, "src", self.src_vocab, "(S, N)"), None

    def _prepare(self, params, src, tgt_in, tgt_out, src_mask, tgt_mask, src_lengths, tgt_lengths, scored=True):
        if scored and tgt_out is None:
            raise ShapeError("tgt_out is None; give the target ids scored at each decoder step (T, N).")
        params, dtype = self._check_params(params)
        ids, X = self._source(src, dtype)
        S, N = (ids if ids is not None else X).shape[:2]
        tin = _ids(tgt_in, "tgt_in", self.tgt_vocab, "(T, N)")
        if tin.shape[1] != N:
            raise ShapeError(f"tgt_in has batch size {tin.shape[1]} but src has {N}: one target per source sequence.")
        T = tin.shape[0]
        tout = None
        if tgt_out is not None:
            tout = _ids(tgt_out, "tgt_out", self.tgt_vocab, "(T, N)", allow_ignore=True)
            if tout.shape != tin.shape:
                raise ShapeError(f"tgt_out has shape {tout.shape} but tgt_in has {tin.shape}: teacher forcing reads "
                                 f"tgt_in[t] (y_(t-1)) and scores tgt_out[t] (y_t) at every decoder step.")
        smask = _mask(src_mask, src_lengths, (S, N), "src", prefix=True)
        tmask = _mask(tgt_mask, tgt_lengths, (T, N), "tgt", prefix=False)
        if tout is not None:
            ignored = tout != IGNORE_LABEL
            tmask = ignored if tmask is None else tmask & ignored
            tout = np.where(ignored, tout, 0)
        lengths = smask.sum(axis=0) if smask is not None else np.full(N, S)
        return params, dtype, ids, X, tin, tout, smask, tmask, lengths

    # -- forward --------------------------------------------------------------------------------
    def _split(self, params, prefix):
        n = len(prefix)
        return {k[n:]: v for k, v in params.items() if k.startswith(prefix)}

    def _encode(self, params, X, lengths):
        enc, code, out = self.encoder, self.encoder.cell_code, self.encoder.out
        p_enc, rev = self._split(params, "enc."), _reversal(lengths, X.shape[0])
        trace, inp = [], X
        for layer in enc.layers:
            sizes, dirs = enc.layer_sizes(layer), {}
            for d in layer.directions:
                X_d = inp if d == "fwd" else _gather(inp, rev)
                S0 = {s: np.zeros((X.shape[1], enc.unit.state_size(s)), X.dtype) for s in enc.state_names}
                cache = code.forward(enc.direction_params(p_enc, layer.index, d), X_d, S0, sizes,
                                     self._ws(("enc", layer.index, d)))
                H_d = cache[f"S_{out}"][1:]
                dirs[d] = (X_d, cache, H_d if d == "fwd" else _gather(H_d, rev))
            y = enc.merge.forward(dirs["fwd"][2], dirs["bwd"][2]) if layer.bidirectional else dirs["fwd"][2]
            if layer.residual:
                y = y + inp
            trace.append((inp, dirs, y))
            inp = y
        n = np.arange(X.shape[1])
        z = np.concatenate([trace[-1][1][d][1][f"S_{out}"][lengths, n] for d in self.top.directions], axis=-1)
        return trace, np.ascontiguousarray(inp), z, rev

    def _initial_states(self, params, z):
        N, dtype = z.shape[0], z.dtype
        S0 = {s: np.zeros((N, self.decoder.state_size(s)), dtype) for s in self.dec_states}
        saved = None
        if self.bridge_mode == "copy":
            S0[self.out_state] = z.copy()
        elif self.bridge is not None:
            saved, outs = self.bridge.forward(params, z, {"D": self.Z, "H": self.H_dec}, self._ws("bridge"))
            S0 = {s: outs[f"{s}_init"] for s in self.dec_states}
        return saved, S0

    def _run(self, params, dtype, ids, X, tin, smask, lengths):
        if ids is not None:
            X = params["emb_src"][ids]
        trace, memory, z, rev = self._encode(params, X, lengths)
        bridge_saved, S0 = self._initial_states(params, z)
        T, N = tin.shape
        emb = params["emb_tgt"][tin]
        parts = [emb] + ([np.broadcast_to(z, (T,) + z.shape)] if self.context else [])
        code, p_dec, dec_sizes = self.decoder.cell_code, self._split(params, "dec."), self.decoder.sizes
        tape, nodes, weights, combine = None, {}, None, None
        if self.attention is not None:
            tape = Tape()
            nodes["params"] = {k: tape.leaf(params[k]) for k in self.attention.param_shapes}
            nodes["memory"] = tape.leaf(memory)
            nodes["keys"] = self.attention.keys(tape, nodes["params"], nodes["memory"])
            nodes["mark"] = tape.mark()
        mask = smask
        if not self.bahdanau:
            Xd = np.concatenate(parts, axis=-1)
            cache = code.forward(p_dec, Xd, S0, dec_sizes, self._ws("dec"))
            Hd = cache[f"S_{self.out_state}"][1:]
            dec = (Xd, cache)
            top = Hd
            if self.attention is not None:
                nodes["query"] = tape.leaf(Hd)
                a, ctx = self.attention.attend(tape, nodes["params"], nodes["query"], nodes["keys"], nodes["memory"],
                                               mask)
                nodes["ctx"], weights = ctx, tape.values[a]
                Zc = np.concatenate([tape.values[ctx], Hd], axis=-1)
                combine, outs = self.combine.forward(params, Zc, {"D": self.C + self.H_dec, "H": self.H_dec},
                                                     self._ws("combine"))
                top = outs["htilde"]
            pieces = [top] + ([np.broadcast_to(z, (T,) + z.shape)] if self.context else [])
        else:
            dec, state, Hs, ctxs, ws = [], dict(S0), [], [], []
            for t in range(T):
                q = tape.leaf(state[self.out_state][None])
                start = tape.mark()
                a, ctx = self.attention.attend(tape, nodes["params"], q, nodes["keys"], nodes["memory"], mask)
                x_t = np.concatenate([p[t:t + 1] for p in parts] + [tape.values[ctx]], axis=-1)
                cache = code.forward(p_dec, x_t, state, dec_sizes)
                state = {s: cache[f"S_{s}"][1] for s in self.dec_states}
                dec.append((x_t, cache, q, ctx, start, tape.mark()))
                Hs.append(state[self.out_state])
                ctxs.append(tape.values[ctx][0])
                ws.append(tape.values[a][0])
            Hd, weights = np.stack(Hs), np.stack(ws)
            pieces = [Hd, np.stack(ctxs)] + ([np.broadcast_to(z, (T,) + z.shape)] if self.context else [])
        R = np.concatenate(pieces, axis=-1)
        readout, outs = self.readout.forward(params, R, {"H": self.R, "K": self.tgt_vocab}, self._ws("readout"))
        return _Run(params, ids, X, lengths, rev, trace, memory, z, bridge_saved, S0, dec, tape, nodes, combine,
                    readout, pieces, outs["logit"], weights, Hd, smask)

    def forward(self, params, src, tgt_in, src_mask=None, src_lengths=None) -> dict:
        """Teacher-forced outputs.

        Returns
        -------
        dict
            ``logits`` (T, N, K), ``attention`` weights (T, N, S) (None without attention),
            ``decoder_states`` (T, N, H_dec), ``encoder_states`` (S, N, C), ``final`` (N, len z).
        """
        params, dtype, ids, X, tin, _, smask, _, lengths = self._prepare(params, src, tgt_in, None, src_mask, None,
                                                                         src_lengths, None, scored=False)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            run = self._run(params, dtype, ids, X, tin, smask, lengths)
        return {"logits": run.logits.copy(), "attention": None if run.weights is None else run.weights.copy(),
                "decoder_states": np.array(run.dec_states), "encoder_states": run.memory.copy(), "final": run.z}

    def loss(self, params, src, tgt_in, tgt_out, src_mask=None, tgt_mask=None, src_lengths=None,
             tgt_lengths=None) -> float:
        """The loss alone (one forward pass); arguments as :meth:`loss_and_grads`."""
        params, dtype, ids, X, tin, tout, smask, tmask, lengths = self._prepare(
            params, src, tgt_in, tgt_out, src_mask, tgt_mask, src_lengths, tgt_lengths)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            run = self._run(params, dtype, ids, X, tin, smask, lengths)
            value, _ = cross_entropy(run.logits, tout, self.reduction, tmask)
        return _finite(value, self)

    # -- backward -------------------------------------------------------------------------------
    def loss_and_grads(self, params, src, tgt_in, tgt_out, src_mask=None, tgt_mask=None, src_lengths=None,
                       tgt_lengths=None):
        """The loss and its exact gradient with respect to every parameter (and ``src`` when dense).

        Parameters
        ----------
        params : dict of str to ndarray
            Every parameter by name (:meth:`init_params`).
        src : ndarray
            ``(S, N)`` source ids, or ``(S, N, E)`` vectors when ``src_vocab`` is None.
        tgt_in : ndarray
            ``(T, N)`` the decoder's inputs (teacher forcing: ``y_{t-1}``, starting with a BOS id).
        tgt_out : ndarray
            ``(T, N)`` the ids scored at each step (``-1``: ignored).
        src_mask, src_lengths : ndarray, optional
            ``(S, N)`` true on real tokens (which come first, then padding), or the lengths ``(N,)``.
        tgt_mask, tgt_lengths : ndarray, optional
            ``(T, N)`` the scored steps, or their numbers ``(N,)``.

        Returns
        -------
        loss : float
        grads : dict of str to ndarray
            Keyed as the parameters (plus ``src`` for dense inputs).
        """
        value, grads, _ = self._loss_grads_and_paths(params, src, tgt_in, tgt_out, src_mask, tgt_mask, src_lengths,
                                                     tgt_lengths)
        return value, grads

    def _loss_grads_and_paths(self, params, src, tgt_in, tgt_out, src_mask, tgt_mask, src_lengths, tgt_lengths):
        params, dtype, ids, X, tin, tout, smask, tmask, lengths = self._prepare(
            params, src, tgt_in, tgt_out, src_mask, tgt_mask, src_lengths, tgt_lengths)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            run = self._run(params, dtype, ids, X, tin, smask, lengths)
            value, dO = cross_entropy(run.logits, tout, self.reduction, tmask)
            value = _finite(value, self)
            grads, paths = self._backward(run, dO, tin)
        for k, g in grads.items():
            if not np.all(np.isfinite(g)):
                raise NonFiniteError(f"grads[{k!r}] contains NaN or infinity although the loss {value} is finite: "
                                     f"the backward pass overflowed (weights or inputs too large for {dtype}?).")
        return value, grads, (run, paths)

    def _backward(self, run, dO, tin):
        params, grads = run.params, {}
        T, N = tin.shape
        dR = self.readout.backward(params, run.readout, {"logit": dO}, {"H": self.R, "K": self.tgt_vocab}, grads,
                                   self._ws("readout"))
        dR = dR.reshape(T, N, -1)
        widths = np.cumsum([0] + [w for _, w in self.readout_pieces])
        d_pieces = {name: dR[..., a:b] for (name, _), a, b in zip(self.readout_pieces, widths[:-1], widths[1:])}
        dz_context = d_pieces["z"].sum(axis=0) if self.context else np.zeros_like(run.z)
        code, p_dec, dec_sizes = self.decoder.cell_code, self._split(params, "dec."), self.decoder.sizes
        tape, nodes = run.tape, run.nodes
        adjoint = {}
        E = self.E_tgt
        zeros = {s: np.zeros((N, self.decoder.state_size(s)), dO.dtype) for s in self.dec_states}
        if not self.bahdanau:
            if self.combine is not None:
                dZc = self.combine.backward(params, run.combine, {"htilde": d_pieces["htilde"]},
                                            {"D": self.C + self.H_dec, "H": self.H_dec}, grads,
                                            self._ws("combine")).reshape(T, N, -1)
                adjoint[nodes["ctx"]] = seeds = dZc[..., :self.C]
                tape.sweep(adjoint, nodes["mark"])
                dH = dZc[..., self.C:] + adjoint.pop(nodes["query"])
            else:
                dH = d_pieces["h"]
            Xd, cache = run.dec
            g, dX, dS0 = code.backward(p_dec, Xd, cache, {self.out_state: np.ascontiguousarray(dH)}, zeros, dec_sizes,
                                       self._ws("dec"))
            grads.update({f"dec.{k}": v for k, v in g.items()})
        else:
            dH, dctx_r = d_pieces["h"], d_pieces["ctx"]
            carry, dXs, seeds = zeros, [], [None] * T
            for t in range(T - 1, -1, -1):
                x_t, cache, q, ctx, start, stop = run.dec[t]
                g, dx, carry = code.backward(p_dec, x_t, cache, {self.out_state: np.ascontiguousarray(dH[t:t + 1])},
                                             carry, dec_sizes)
                for k, v in g.items():
                    grads[f"dec.{k}"] = grads.get(f"dec.{k}", 0) + v
                adjoint[ctx] = seeds[t] = dx[..., E + (self.Z if self.context else 0):] + dctx_r[t:t + 1]
                tape.sweep(adjoint, start, stop)
                carry = dict(carry)
                carry[self.out_state] = carry[self.out_state] + adjoint.pop(q)[0]
                dXs.append(dx[0])
            dX, dS0 = np.stack(dXs[::-1]), carry
        if tape is not None:
            tape.sweep(adjoint, 0, nodes["mark"])
            for k, node in nodes["params"].items():
                grads[k] = adjoint.get(node, np.zeros_like(params[k]))
        d_memory = adjoint.get(nodes.get("memory"), None) if tape is not None else None
        grads["emb_tgt"] = _scatter(tin, dX[..., :E], self.tgt_vocab)
        if self.context:
            dz_context = dz_context + dX[..., E:E + self.Z].sum(axis=0)
        if self.bridge_mode == "copy":
            dz_bridge = dS0[self.out_state]
        elif self.bridge is not None:
            dz_bridge = self.bridge.backward(params, run.bridge, {f"{s}_init": dS0[s] for s in self.dec_states},
                                             {"D": self.Z, "H": self.H_dec}, grads, self._ws("bridge"))
        else:
            dz_bridge = np.zeros_like(run.z)
        paths = {"attention": d_memory, "initial state": dz_bridge if self.bridge_mode != "none" else None,
                 "context": dz_context if self.context else None,
                 "context by step": (d_pieces["z"] + dX[..., E:E + self.Z]) if self.context else None,
                 "attention seeds": seeds if tape is not None else None}
        G = d_memory if d_memory is not None else np.zeros_like(run.memory)
        d_src = self._encoder_backward(run, G, dz_bridge + dz_context, grads)
        if run.src_ids is not None:
            grads["emb_src"] = _scatter(run.src_ids, d_src, self.src_vocab)
        else:
            grads["src"] = d_src
        out = {k: np.asarray(grads[k]) for k in self.gradient_keys}
        return {k: (g.copy() if self._owned(g) else g) for k, g in out.items()}, paths

    def _top_ext(self, run, G, dz):
        """The upstream gradients of the top layer's directions, in each direction's own time order:
        ``G`` (S, N, C) at the merged outputs, ``dz`` (N, len z) at each direction's final state (step
        ``len_n - 1`` in the direction's own time order)."""
        layer = self.top
        dirs = run.trace[-1][1]
        if layer.bidirectional:
            dH = dict(zip(("fwd", "bwd"), self.encoder.merge.backward(G, dirs["fwd"][2], dirs["bwd"][2])))
        else:
            dH = {"fwd": G}
        H, n, ext = self.encoder.unit.state_size(self.encoder.out), np.arange(G.shape[1]), {}
        for k, d in enumerate(layer.directions):
            e = np.array(dH[d] if d == "fwd" else _gather(dH[d], run.rev), copy=True)
            e[run.lengths - 1, n] += dz[:, k * H:(k + 1) * H]
            ext[d] = e
        return ext

    def _encoder_backward(self, run, G, dz, grads):
        enc, code, out = self.encoder, self.encoder.cell_code, self.encoder.out
        p_enc = self._split(run.params, "enc.")
        for layer in reversed(enc.layers):
            inp, dirs, _ = run.trace[layer.index]
            if layer is self.top:
                ext = self._top_ext(run, G, dz)
            elif layer.bidirectional:
                F, B = enc.merge.backward(G, dirs["fwd"][2], dirs["bwd"][2])
                ext = {"fwd": F, "bwd": _gather(B, run.rev)}
            else:
                ext = {"fwd": G}
            d_inp = G if layer.residual else None
            sizes = enc.layer_sizes(layer)
            for d in layer.directions:
                X_d, cache, _ = dirs[d]
                dS = {s: np.zeros((G.shape[1], enc.unit.state_size(s)), G.dtype) for s in enc.state_names}
                g, dX, _ = code.backward(enc.direction_params(p_enc, layer.index, d), X_d, cache,
                                         {out: np.ascontiguousarray(ext[d])}, dS, sizes,
                                         self._ws(("enc", layer.index, d)))
                grads.update({f"enc.{enc.key(layer.index, d, k)}": v for k, v in g.items()})
                dX = dX if d == "fwd" else _gather(dX, run.rev)
                d_inp = dX if d_inp is None else d_inp + dX
            G = d_inp
        return G

    # -- how the gradient reaches the encoder -----------------------------------------------------
    def gradient_paths(self, params, src, tgt_in, tgt_out, src_mask=None, tgt_mask=None, src_lengths=None,
                       tgt_lengths=None, by_step=False) -> dict:
        """``dL/dh_enc_t`` of the top encoder layer's states, split by the path the gradient takes.

        Returns ``{"attention": A, "initial state": B, "context": C, "total": D}`` (the paths the
        model has), each ``(S, N, width)``: the total adjoint of the top layer's states
        ``h_t`` (directions concatenated, ``[h_fwd[t]; h_bwd[t]]``, aligned with the source
        positions), recurrence included, when only that path's gradient is sent into the encoder.
        The backward pass is linear in what it is sent, so the parts add up to the total
        (``D = A + B + C`` to rounding).  ``attention`` enters at every source position;
        ``initial state`` (the bridge) and ``context`` only where ``z`` is read, at each
        direction's final state (the last real token forward, the first backward), and reach
        the other positions through the encoder's recurrence alone.
        """
        value, grads, (run, paths) = self._loss_grads_and_paths(params, src, tgt_in, tgt_out, src_mask, tgt_mask,
                                                                  src_lengths, tgt_lengths)
        zeros_G, zeros_z = np.zeros_like(run.memory), np.zeros_like(run.z)
        sources = {}
        if paths["attention"] is not None:
            sources["attention"] = (paths["attention"], zeros_z)
        if paths["initial state"] is not None:
            sources["initial state"] = (zeros_G, paths["initial state"])
        if paths["context"] is not None:
            sources["context"] = (zeros_G, paths["context"])
        total_G = sum((G for G, _ in sources.values()), zeros_G)
        total_z = sum((z for _, z in sources.values()), zeros_z)
        sources["total"] = (total_G, total_z)
        out = {name: self._state_adjoints(run, *args) for name, args in sources.items()}
        if by_step and paths["attention"] is not None:
            out["attention by step"] = np.stack([self._state_adjoints(run, G, zeros_z)
                                                 for G in self._attention_by_step(run, paths["attention seeds"])])
        if by_step and paths["context"] is not None:
            out["context by step"] = np.stack([self._state_adjoints(run, zeros_G, dz)
                                               for dz in paths["context by step"]])
        return out

    def _attention_by_step(self, run, seeds):
        """What the context of each decoder step sends straight to the encoder states: the attention program
        swept backwards from one step's ``dL/dc_t`` at a time (the sweep is linear in its seed)."""
        tape, nodes = run.tape, run.nodes
        for t in range(len(run.dec) if self.bahdanau else seeds.shape[0]):
            if self.bahdanau:
                _, _, _, ctx, start, stop = run.dec[t]
                adjoint = tape.sweep({ctx: seeds[t]}, start, stop)
            else:
                seed = np.zeros_like(seeds)
                seed[t] = seeds[t]
                adjoint = tape.sweep({nodes["ctx"]: seed}, nodes["mark"])
            tape.sweep(adjoint, 0, nodes["mark"])
            yield adjoint.get(nodes["memory"], np.zeros_like(run.memory))

    def _state_adjoints(self, run, G, dz):
        """Total adjoints of the top layer's output states at every step for the injections ``(G, dz)``."""
        enc, code, out = self.encoder, self.encoder.cell_code, self.encoder.out
        p_enc = self._split(run.params, "enc.")
        ext, dirs, layer = self._top_ext(run, G, dz), run.trace[-1][1], self.top
        sizes = enc.layer_sizes(layer)
        parts = []
        for d in layer.directions:
            X_d, cache, _ = dirs[d]
            S = X_d.shape[0]
            bar = np.array(ext[d], copy=True)
            params_d = enc.direction_params(p_enc, layer.index, d)
            for t in range(S - 1):  # what steps t+1.. send back to h_t: the suffix's backward
                suffix = {k: (v[t + 1:] if k.startswith(("S_", "C_", "P")) else v) for k, v in cache.items()}
                dS = {s: np.zeros((X_d.shape[1], enc.unit.state_size(s)), X_d.dtype) for s in enc.state_names}
                _, _, back = code.backward(params_d, X_d[t + 1:], suffix, {out: np.ascontiguousarray(ext[d][t + 1:])},
                                           dS, sizes)
                bar[t] += back[out]
            parts.append(bar if d == "fwd" else _gather(bar, run.rev))
        return np.concatenate(parts, axis=-1)

    def __repr__(self):
        att = f", attention={self.attention.score!r}, attention_style={self.style!r}" if self.attention else ""
        return (f"Seq2Seq({self.encoder.cell.name!r}, {self.decoder.cell.name!r}, src_vocab={self.src_vocab}, "
                f"tgt_vocab={self.tgt_vocab}, E={self.E}, H={self.H}, E_tgt={self.E_tgt}, H_dec={self.H_dec}, "
                f"num_layers={self.encoder.num_layers}, bidirectional={self.top.bidirectional}, "
                f"bridge={self.bridge_mode!r}, context={self.context}{att}, reduction={self.reduction!r})")


def _scatter(ids, d, vocab):
    """``dL/d embedding``: the rows of ``d`` added at their token ids (sorted, then summed per id)."""
    ids, rows = ids.reshape(-1), d.reshape(-1, d.shape[-1])
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((vocab, d.shape[-1]), dtype=d.dtype)
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def cross_entropy(O, Y, reduction, mask=None):
    """The softmax cross-entropy of :class:`symrnn.losses.CrossEntropy` for class indices ``Y`` (T, N), in
    fewer passes over the (T, N, K) logits: ``(value, dL/dO)``, the same reductions (:func:`scale_of`)."""
    mask = np.ones(Y.shape, dtype=bool) if mask is None else mask
    scale = scale_of(reduction, mask)
    Z = O - O.max(axis=-1, keepdims=True)
    picked = np.take_along_axis(Z, Y[..., None], axis=-1)[..., 0]
    grad = np.exp(Z, out=Z)
    total = grad.sum(axis=-1)
    value = float(((np.log(total) - picked) * mask).sum()) * scale
    grad /= total[..., None]
    flat = grad.reshape(-1, grad.shape[-1])
    flat[np.arange(Y.size), Y.reshape(-1)] -= 1.0  # one target per row: no repeated index
    if not mask.all():
        grad *= (mask * scale)[..., None]
    elif scale != 1.0:
        grad *= scale
    return value, grad


def _finite(value, model):
    value = float(value)
    if not np.isfinite(value):
        raise NonFiniteError(f"The loss of {model!r} is {value}: the forward pass overflowed; check the weights' "
                             f"and inputs' scale.")
    return value


# -- the derivation ---------------------------------------------------------------------------------
class Seq2SeqDerivation:
    """The symbolic derivation of a :class:`Seq2Seq`: each block's equations and adjoints, printed from
    the objects the computation uses, and how ``dL/dh_enc_t`` is assembled from its paths.

    Attributes: ``encoder``, ``decoder`` (:class:`~symrnn.bptt.Derivation` of each cell under an upstream
    gradient), ``bridge``, ``combine`` (of the stateless blocks, or None), ``attention`` (``(equations,
    adjoints)`` of the attention program, from the rules of :data:`symrnn.functions.SEQUENCE_RULES`),
    ``decoder_input`` and ``readout_input`` (the pieces concatenated), ``paths`` (``[(name, where,
    SymPy expression)]``: the contributions to the adjoint of the encoder states).
    """

    def __init__(self, model):
        self.model = model
        self.encoder = model.encoder.derive()
        self.decoder = model.decoder.derive()
        self.bridge = self.combine = None
        if model.bridge is not None:
            cell = model.bridge.cell
            self.bridge = Derivation(cell, (), None, external={o: tsym(o, bar=True) for o in model.bridge.outputs})
        if model.combine is not None:
            cell = model.combine.cell
            self.combine = Derivation(cell, (), None, external={"htilde": tsym("htilde", bar=True)})
        self.attention = None
        if model.attention is not None:
            self.attention = model.attention.derivation("h[t-1]" if model.bahdanau else "h[t]")
        self.decoder_input = ["emb_tgt[y[t-1]]"] + (["z"] if model.context else []) + (
            ["ctx[t]"] if model.bahdanau else [])
        self.readout_input = [name + ("" if name == "z" else "[t]") for name, _ in model.readout_pieces]
        zbar = sp.Symbol("bar z")
        final = ("each direction's final state (s = S_n forward, s = 1 backward)" if model.top.bidirectional
                 else "the last real token s = S_n")
        self.paths = []
        if self.attention is not None:
            hbar = next(rhs for lhs, rhs in self.attention[1] if lhs.name == "bar hbar[s]")
            self.paths.append(("attention path", "every source position s", hbar))
        if model.bridge_mode == "copy":
            self.paths.append(("initial-state path", final, sp.Symbol(f"bar {model.out_state}[0]")))
        elif self.bridge is not None:
            self.paths.append(("initial-state path", final, self.bridge.input_gradient))
        if model.context:
            V_z = Param("V_z")
            self.paths.append(("context path", final,
                               sum_t(sp.Symbol("bar x_z[t]") + MatTVec(V_z, tsym("logit", bar=True)))))
        self.z_note = (f"z = [{', '.join('h_' + d + '[S_n]' for d in model.top.directions)}]: the top encoder layer's "
                       f"final output state(s); bar z is split back over them")
        self.zbar = zbar

    def __repr__(self):
        m = self.model
        g_enc = next(iter(self.encoder.external.values()), "g[t]")
        lines = [f"{m!r}", "", f"Encoder (each direction of each layer; {g_enc} is what reaches its output h[t]):"]
        lines += ["  " + line for line in repr(self.encoder).splitlines()]
        if self.bridge is not None:
            lines += ["", "Bridge (z -> the decoder's initial states):"]
            lines += [f"  {e.lhs} = {e.rhs}" for e in self.bridge.forward]
            lines.append(f"  bar z = {self.bridge.input_gradient}")
            lines.append("  where bar <state>_init = dL/d<state>_0 of the decoder (below)")
        elif m.bridge_mode == "copy":
            lines += ["", f"Bridge: {m.out_state}[0] = z (copy); bar z = bar {m.out_state}[0]"]
        g_dec = next(iter(self.decoder.external.values()), "g[t]")
        lines += ["", f"Decoder (input x[t] = [{'; '.join(self.decoder_input)}]; {g_dec} is what reaches h[t]):"]
        lines += ["  " + line for line in repr(self.decoder).splitlines()]
        if self.attention is not None:
            equations, adjoints = self.attention
            lines += ["", f"Attention ({m.attention.score} score, {m.style} style; rules from SEQUENCE_RULES):"]
            lines += [f"  {e.lhs} = {e.rhs}" for e in equations]
            lines += [f"  {lhs} = {rhs}" for lhs, rhs in adjoints]
        if self.combine is not None:
            lines += ["", "Attentional state (Luong):"]
            lines += [f"  {e.lhs} = {e.rhs}" for e in self.combine.forward]
            lines.append(f"  bar z_c[t] = {self.combine.input_gradient}   (z_c[t] = [ctx[t]; h[t]])")
        lines += ["", f"Readout: logit[t] = V r[t] + c, r[t] = [{'; '.join(self.readout_input)}]; "
                      f"bar logit[t] = (yhat[t] - y[t]) * scale * mask[t]"]
        lines += ["", "How the gradient reaches the encoder states hbar[s] (the top layer's outputs):",
                  f"  {self.z_note}"]
        for name, where, expr in self.paths:
            lines.append(f"  {name} (enters at {where}): {expr}")
        lines.append("  dL/dh_enc[s] = " + " + ".join(name for name, _, _ in self.paths)
                     + " + what step s+1 of the encoder sends back (its adjoint recurrence above)")
        return "\n".join(lines)

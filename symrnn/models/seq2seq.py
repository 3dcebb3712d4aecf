"""Sequence to sequence: an encoder, a bridge, attention and a decoder, wired in one unrolled graph.

Every recurrence runs the generated code of its cell (:class:`symrnn.engine.codegen.BlockCode`), the
encoder through the wiring of :class:`symrnn.models.wiring.StackedModel` (any cell, uni- or bidirectional,
stacked); the bridge, Luong's combination ``tanh(W_c [ctx; h])`` and the readout are stateless cells run
by the same generator; attention is a program of the operations over source positions of
:data:`symrnn.engine.sequence_rules.SEQUENCE_RULES`, swept backwards by :class:`symrnn.models.attention.Tape`.
The gradient that attention sends to the encoder states enters the encoder's generated backward as
per-step upstream gradients, the bridge's and the context's as upstream gradients at each sequence's last step.

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
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from .attention import SCORES, Attention
from ..engine.codegen import Workspace
from ..errors import NonFiniteError, ShapeError, UnknownNameError
from ..engine.functions import tanh
from ..engine.losses import IGNORE_LABEL, get_loss, cross_entropy_ids as cross_entropy
from .model import Model, readout_cell
from .protocol import Part
from .seq2seq_blocks import Stateless, bridge_cell, combine_cell, path_sources, reversal, sequence_mask, token_ids
from .seq2seq_derivation import Seq2SeqDerivation
from .tape import (Tape, broadcast, concat, finals, lookup, pick, reordered, run_cell, run_stateless, run_step,
                   stack, tap, window)
from ..validation import as_float_array, check_count, check_float_params, check_param_names
from .wiring import StackedModel, refuse_matrix_states

BRIDGES = ("copy", "linear", "tanh", "none")
STYLES = ("luong", "bahdanau")


# -- stateless blocks run by the generated code ---------------------------------------------------
@dataclass
class _Run:
    """The forward pass recorded on its tape: nodes, marks (ranges of blocks) and values read after it."""

    tape: Tape
    params: dict
    nodes: dict  # P, src, memory, memory_att, z, logits, ctx (luong)
    marks: dict  # encoder: (start, stop), top: first block after the top layer's cells, keys/attend: (start, stop)
    steps: list  # bahdanau: (ctx node, start, stop) of each step's attention
    trace: list  # the encoder's layers (StackedModel._record)
    rev: np.ndarray
    lengths: np.ndarray
    src_ids: object
    paths: dict  # the adjoints the taps record during the sweep
    weights: np.ndarray | None
    dec_states: np.ndarray

    memory = property(lambda self: self.tape.values[self.nodes["memory"]])  # the encoder's outputs (S, N, C)
    z = property(lambda self: self.tape.values[self.nodes["z"]])  # the final states (N, Z)
    logits = property(lambda self: self.tape.values[self.nodes["logits"]])  # (T, N, K)


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
        The encoder's stack, as :class:`~symrnn.models.wiring.StackedModel`.  The decoder has one layer.
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
            check_count(name, value)
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
        refuse_matrix_states(self.decoder.cell, "Seq2Seq")
        self.dec_states = {s: self.decoder.cell.states[s] for s in self.decoder.state_names}
        self.out_state = self.decoder.out
        if self.dec_states[self.out_state] != "H":  # LRU's output has its input's width
            raise ShapeError(
                f"The decoder cell {self.decoder.cell.name!r} returns an output of size "
                f"{self.dec_states[self.out_state]}, not its hidden size; the attention and the readout read "
                f"H_dec={self.H_dec} wide outputs: use this cell as the encoder, or another decoder cell.")
        self._set_bridge(bridge)
        self.combine = None
        if self.attention is not None and self.style == "luong":
            self.combine = Stateless(combine_cell(), "attn.", ["htilde"])
        self.readout_pieces = [("htilde" if self.combine else "h", self.H_dec)]
        if self.bahdanau:
            self.readout_pieces.append(("ctx", self.C))
        if self.context:
            self.readout_pieces.append(("z", self.Z))
        self.R = sum(w for _, w in self.readout_pieces)
        self.readout = Stateless(readout_cell("r", "logit", "H"), "out.", ["logit"])
        self.loss_rule = get_loss("cross-entropy")
        self.loss_rule.check_reduction(reduction)
        self.reduction = reduction
        self._threads = threading.local()

    def _set_bridge(self, bridge):
        """How the encoder's final state starts the decoder: ``bridge_mode`` and its block, checked."""
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
            self.bridge = Stateless(bridge_cell(self.dec_states, tanh if self.bridge_mode == "tanh" else None),
                                     "bridge.", [f"{s}_init" for s in self.dec_states])

    def _ws(self, key):
        """This thread's reusable arrays for one block's generated code (see :class:`~symrnn.engine.codegen.Workspace`)."""
        return self._threads.__dict__.setdefault("spaces", defaultdict(Workspace))[key]

    def _owned(self, array):
        spaces = list(self._threads.__dict__.get("spaces", {}).values()) + self.encoder._spaces()
        return any(ws.owns(array) for ws in spaces)

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
        """The blocks of the model (see :class:`symrnn.models.protocol.Part`): the encoder's parts (prefixed
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
        return check_float_params(params, self.param_shapes, "shapes come from the vocabularies, E, H and the options")

    def _source(self, src, dtype):
        if self.src_vocab is None:
            X = as_float_array(src, "src").astype(dtype, copy=False)
            if X.ndim != 3 or 0 in X.shape[:2] or X.shape[2] != self.E:
                raise ShapeError(f"src has shape {X.shape}; expected dense inputs (S, N, E={self.E}) (time-major), "
                                 f"as the model was built with src_vocab=None.")
            return None, X
        return token_ids(src, "src", self.src_vocab, "(S, N)"), None

    def _prepare(self, params, src, tgt_in, tgt_out, src_mask, tgt_mask, src_lengths, tgt_lengths, scored=True):
        if scored and tgt_out is None:
            raise ShapeError("tgt_out is None; give the target ids scored at each decoder step (T, N).")
        params, dtype = self._check_params(params)
        ids, X = self._source(src, dtype)
        S, N = (ids if ids is not None else X).shape[:2]
        tin = token_ids(tgt_in, "tgt_in", self.tgt_vocab, "(T, N)")
        if tin.shape[1] != N:
            raise ShapeError(f"tgt_in has batch size {tin.shape[1]} but src has {N}: one target per source sequence.")
        T = tin.shape[0]
        tout = None
        if tgt_out is not None:
            tout = token_ids(tgt_out, "tgt_out", self.tgt_vocab, "(T, N)", allow_ignore=True)
            if tout.shape != tin.shape:
                raise ShapeError(f"tgt_out has shape {tout.shape} but tgt_in has {tin.shape}: teacher forcing reads "
                                 f"tgt_in[t] (y_(t-1)) and scores tgt_out[t] (y_t) at every decoder step.")
        smask = sequence_mask(src_mask, src_lengths, (S, N), "src", prefix=True)
        tmask = sequence_mask(tgt_mask, tgt_lengths, (T, N), "tgt", prefix=False)
        if tout is not None:
            ignored = tout != IGNORE_LABEL
            tmask = ignored if tmask is None else tmask & ignored
            tout = np.where(ignored, tout, 0)
        lengths = smask.sum(axis=0) if smask is not None else np.full(N, S)
        return params, dtype, ids, X, tin, tout, smask, tmask, lengths

    # -- the graph on the tape ----------------------------------------------------------------------
    def _encode(self, tape, P, src, lengths):
        """The encoder's wiring (:meth:`StackedModel._record`, each backward direction reversed within its
        sequence's length) and ``z``: ``(memory node, z node, trace, reversal, marks)``."""
        enc = self.encoder
        S, N = tape.values[src].shape[:2]
        rev = reversal(lengths, S)
        start = tape.mark()
        zeros = {(layer.index, d): tape.leaf({s: np.zeros((N, enc.unit.state_size(s)), tape.values[src].dtype)
                                              for s in enc.state_names}) for layer, d in enc.rows()}
        memory, trace = enc._record(tape, (P, src, zeros), None, prefix="enc.", reverse=rev)
        top = [trace[-1][1][d][0] for d in self.top.directions]
        z = finals(tape, top, lengths)
        return memory, z, trace, rev, {"encoder": (start, tape.mark()), "top": max(tape.op_of(n) for n in top) + 1}

    def _initial_states(self, tape, P, z, N, dtype):
        """The node of the decoder's initial states (a dict) from the bridge."""
        zeros = {s: np.zeros((N, self.decoder.state_size(s)), dtype) for s in self.dec_states}
        if self.bridge_mode == "copy":
            out = self.out_state
            return tape.block({**zeros, out: tape.values[z]}, lambda g, _, __: (g.get(out),), z)
        if self.bridge is not None:
            return run_stateless(tape, self.bridge.code, P, z, prefix="bridge.", outputs=self.bridge.outputs,
                                 sizes={"D": self.Z, "H": self.H_dec}, keys={f"{s}_init": s for s in self.dec_states},
                                 empty=self._ws("bridge"))
        return tape.leaf(zeros)

    def _run(self, params, ids, X, tin, smask, lengths):
        tape, paths = Tape(), {}
        P = tape.leaf(params)
        src = tape.leaf(X) if ids is None else lookup(tape, P, "emb_src", ids, self.src_vocab)
        memory, z, trace, rev, marks = self._encode(tape, P, src, lengths)
        T, N = tin.shape
        nodes = {"P": P, "src": src, "memory": memory, "z": z}
        S0 = self._initial_states(tape, P, tap(tape, z, paths, "initial state") if self.bridge_mode != "none" else z,
                                  N, tape.values[z].dtype)
        pieces = [lookup(tape, P, "emb_tgt", tin, self.tgt_vocab)]
        zb = None
        if self.context:
            zb = tap(tape, broadcast(tape, tap(tape, z, paths, "context"), T), paths, "context by step")
            pieces.append(zb)
        att, steps, weights = None, [], None
        if self.attention is not None:
            nodes["memory_att"] = tap(tape, memory, paths, "attention")
            start = tape.mark()
            att = {k: pick(tape, P, k) for k in self.attention.param_shapes}
            att["keys"] = self.attention.keys(tape, att, nodes["memory_att"])
            marks["keys"] = (start, tape.mark())
        if self.bahdanau:
            top, steps, weights = self._bahdanau(tape, P, pieces, S0, att, nodes["memory_att"], smask, paths)
            Hd = tape.values[top[0]]
        else:
            H, _ = run_cell(tape, self.decoder.cell_code, P, concat(tape, pieces), S0, prefix="dec.",
                            out=self.out_state, sizes=self.decoder.sizes, empty=self._ws("dec"))
            top, Hd = [H], tape.values[H]
            if att is not None:
                start = tape.mark()
                a, ctx = self.attention.attend(tape, att, H, att["keys"], nodes["memory_att"], smask)
                marks["attend"], nodes["ctx"], weights = (start, tape.mark()), ctx, tape.values[a]
                Zc = concat(tape, [tap(tape, ctx, paths, "attention seeds"), H])
                top = [run_stateless(tape, self.combine.code, P, Zc, prefix="attn.", outputs=["htilde"],
                                     sizes={"D": self.C + self.H_dec, "H": self.H_dec}, empty=self._ws("combine"))]
        R = concat(tape, top + ([zb] if self.context else []))
        nodes["logits"] = run_stateless(tape, self.readout.code, P, R, prefix="out.", outputs=["logit"],
                                        sizes={"H": self.R, "K": self.tgt_vocab}, empty=self._ws("readout"))
        return _Run(tape, params, nodes, marks, steps, trace, rev, lengths, ids, paths, weights, Hd)

    def _bahdanau(self, tape, P, pieces, state, att, memory, smask, paths):
        """The decoder step by step, each step's input reading the context its previous state attends to:
        ``([node of h (T, N, H), node of ctx (T, N, C)], [(ctx node, start, stop)], weights)``."""
        T = tape.values[pieces[0]].shape[0]
        N, Hd = tape.values[pieces[0]].shape[1], self.H_dec
        hs, ctxs, steps, weights = [], [], [], []
        paths["attention seeds"] = seeds = {}
        for t in range(T):
            q = pick(tape, state, self.out_state, (1, N, Hd))
            start = tape.mark()
            a, ctx = self.attention.attend(tape, att, q, att["keys"], memory, smask)
            steps.append((ctx, start, tape.mark()))
            ctx = tap(tape, ctx, seeds, t)
            x = concat(tape, [window(tape, p, range(t, t + 1)) for p in pieces] + [ctx])
            state = run_step(tape, self.decoder.cell_code, P, x, state, prefix="dec.", out=self.out_state,
                             sizes=self.decoder.sizes)
            hs.append(pick(tape, state, self.out_state))
            ctxs.append(tape.block(tape.values[ctx][0], lambda g, _, __: (g[None],), ctx))
            weights.append(tape.values[a][0])
        return [stack(tape, hs), stack(tape, ctxs)], steps, np.stack(weights)

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
            run = self._run(params, ids, X, tin, smask, lengths)
        return {"logits": run.logits.copy(), "attention": None if run.weights is None else run.weights.copy(),
                "decoder_states": np.array(run.dec_states), "encoder_states": run.memory.copy(),
                "final": run.z.copy()}

    def loss(self, params, src, tgt_in, tgt_out, src_mask=None, tgt_mask=None, src_lengths=None,
             tgt_lengths=None) -> float:
        """The loss alone (one forward pass); arguments as :meth:`loss_and_grads`."""
        params, dtype, ids, X, tin, tout, smask, tmask, lengths = self._prepare(
            params, src, tgt_in, tgt_out, src_mask, tgt_mask, src_lengths, tgt_lengths)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            run = self._run(params, ids, X, tin, smask, lengths)
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
        """The loss, the gradients and ``(run, paths)``: what reaches the encoder by each path."""
        params, dtype, ids, X, tin, tout, smask, tmask, lengths = self._prepare(
            params, src, tgt_in, tgt_out, src_mask, tgt_mask, src_lengths, tgt_lengths)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            run = self._run(params, ids, X, tin, smask, lengths)
            value, dO = cross_entropy(run.logits, tout, self.reduction, tmask)
            value = _finite(value, self)
            adjoint = run.tape.sweep({run.nodes["logits"]: dO})
        dP = adjoint[run.nodes["P"]]
        grads = {k: dP[k] if k in dP else np.zeros_like(params[k]) for k in self.param_shapes}
        if ids is None:
            grads["src"] = adjoint[run.nodes["src"]]
        for k, g in grads.items():
            if self._owned(g):
                grads[k] = g.copy()
            if not np.all(np.isfinite(g)):
                raise NonFiniteError(f"grads[{k!r}] contains NaN or infinity although the loss {value} is finite: "
                                     f"the backward pass overflowed (weights or inputs too large for {dtype}?).")
        return value, grads, (run, self._paths(run))

    def _paths(self, run):
        """``{path: adjoint}`` as the taps recorded them (None for the paths the model does not have)."""
        p, zero_z = run.paths, np.zeros_like(run.z)
        seeds = p.get("attention seeds")
        if self.bahdanau:
            C = self.C
            seeds = [seeds.get(t, np.zeros((1,) + run.z.shape[:1] + (C,))) for t in range(len(run.steps))]
        return {"attention": p.get("attention", np.zeros_like(run.memory)) if self.attention else None,
                "initial state": p.get("initial state", zero_z) if self.bridge_mode != "none" else None,
                "context": p.get("context", zero_z) if self.context else None,
                "context by step": p.get("context by step") if self.context else None,
                "attention seeds": seeds}

    def _encoder_backward(self, run, G, dz, grads):
        """The encoder's backward for ``G`` at its outputs and ``dz`` at ``z``: fills ``grads`` (``enc.*``) and
        returns ``dL/d`` its inputs (S, N, E)."""
        start, stop = run.marks["encoder"]
        adjoint = run.tape.sweep({run.nodes["memory"]: G, run.nodes["z"]: dz}, start, stop)
        grads.update(adjoint.get(run.nodes["P"], {}))
        return adjoint.get(run.nodes["src"], np.zeros_like(run.tape.values[run.nodes["src"]]))

    def _top_ext(self, run, G, dz):
        """The upstream gradients of the top layer's directions, in each direction's own time order:
        ``G`` (S, N, C) at the merged outputs, ``dz`` (N, len z) at each direction's final state."""
        adjoint = run.tape.sweep({run.nodes["memory"]: G, run.nodes["z"]: dz}, run.marks["top"],
                                 run.marks["encoder"][1])
        dirs = run.trace[-1][1]
        return {d: reordered(adjoint.get(dirs[d][0], np.zeros_like(G[..., :self.H])), run.rev if d == "bwd" else False)
                for d in self.top.directions}

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
        sources = path_sources(run, paths)
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
        if self.bahdanau:
            spans = [(ctx, start, stop, seeds[t]) for t, (ctx, start, stop) in enumerate(run.steps)]
        else:
            spans = [(nodes["ctx"], *run.marks["attend"], np.where(np.arange(len(seeds))[:, None, None] == t, seeds, 0))
                     for t in range(len(seeds))]
        for ctx, start, stop, seed in spans:
            adjoint = tape.sweep({ctx: seed}, start, stop)
            tape.sweep(adjoint, *run.marks["keys"])
            yield adjoint.get(nodes["memory_att"], np.zeros_like(run.memory))

    def _state_adjoints(self, run, G, dz):
        """Total adjoints of the top layer's output states at every step for the injections ``(G, dz)``."""
        enc, code, out = self.encoder, self.encoder.cell_code, self.encoder.out
        ext, layer, (inp, dirs, _) = self._top_ext(run, G, dz), self.top, run.trace[-1]
        sizes = enc.layer_sizes(layer)
        parts = []
        for d in layer.directions:
            X_d = np.ascontiguousarray(reordered(run.tape.values[inp], run.rev if d == "bwd" else False))
            cache, S = dirs[d][1], X_d.shape[0]
            bar = np.array(ext[d], copy=True)
            params_d = {k: run.params[f"enc.{enc.key(layer.index, d, k)}"] for k in enc.cell.params}
            for t in range(S - 1):  # what steps t+1.. send back to h_t: the suffix's backward
                suffix = {k: (v[t + 1:] if k.startswith(("S_", "C_", "P")) else v) for k, v in cache.items()}
                dS = {s: np.zeros((X_d.shape[1], enc.unit.state_size(s)), X_d.dtype) for s in enc.state_names}
                _, _, back = code.backward(params_d, X_d[t + 1:], suffix, {out: np.ascontiguousarray(ext[d][t + 1:])},
                                           dS, sizes)
                bar[t] += back[out]
            parts.append(reordered(bar, run.rev if d == "bwd" else False))
        return np.concatenate(parts, axis=-1)

    def __repr__(self):
        att = f", attention={self.attention.score!r}, attention_style={self.style!r}" if self.attention else ""
        return (f"Seq2Seq({self.encoder.cell.name!r}, {self.decoder.cell.name!r}, src_vocab={self.src_vocab}, tgt_vocab="
                f"{self.tgt_vocab}, E={self.E}, H={self.H}, E_tgt={self.E_tgt}, H_dec={self.H_dec}, num_layers="
                f"{self.encoder.num_layers}, bidirectional={self.top.bidirectional}, bridge={self.bridge_mode!r}, "
                f"context={self.context}{att}, reduction={self.reduction!r})")


def _finite(value, model):
    value = float(value)
    if not np.isfinite(value):
        raise NonFiniteError(f"The loss of {model!r} is {value}: the forward pass overflowed; check the weights' "
                             f"and inputs' scale.")
    return value

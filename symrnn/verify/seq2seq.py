"""Verifying a hand-written encoder-decoder (loss mode) against :class:`symrnn.Seq2Seq`'s exact gradients.

The user's function takes the parameters, the source, the decoder's inputs and the scored targets
(teacher forcing) and returns the loss and its gradients.  What it computes is declared as a
:class:`~symrnn.Seq2Seq` is (cells, sizes, bridge, context, attention, reduction); the cases,
the forward check, the error model and the judgement are the verifier's own
(:func:`symrnn.verify.core.run_cases`).  A wrong gradient is then placed in one part of the
model, following the backward pass: readout, attention, decoder, bridge, encoder (Bahdanau's
style interleaves the decoder and the attention: decoder first).  The first part in that order
with a wrong gradient is the one that sends wrong gradients on; when only the encoder is wrong,
its gradients are compared with the exact ones with each path into the encoder left out (the
bridge's, the context's, the attention's), which names a path that sends nothing back.  A case in
which every token id occurs once makes the embeddings' gradients per-step gradients, which shows
the first wrong step of the decoder's and the encoder's backward.
"""
from __future__ import annotations

import copy
import threading
from functools import cached_property
from dataclasses import dataclass

import numpy as np

from ..errors import UnknownNameError, UserCodeError
from ..models.layouts import layout_for
from ..engine.losses import IGNORE_LABEL
from ..models.seq2seq import Seq2Seq, cross_entropy
from ..models.seq2seq_blocks import path_sources
from ..models.tape import scatter_rows
from .modes import checked_gradients
from .problems import Problem
from .result import Verification
from ..validation import check_count
from .wired import (WiredLossFunction, check_roles, first_wrong_part, first_wrong_step,
                    verify_wired, with_first_wrong_step)

ROLES = ("params", "src", "tgt_in", "tgt_out", "src_mask", "src_lengths")
PARTS = ("readout", "attention", "decoder", "bridge", "encoder")
#: what a path into the encoder that sends nothing back says: (its part, the message)
PATHS = {"initial state": ("bridge", "the decoder's dL/dh_0 does not reach the encoder through the bridge"),
         "context": ("decoder", "the context read at every decoder step and by the readout (a peeky decoder) "
                                "sends nothing back to the encoder"),
         "context (decoder input)": ("decoder", "the context read by the decoder's steps (a peeky decoder's "
                                                "input) sends nothing back to the encoder"),
         "context (readout)": ("decoder", "the context read by the readout (a peeky decoder) sends nothing "
                                          "back to the encoder"),
         "final state": ("bridge", "nothing the decoder sends to the encoder's final state (its initial state "
                                   "and the context) reaches the encoder"),
         "attention": ("attention", "the attention sends no gradient back to the encoder states")}


@dataclass(frozen=True)
class CellName:
    """What the judging machinery reads of a model's cell: its name (a task of several cells)."""

    name: str


class Seq2SeqTask:
    """A :class:`~symrnn.Seq2Seq` as the verifier's judging machinery reads a model: sizes, parameter
    shapes, ``loss_and_grads`` on a :class:`~symrnn.verify.problems.Problem` (``x`` the source,
    ``targets`` the decoder's inputs and scored ids stacked, ``mask`` the source mask) and a rounded
    twin for the error model (each block's generated code rounded; attention and the softmax are
    judged through the perturbed parameters and inputs)."""

    state_names = ()
    out = "h"
    input_name = "src"

    def __init__(self, s2s):
        self.s2s = s2s
        self.one_cell = False  # several blocks: no single-cell fingerprints
        self.sizes = {"D": s2s.E, "H": s2s.H_dec, "K": s2s.tgt_vocab}
        names = (s2s.encoder.cell.name, s2s.decoder.cell.name)
        self.cell = CellName(names[0] if names[0] == names[1] else "-".join(names))

    @property
    def param_shapes(self):
        return self.s2s.param_shapes

    def loss_and_grads(self, params, x, targets, h0=None, mask=None, final_grads=None):
        return self.s2s.loss_and_grads(params, x, targets[0], targets[1], src_mask=mask)

    def with_blocks(self, transform):
        """The task of a copy of the model whose generated blocks are ``transform(block)``."""
        twin = copy.copy(self.s2s)
        twin._threads = threading.local()
        twin.encoder, twin.decoder = self.s2s.encoder.with_blocks(transform), self.s2s.decoder.with_blocks(transform)
        for name in ("bridge", "combine", "readout"):
            block = getattr(self.s2s, name)
            if block is not None:
                block = copy.copy(block)
                block.code = transform(block.code)
                setattr(twin, name, block)
        return Seq2SeqTask(twin)


class Seq2SeqLayout:
    """The user's names and shapes of a seq2seq's parameters.

    ``"symrnn"``: :class:`~symrnn.Seq2Seq`'s keys.  A preset (``"dlfs2"``, ``"cs231n"``, ``"pytorch"``,
    ``"keras"``): the encoder's and decoder's cell weights under the preset's names prefixed
    ``enc.`` and ``dec.`` (``enc.Wx``, ``dec.Wh``, ``dec.b``), the readout's as ``out.<name>`` (DLFS2:
    ``out.W`` ``(R, K)``, ``out.b_out``), the embeddings ``emb_src``, ``emb_tgt``; the bridge's and the
    attention's keep symrnn's names, their matrices transposed in a row-convention preset.
    ``context_first`` puts the context ``z`` first in the decoder's input and the readout's input
    (DLFS2's peeky decoder: ``[z; emb]``, ``[z; h]``) where symrnn puts it after."""

    def __init__(self, name, s2s, context_first=False, batch_major=False):
        self.s2s, self.context_first, self.batch_major = s2s, bool(context_first), bool(batch_major)
        self.names = {}
        if name == "symrnn":
            self.name, self.cells = name, None
        else:
            if s2s.encoder.num_layers != 1 or s2s.top.bidirectional:
                raise UnknownNameError(
                    f"layout={name!r} names the weights of one unidirectional encoder layer; a stacked or "
                    f"bidirectional encoder is verified with layout='symrnn' (keys enc.l0.fwd.W, enc.l0.bwd.W ...).")
            self.cells = {p: layout_for(name, m.cell.name) for p, m in (("enc", s2s.encoder), ("dec", s2s.decoder))}
            self.name = self.cells["enc"].name
        if self.context_first and not s2s.context:
            raise UnknownNameError("context_first=True orders the context z in a peeky decoder's inputs; declare "
                                   "context=True (the decoder reads z at every step) or drop context_first.")
        m = s2s
        E, Z, D = m.E_tgt, m.Z, m.decoder.sizes["D"]
        self._dec_cols = np.r_[E:E + Z, 0:E, E + Z:D] if self.context_first else None
        R = m.R
        self._out_cols = np.r_[R - Z:R, 0:R - Z] if self.context_first else None

    def gates(self, cell_name):
        return ()

    @property
    def row(self):
        return self.cells is not None and self.cells["enc"].convention == "row"

    def _columns(self, key, value, inverse=False):
        """The decoder's input weights and the readout's weights with their columns in the user's order."""
        cols = self._out_cols if key == "out.V" else (self._dec_cols if key.startswith("dec.U") else None)
        if cols is None:
            return value
        return value[:, np.argsort(cols)] if inverse else value[:, cols]

    def to_user(self, cell_name, params, gradients=False):
        params = {k: self._columns(k, v) for k, v in params.items()}
        if self.cells is None:
            return params
        out, m = {}, self.s2s
        for prefix, cells, model in (("enc", "enc.l0.fwd.", m.encoder), ("dec", "dec.", m.decoder)):
            local = {k: params[cells + k] for k in model.cell.params}
            converted = self.cells[prefix].to_user(model.cell.name, local, gradients=gradients)
            out.update({f"{prefix}.{k}": v for k, v in converted.items()})
        L = self.cells["dec"]
        for key, value in params.items():
            if key == "out.V":
                out[f"out.{L.names['V']}"] = value.T if self.row else value
            elif key == "out.c":
                out[f"out.{L.names['V_b']}"] = L._bias(value)
            elif key.startswith(("bridge.", "attn.", "emb_")):
                out[key] = value.T if self.row and np.ndim(value) == 2 and not key.startswith("emb_") else value
        return out

    def from_user(self, user, what):
        """Canonical gradients from the user's (every parameter present, shapes checked)."""
        user = checked_gradients(user, self.expected, what)
        if self.cells is None:
            out = dict(user)
        else:
            out, m = {}, self.s2s
            for prefix, cells, model in (("enc", "enc.l0.fwd.", m.encoder), ("dec", "dec.", m.decoder)):
                local = {k[len(prefix) + 1:]: v for k, v in user.items() if k.startswith(prefix + ".")}
                sizes = {"D": model.sizes["D"], "H": model.sizes["H"], "K": None}
                converted = self.cells[prefix].from_user(model.cell.name, local, sizes, gradients=True)
                out.update({cells + k: v for k, v in converted.items()})
            L = self.cells["dec"]
            out["out.V"] = user[f"out.{L.names['V']}"].T if self.row else user[f"out.{L.names['V']}"]
            out["out.c"] = user[f"out.{L.names['V_b']}"].reshape(-1)
            out.update({k: (v.T if self.row and v.ndim == 2 and not k.startswith("emb_") else v)
                        for k, v in user.items() if k.startswith(("bridge.", "attn.", "emb_"))})
        return {k: self._columns(k, v, inverse=True) for k, v in out.items()}

    @cached_property
    def expected(self):
        return {k: np.shape(v) for k, v in self.to_user("", self.s2s.init_params(0)).items()}

    def sequence_to_user(self, X):
        """(S, N[, E]) -> (N, S[, E]) when batch-major."""
        return np.swapaxes(X, 0, 1) if self.batch_major else X

    sequence_from_user = sequence_to_user


class Seq2SeqLossFunction(WiredLossFunction):
    """``fn(params, src, tgt_in, tgt_out[, src_mask | src_lengths]) -> (loss, grads)``, arguments as ``args``."""

    @staticmethod
    def keys(user_params):
        return f"params ({sorted(user_params)[:4]} ...)"

    def data(self, problem, user_params):
        L = self.layout
        return {"params": user_params, "src": L.sequence_to_user(problem.x),
                "tgt_in": L.sequence_to_user(problem.targets[0]), "tgt_out": L.sequence_to_user(problem.targets[1]),
                "src_mask": None if problem.mask is None else L.sequence_to_user(problem.mask),
                "src_lengths": None if problem.mask is None else problem.mask.sum(axis=0)}

    def extra(self, grads, user_params, problem, what):
        """The dense source's gradient, judged as the model's input ``dx`` (named dsrc in the report)."""
        source = self._source_gradient(grads, problem, what)
        unknown = sorted(set(grads) - set(user_params))
        if unknown:
            raise UserCodeError(f"{what} returned gradients under {unknown}, which name no parameter; the keys are "
                                f"the parameters' ({sorted(user_params)[:4]} ...)"
                                + (" and 'src' for the dense source." if self.model.s2s.src_vocab is None else "."))
        return {} if source is None else {"src": ("dx", source, self.layout.sequence_from_user(np.asarray(source)))}

    def _source_gradient(self, grads, problem, what):
        given = [k for k in ("src", "dsrc") if k in grads]
        if not given:
            return None
        if self.model.s2s.src_vocab is not None:
            raise UserCodeError(f"{what} returned a gradient for {given[0]!r}, but the source is token ids (declared "
                                f"src_vocab={self.model.s2s.src_vocab}); its gradient is emb_src's.")
        if len(given) == 2:
            raise UserCodeError(f"{what} returned the source's gradient twice, as 'src' and 'dsrc'; return one.")
        value = grads.pop(given[0])
        expected = self.layout.sequence_to_user(problem.x).shape
        if np.shape(value) != expected:
            raise UserCodeError(f"{what}: the gradient of src has shape {np.shape(value)}, expected {expected} "
                                f"(the shape of src).")
        return value


def _ids(rng, vocab, shape, unique):
    return rng.permutation(vocab)[:int(np.prod(shape))].reshape(shape) if unique else rng.integers(0, vocab, shape)


def draw_seq2seq(task, S, T, N, seed, label, scale=None, unique=False, padded=False):
    """One problem: the model's initial parameters, a source (ids or dense vectors), the decoder's inputs
    and scored ids (every id once when ``unique``), a source mask with random lengths when ``padded``."""
    m, rng = task.s2s, np.random.default_rng(seed)
    params = m.init_params(seed, scale=scale)
    src = rng.normal(size=(S, N, m.E)) if m.src_vocab is None else _ids(rng, m.src_vocab, (S, N), unique)
    targets = np.stack([_ids(rng, m.tgt_vocab, (T, N), unique), rng.integers(0, m.tgt_vocab, (T, N))])
    mask = None
    if padded:
        lengths = rng.integers(1, S + 1, size=N)
        lengths[0] = S
        mask = np.arange(S)[:, None] < lengths[None, :]
    return Problem(label, params, src, {}, targets, mask)


# -- localisation ------------------------------------------------------------------------------------
def part_of(key):
    """The part of the model a parameter's key (symrnn's or the user's) belongs to."""
    if key in ("x", "src", "emb_src") or key.startswith("enc."):
        return "encoder"
    if key == "emb_tgt" or key.startswith("dec."):
        return "decoder"
    return {"bridge.": "bridge", "attn.": "attention", "out.": "readout"}.get(key.split(".")[0] + ".", "readout")


def _per_step(grads, key, ids):
    """Rows of an embedding's gradient at each step's token, ``(T, N, E)`` (every id occurs once)."""
    return np.asarray(grads[key])[ids]


def _unique(ids):
    return ids is not None and np.unique(ids).size == ids.size


def _path_gradients(m, problem):
    """The run and what reaches the encoder by each path: ``{name: (G at every position, dz at the final state)}``."""
    src, tin, tout, mask = problem.x, problem.targets[0], problem.targets[1], problem.mask
    _, _, (r, paths) = m._loss_grads_and_paths(problem.params, src, tin, tout, mask, None, None, None)
    out = path_sources(r, paths)
    if "context" in out:  # split into what the readout and what the decoder's steps send
        zero_G, dz = out.pop("context")
        dO = cross_entropy(r.logits, np.where(tout == IGNORE_LABEL, 0, tout), m.reduction, tout != IGNORE_LABEL)[1]
        readout = np.einsum("tnk,kz->nz", dO, problem.params["out.V"][:, m.R - m.Z:])
        out["context (readout)"] = (zero_G, readout)
        out["context (decoder input)"] = (zero_G, dz - readout)
    return r, out


def _dropped_path(task, problem, run, ex):
    """The path into the encoder without which the exact encoder gradients are the user's, or None."""
    m = task.s2s
    r, pieces = _path_gradients(m, problem)
    groups = {name: [name] for name in pieces}
    if "context (readout)" in pieces:
        groups["context"] = ["context (readout)", "context (decoder input)"]
    finals = [n for n in pieces if n != "attention"]
    if len(finals) > 1:
        groups["final state"] = finals
    keys = [k for k in run.grads if part_of(k) == "encoder" and k in ex.grads]
    for dropped, names in sorted(groups.items(), key=lambda kv: len(kv[1])):
        kept = [pieces[n] for n in pieces if n not in names]
        G = sum((g for g, _ in kept), np.zeros_like(r.memory))
        dz = sum((z for _, z in kept), np.zeros_like(r.z))
        grads = {}
        d_src = m._encoder_backward(r, G, dz, grads)
        grads = {k: np.array(v) for k, v in grads.items()}
        grads["emb_src" if m.src_vocab is not None else "src"] = (
            scatter_rows(problem.x, d_src, m.src_vocab) if m.src_vocab is not None else np.array(d_src))
        if all(np.all(np.abs(run.grads[k] - grads[k]) <= ex.tol[k] + 1e-12 * np.max(np.abs(grads[k]), initial=0))
               for k in keys):
            return dropped
    return None


def locate(adapter, problem, run, ex, verdicts):
    """Which part of the model is wrong, by which gradients, on which path, from which step."""
    task = adapter.model
    m = task.s2s
    order = ("readout", "decoder", "attention", "bridge", "encoder") if m.bahdanau else PARTS
    out, said = first_wrong_part(verdicts, order, lambda name: part_of(name[1:]))  # the user's name after its "d"
    if out is None:
        return {}
    if out["part"] == "encoder":
        dropped = _dropped_path(task, problem, run, ex)
        if dropped is not None:
            out["part"], out["path"] = PATHS[dropped][0], dropped
            said = [f"{PATHS[dropped][0]}: {PATHS[dropped][1]} (the encoder's gradients equal the exact ones "
                    f"without the {dropped} path)"]
    step = None
    if out["part"] == "decoder" and _unique(problem.targets[0]):
        ids = problem.targets[0]
        step = first_wrong_step(_per_step(run.grads, "emb_tgt", ids), _per_step(ex.grads, "emb_tgt", ids),
                                 _per_step(ex.tol, "emb_tgt", ids), "the row of demb_tgt of the token read")
    elif out["part"] == "encoder" and not m.top.bidirectional and m.encoder.num_layers == 1:
        if m.src_vocab is None and "src" in run.grads:
            step = first_wrong_step(run.grads["src"], ex.grads["src"], ex.tol["src"], "dsrc")
        elif m.src_vocab is not None and _unique(problem.x):
            step = first_wrong_step(*(_per_step(g, "emb_src", problem.x) for g in (run.grads, ex.grads, ex.tol)),
                                    "the row of demb_src of the token read")
    return with_first_wrong_step(out, said, step, out["part"], problem.label)


Seq2SeqVerification = Verification  # one result class for every family: its verdict names the wrong part


def verify_seq2seq(fn, encoder_cell="lstm", decoder_cell=None, layout="symrnn", *, src_vocab=12, tgt_vocab=10,
                   E=3, H=4, E_tgt=None, H_dec=None, num_layers=1, bidirectional=False, bridge=None, context=False,
                   context_first=False, attention=None, attention_style="luong", attention_size=None,
                   reduction="sum", S=6, T=5, N=3, args=("params", "src", "tgt_in", "tgt_out"), batch_major=False,
                   scale=None, seed=0) -> Verification:
    """Verify a hand-written encoder-decoder: ``fn(params, src, tgt_in, tgt_out) -> (loss, grads)``.

    The model is declared as :class:`symrnn.Seq2Seq` declares it: the cells, ``src_vocab`` (None:
    dense source vectors ``(S, N, E)``), ``tgt_vocab``, ``E``, ``H``, the encoder's ``num_layers``
    and ``bidirectional``, ``bridge`` (``copy``: the decoder starts from the encoder's final state;
    ``linear``, ``tanh``, ``none``), ``context=True`` (a peeky decoder: the encoder's final state
    is read at every step and by the readout), ``attention`` (``dot``, ``general``, ``additive``)
    and ``attention_style``, and the ``reduction`` of the summed softmax cross-entropy (``mean``:
    over the tokens, as Deep Learning from Scratch 2's ``TimeSoftmaxWithLoss``).

    Parameters
    ----------
    fn : callable
        Your loss function; it returns the loss and a dict of gradients keyed as ``params`` (for a
        dense source, ``grads["src"]`` too, optional).
    layout : str
        ``"symrnn"`` (the keys of :class:`symrnn.Seq2Seq`) or a preset for the cells' weights,
        prefixed ``enc.`` / ``dec.`` (see :class:`Seq2SeqLayout`).
    context_first : bool
        A peeky decoder that puts the context first in its inputs ``[z; emb]`` and in the
        readout's ``[z; h]``, as Deep Learning from Scratch 2's ``PeekyDecoder``.
    args : tuple of str
        What ``fn`` takes, in order: ``params``, ``src``, ``tgt_in`` (the decoder's inputs),
        ``tgt_out`` (the scored ids), ``src_mask`` or ``src_lengths`` (then sources are padded).
    batch_major : bool
        Ids ``(N, S)`` and vectors ``(N, S, E)`` instead of time-major.
    S, T, N : int
        Source length, target length and batch of the main case; cases with ``S, T = 1, 1`` and
        ``2, 3`` and a case in which every token id occurs once (its embeddings' gradients are
        per-step gradients: the first wrong step) are also run.

    Returns
    -------
    Verification
        ``localisation["part"]`` is the wrong part: ``readout``, ``attention``, ``decoder``,
        ``bridge`` or ``encoder``; ``path`` the path into the encoder that sends nothing back;
        ``step`` the first wrong step of that part's backward, when the case shows it.

    Examples
    --------
    >>> import symrnn as sr, symrnn.verify as V
    >>> model = sr.Seq2Seq("gru", src_vocab=12, tgt_vocab=10, E=3, H=4)
    >>> def loss_fn(params, src, tgt_in, tgt_out):
    ...     return model.loss_and_grads(params, src, tgt_in, tgt_out)
    >>> V.verify_seq2seq(loss_fn, "gru").verdict()
    'RIGHT: gru seq2seq code, 24 gradients exact (float64 error model, 4 cases)'
    """
    check_roles(args, ROLES)
    S, T, N = (check_count(name, value) for name, value in (("S", S), ("T", T), ("N", N)))
    s2s = Seq2Seq(encoder_cell, decoder_cell, src_vocab=src_vocab, tgt_vocab=tgt_vocab, E=E, H=H, E_tgt=E_tgt,
                  H_dec=H_dec, num_layers=num_layers, bidirectional=bidirectional, bridge=bridge, context=context,
                  attention=attention, attention_style=attention_style, attention_size=attention_size,
                  reduction=reduction)
    task = Seq2SeqTask(s2s)
    adapter = Seq2SeqLossFunction(task, Seq2SeqLayout(layout, s2s, context_first, batch_major), args, fn)
    padded = "src_mask" in args or "src_lengths" in args
    sizes = [(S, T, N), (1, 1, N), (2, 3, N)]
    problems = [draw_seq2seq(task, s, t, n, seed + k, f"S={s}, T={t}", scale, padded=padded)
                for k, (s, t, n) in enumerate(sizes)]
    S_p, T_p = (S if src_vocab is None else min(S, src_vocab // 2)), min(T, tgt_vocab // 2)
    if S_p >= 1 and T_p >= 1:
        problems.append(draw_seq2seq(task, S_p, T_p, 2, seed + 3, f"S={S_p}, T={T_p}, every token id once", scale,
                                     unique=True, padded=padded))
    # the source's gradient is judged as the model's input (dx); the report calls it dsrc
    return verify_wired(adapter, problems, "seq2seq", locate, "every token id once",
                        pick=lambda failing: min(failing, key=lambda p: (p.T, p.targets.shape[1])),
                        rename={"dx": "dsrc"})

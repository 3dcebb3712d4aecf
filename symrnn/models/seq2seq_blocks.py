"""The pieces a :class:`~symrnn.models.seq2seq.Seq2Seq` is built from besides its cells: the stateless blocks
run by the generated code (the bridge, Luong's combination, the readout), and the checks of token ids
and masks, with the reversal of each sequence within its length that the backward directions read, and
the paths by which the gradient reaches the encoder."""
from __future__ import annotations

import numpy as np

from ..engine.cell import Cell
from ..engine.codegen import BlockCode
from ..errors import ShapeError
from ..engine.functions import tanh
from ..engine.losses import IGNORE_LABEL
from ..validation import check_shape


class Stateless:
    """A cell without state (``y = f(P z + b)``) run by :class:`BlockCode` over ``M`` rows at once."""

    def __init__(self, cell: Cell, prefix: str, outputs):
        self.cell, self.prefix, self.outputs = cell, prefix, list(outputs)
        self.code = BlockCode(cell.name, cell.equations, cell.input_symbol, {}, cell.params, cell.sizes,
                              external=self.outputs)

    def keys(self):
        return {f"{self.prefix}{k}": spec.shape for k, spec in self.cell.params.items()}


def bridge_cell(states, activation):
    cell = Cell("bridge", "the encoder's final state(s) mapped to the decoder's initial state(s)")
    z = cell.input("z", "D", role="the encoder's final output state(s), directions concatenated")
    for s, size in states.items():
        W = cell.param(f"W_{s}", size, "D", role=f"bridge weights to the decoder's initial {s}")
        b = cell.param(f"b_{s}", size, role=f"bridge bias of the decoder's initial {s}")
        cell.let(f"{s}_init", activation(W @ z + b) if activation else W @ z + b,
                 role=f"the decoder's initial {s}")
    return cell


def combine_cell():
    cell = Cell("attention-combine", "Luong's attentional state htilde = tanh(W_c [ctx; h])")
    z = cell.input("z", "D", role="[ctx_t; h_t]")
    W_c = cell.param("W_c", "H", "D", role="combination weights")
    cell.let("htilde", tanh(W_c @ z), role="attentional hidden state")
    return cell


# -- checks of the token ids and masks -----------------------------------------------------------
def token_ids(value, name, vocab, shape_hint, allow_ignore=False):
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


def sequence_mask(mask, lengths, shape, name, prefix):
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


def reversal(lengths, S):
    t = np.arange(S)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def path_sources(run, paths) -> dict:
    """What reaches the encoder by each path of a run (:meth:`Seq2Seq.gradient_paths`):
    ``{path: (adjoint at every source position, adjoint of the final states z)}``."""
    zeros_G, zeros_z = np.zeros_like(run.memory), np.zeros_like(run.z)
    return {name: (paths[name], zeros_z) if name == "attention" else (zeros_G, paths[name])
            for name in ("attention", "initial state", "context") if paths[name] is not None}

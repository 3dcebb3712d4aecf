"""PyTorch's stacking for the cells of today: weights stacked gate by gate in the column convention
(``weight_ih`` ``(G*H, D)``, ``weight_hh`` ``(G*H, H)``, one bias ``(G*H,)``), for cells whose gates
lack a recurrent weight (minGRU's ``z`` and ``h``) or are named otherwise than an LSTM's or a GRU's
(sLSTM's ``z, i, f, o``, stacked ``i, f, z, o`` in the xLSTM code).

The layouts of :mod:`symrnn.models.layouts` stack a cell only when every gate has ``U_g``, ``W_g``
and ``b_g``; :class:`GateStacked` stacks whichever of them the cell has, in any order of its gates.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from ...errors import ParameterError
from ...models.layouts import Layout
from ...models.layouts.gates import as_array, block_name, check_shape

#: the cells of today a framework's forward is matched against, by whether it takes recurrent weights
TODAY = {True: ("slstm", "slstm-exp", "indrnn"), False: ("min-gru", "min-lstm")}
_PREFIX = {"Wx": "U", "Wh": "W", "b": "b"}


@functools.cache
def _builtin(name):
    from ...engine.cells import builtin_cell

    return builtin_cell(name)


def _cell(cell):
    return _builtin(cell) if isinstance(cell, str) else cell


def today_gates(cell) -> tuple:
    """The gates of a cell of today in the cell's order: the ``g`` of its ``U_g`` (``("z", "h")``)."""
    params = _cell(cell).params
    return ("",) if "U" in params else tuple(p[2:] for p in params if p.startswith("U_"))


@dataclass(frozen=True)
class GateStacked(Layout):
    """Weights stacked gate by gate along the first axis (column convention; the second in the row
    convention, ``x @ Wx`` with ``Wx`` ``(D, G*H)``), whichever of ``U_g``, ``W_g``, ``b_g`` the cell
    has; ``b_hh`` (a second bias) is added to ``b``."""

    def gates(self, cell_name) -> tuple:
        return tuple(self.gate_order)

    def _blocks(self, cell, role):
        """The canonical names stacked in ``role``'s array, in the user's order."""
        params = _cell(cell).params
        prefix = _PREFIX["b" if role == "b_hh" else role]
        blocks = [block_name(prefix, g) for g in self.gate_order if block_name(prefix, g) in params]
        if not blocks and role == "Wh":  # a recurrent vector per unit (IndRNN's w, PyTorch's weight_hh (H,))
            blocks = [block_name("w", g) for g in self.gate_order if block_name("w", g) in params]
        return blocks

    def to_user(self, cell_name, params, *, gradients=False) -> dict:
        out = {}
        for role, name in self.names.items():
            if role not in ("Wx", "Wh", "b", "b_hh"):
                continue
            blocks = [np.asarray(params[k]) for k in self._blocks(cell_name, role)]
            stacked = np.concatenate(blocks, axis=0)
            stacked = stacked.T if self.convention == "row" and stacked.ndim == 2 else stacked
            out[name] = stacked if role != "b_hh" or gradients else np.zeros_like(stacked)
        return out

    def from_user(self, cell_name, user, sizes, *, gradients=False) -> dict:
        cell = _cell(cell_name)
        out = {}
        for role, name in self.names.items():
            if role not in ("Wx", "Wh", "b", "b_hh"):
                continue
            if name not in user:
                raise ParameterError(f"Layout {self.name!r}: missing {name!r}; expected {sorted(self.names.values())}.")
            blocks = self._blocks(cell, role)
            shapes = [cell.param_shape(k, sizes) for k in blocks]
            expected = (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])
            row = self.convention == "row" and len(expected) == 2
            a = as_array(user[name], name)
            check_shape(a, expected[::-1] if row else expected, name,
                        f"{self.name} layout, gates {' '.join(self.gate_order)} stacked, {self.convention} convention, "
                        f"D={sizes['D']}, H={sizes['H']}")
            a = a.T if row else a
            for k, part in zip(blocks, np.split(a, len(blocks), axis=0)):
                out[k] = part.copy() if k not in out or gradients else out[k] + part
        missing = [k for k in cell.params if k not in out]
        if missing:
            raise ParameterError(f"Layout {self.name!r} carries no {missing} of cell {cell.name!r}: the code's "
                                 f"arguments must include every weight the cell has.")
        return {k: out[k] for k in cell.params}


def candidates(names, cell, batch_first):
    """Every :class:`GateStacked` layout of ``cell`` (a name) under the user's ``names``: each
    order of its gates, batch-first or not (``batch_first`` None: both)."""
    gates = today_gates(cell)
    flags = (False, True) if batch_first is None else (bool(batch_first),)
    for first in flags:
        for order in itertools.permutations(gates):
            yield GateStacked("pytorch", dict(names), gate_order=tuple(order), batch_major=first)


def without_recurrent_weights(cell) -> bool:
    """The cell has no recurrent weight (minGRU, minLSTM): the layouts of :mod:`symrnn.models.layouts`
    cannot stack it, :class:`GateStacked` can."""
    params = _cell(cell).params
    return not any(p == "W" or p.startswith("W_") for p in params)


def stacked_like(preset, cell, gate_order=None) -> GateStacked:
    """A :class:`GateStacked` layout of ``cell`` with the names, convention and batch axis of the
    :class:`~symrnn.models.layouts.Layout` ``preset`` (CS231n's ``Wx`` ``(D, G*H)`` and ``b``)."""
    names = {r: n for r, n in preset.names.items() if r in ("Wx", "b")}
    return GateStacked(preset.name, names, gate_order=tuple(gate_order or today_gates(cell)),
                       convention=preset.convention, batch_major=preset.batch_major, vectors=preset.vectors,
                       bias_shape=preset.bias_shape)

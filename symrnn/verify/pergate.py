"""Hand-written cells without a recurrent weight that take one array per gate, found from their forward.

A minGRU in CS231n's style may take its gates' weights apart: ``mingru_forward(x, h0, Wz, bz, Wh,
bh)``, ``z = sigmoid(x @ Wz + bz)``, the candidate ``x @ Wh + bh`` (``Wh`` is an input weight here:
minGRU has none over h).  The names give the roles: a weight ``W<g>`` (``Wx<g>``, ``U<g>``, with or
without ``_``) and a bias ``b<g>`` for every gate letter ``g``, the letters of the weights and the
biases the same; they become the signature roles ``Wx[g]`` and ``b[g]``.  :class:`PerGate` lays a
cell's parameters out so (each ``U_g`` as the user's weight, transposed in the row convention), and
:func:`find_per_gate` matches the forward against every cell without a recurrent weight whose number
of gates is the user's, every assignment of the user's letters to its gates (the same letters first),
row or column convention, batch- or time-major."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace

import numpy as np

from ..engine.cells import builtin_cell
from ..errors import ParameterError
from ..models.layouts import Layout
from ..models.layouts.gates import as_array, check_shape
from .frameworks.stacked import TODAY, today_gates
from .signatures import gate_role
from .trace import TracingError

_WEIGHT, _BIAS = re.compile(r"(?:wx|w|u)_?([a-z]\w*)", re.I), re.compile(r"b_?([a-z]\w*)", re.I)
_DATA = {"x": "x", "h0": "h0", "prev_h": "h0", "h_prev": "h0"}


def per_gate_roles(arg_names):
    """The roles ``x``, ``h0``, ``Wx[g]``, ``b[g]`` of a forward taking one array per gate, or None when
    the names do not read so (a weight and a bias for each of two or more gate letters)."""
    roles, weights, biases = [], [], []
    for name in arg_names:
        low = name.lower()
        if low in _DATA:
            roles.append(_DATA[low])
            continue
        weight, bias = _WEIGHT.fullmatch(name), _BIAS.fullmatch(name)
        if bias:  # b<g> before W: "bz" is no weight
            biases.append(bias.group(1))
            roles.append(f"b[{bias.group(1)}]")
        elif weight:
            weights.append(weight.group(1))
            roles.append(f"Wx[{weight.group(1)}]")
        else:
            return None
    ok = "x" in roles and len(weights) >= 2 and sorted(weights) == sorted(biases) == sorted(set(weights))
    return tuple(roles) if ok else None


@dataclass(frozen=True)
class PerGate(Layout):
    """One array per gate: ``names`` maps the roles ``Wx[g]``, ``b[g]`` (the user's gate letters, in the
    forward's order) to the user's names, ``gate_order`` the cell's gate each letter stands for."""

    def __post_init__(self):
        if not all(gate_role(r) for r in self.names):
            raise ParameterError(f"Layout {self.name!r}: one array per gate takes the roles Wx[g] and b[g] only.")

    def gates(self, cell_name) -> tuple:
        return ()  # no array stacks several gates

    def _keys(self):
        """``(user name, the cell's parameter)`` of every array."""
        letters = list(dict.fromkeys(r[r.index("[") + 1:-1] for r in self.names))
        for role, name in self.names.items():
            gate = self.gate_order[letters.index(role[role.index("[") + 1:-1])]
            yield name, ("U_" if role.startswith("Wx") else "b_") + gate

    def to_user(self, cell_name, params, *, gradients=False) -> dict:
        out = {}
        for name, key in self._keys():
            a = np.asarray(params[key])
            out[name] = a.T if self.convention == "row" and a.ndim == 2 else a
        return out

    def from_user(self, cell_name, user, sizes, *, gradients=False) -> dict:
        cell = builtin_cell(cell_name) if isinstance(cell_name, str) else cell_name
        out = {}
        for name, key in self._keys():
            if name not in user:
                raise ParameterError(f"Layout {self.name!r}: missing {name!r}; expected {sorted(self.names.values())}.")
            expected = cell.param_shape(key, sizes)
            row = self.convention == "row" and len(expected) == 2
            a = as_array(user[name], name)
            check_shape(a, expected[::-1] if row else expected, name,
                        f"one array per gate, {self.convention} convention, D={sizes['D']}, H={sizes['H']}")
            out[key] = (a.T if row else a).copy()
        missing = [k for k in cell.params if k not in out]
        if missing:
            raise ParameterError(f"Layout {self.name!r} carries no {missing} of cell {cell.name!r}.")
        return {k: out[k] for k in cell.params}


def find_per_gate(forward, roles, names, cell=None):
    """The :class:`~symrnn.verify.auto.Found` cell without a recurrent weight that ``forward`` (one array
    per gate) computes, or a :class:`TracingError` saying what was tried."""
    from .auto import found_as, probe_model, reproduces

    letters = list(dict.fromkeys(r[r.index("[") + 1:-1] for r in roles if r.startswith("Wx[")))
    own = {r: names[r] for r in roles if r.startswith(("Wx[", "b["))}
    cells = [c for c in ((cell,) if isinstance(cell, str) else TODAY[False]) if len(today_gates(c)) == len(letters)]
    for N, name in itertools.product((None, 1), cells):
        model, gates = probe_model(name), today_gates(name)
        orders = sorted(itertools.permutations(gates), key=lambda o: list(o) != letters)  # the same letters first
        for order, convention, batch_major in itertools.product(orders, ("row", "column"), (True, False)):
            lay = PerGate("found", own, gate_order=tuple(order), convention=convention, batch_major=batch_major)
            if reproduces(forward, roles, lay, model, name, N):
                found = found_as(name, lay, roles, forward, "built-in", N)
                arrays = ", ".join(f"{user} -> {key}" for user, key in lay._keys())
                where = "x W (row convention)" if convention == "row" else "W x (column convention)"
                return replace(found, text=f"the forward computes the built-in cell {name!r}; layout: one array per "
                                           f"gate ({arrays}), {where}, "
                                           f"{'batch-major (N, T, D)' if batch_major else 'time-major (T, N, D)'}")
    raise TracingError(
        f"The forward takes one array per gate (arguments {list(names.values())} read as {list(roles)}), and it "
        f"computes none of the cells without a recurrent weight with {len(letters)} gates "
        f"({', '.join(cells) or 'none has'}) in any assignment of its gates, row or column convention, batch- or "
        f"time-major. If it computes another cell, declare it as a symrnn.Cell and write the forward in symrnn's "
        f"names (--cell file.py:function --layout symrnn).")

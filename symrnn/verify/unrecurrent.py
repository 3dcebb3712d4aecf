"""Hand-written cells without a recurrent weight (minGRU, minLSTM) found from their forward.

A forward ``mingru_forward(x, h0, Wx, b)`` in CS231n's style stacks its gates' input weights in
``Wx`` (``x @ Wx``: ``(D, G*H)``, the row convention, or ``(G*H, D)`` in the column convention) and
their biases in ``b``; it takes no ``Wh``.  The layouts of :mod:`symrnn.models.layouts` stack a cell
only when every gate has a recurrent weight; :class:`~symrnn.verify.frameworks.stacked.GateStacked`
stacks whichever weights the cell has, in either convention, and is what such a forward is matched
in: every cell of today without a recurrent weight, every order of its gates, row or column
convention, batch- or time-major."""
from __future__ import annotations

import itertools
from dataclasses import replace

from .frameworks.stacked import TODAY, GateStacked, today_gates, without_recurrent_weights
from .trace import TracingError


def no_recurrent_weight(roles) -> bool:
    """The forward's arguments carry input weights and a bias, and no recurrent weight."""
    return {"Wx", "b"} <= set(roles) and not {"Wh", "W"} & set(roles)


def layouts(names, cell, given=None):
    """Every :class:`GateStacked` layout of ``cell`` under the user's ``names`` (``given``: that one)."""
    if isinstance(given, GateStacked):  # its names, convention and batch axis; any order of the gates
        for order in itertools.permutations(today_gates(cell)):
            yield replace(given, gate_order=tuple(order))
        return
    own = {r: n for r, n in names.items() if r in ("Wx", "b", "b_hh")}
    for convention, batch_major in itertools.product(("row", "column"), (True, False)):
        for order in itertools.permutations(today_gates(cell)):
            yield GateStacked("found", own, gate_order=tuple(order), convention=convention, batch_major=batch_major)


def find_without_recurrent_weight(forward, roles, names, cell=None, layout=None):
    """The :class:`~symrnn.verify.auto.Found` cell without a recurrent weight that ``forward``
    computes, or a :class:`TracingError` that says what was tried and what to do."""
    from .auto import PROBE, found_as, probe_model, reproduces

    cells = (cell,) if isinstance(cell, str) else TODAY[False]
    if isinstance(cell, str) and not without_recurrent_weights(cell):
        raise TracingError(f"The forward takes no recurrent weight (arguments {list(names.values())} read as "
                           f"{list(roles)}), but {cell!r} has one: leave out --cell (cell=None) to find what it "
                           f"computes, or pass the recurrent weight to the forward.")
    for N in (None, 1):  # code written for one example at a time runs with N = 1 only
        for name in cells:
            model = probe_model(name)
            for lay in layouts(names, name, layout):
                if reproduces(forward, roles, lay, model, name, N):
                    return found_as(name, lay, roles, forward, "built-in", N)
    wx, b = names["Wx"], names["b"]
    tried = (f"x @ {wx} with {wx} of shape (D, G*H) or {wx} @ x with (G*H, D), batch- or time-major"
             if not isinstance(layout, GateStacked) else
             f"as layout {layout.name!r} lays them out ({layout.convention} convention, "
             f"{'batch' if layout.batch_major else 'time'}-major; leave it out to try the others)")
    raise TracingError(
        f"The forward takes no recurrent weight (arguments {list(names.values())} read as {list(roles)}), and it "
        f"computes none of the cells without one ({', '.join(cells)}) with their gates stacked in {wx} and {b}, "
        f"in any order of the gates, {tried} (tried at D={PROBE['D']}, H={PROBE['H']}). If it computes another "
        f"cell, declare it as a "
        f"symrnn.Cell and write the forward in symrnn's names (--cell file.py:function --layout symrnn: "
        f"forward(x, h0, params) with params keyed by the cell's parameter names).")

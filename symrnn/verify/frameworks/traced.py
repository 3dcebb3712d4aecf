"""A cell traced from a framework's own graph of one step.

When a framework's forward computes no built-in cell, one step of it (``T = N = 1``) is captured by
the framework (``torch.export`` for PyTorch, :mod:`~symrnn.verify.frameworks.torch_graph`; the jaxpr
for JAX, :mod:`~symrnn.verify.frameworks.jaxpr`) and evaluated on symbols.  The weights given to it
are PyTorch's stacking (:class:`~symrnn.verify.frameworks.stacked.GateStacked`) of ``G`` gate blocks
``U_g, W_g, b_g`` (``G`` = 1, 2, 3, 4 tried in turn); the NumPy verifier's
:func:`symrnn.verify.trace.traced_cell` reads the per-unit expressions back as the equations of a
:class:`~symrnn.Cell`, which is checked on numbers against the forward (both batch conventions)
before it is verified against.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ...errors import SymRNNError
from ..trace import TracingError, equations_text, pseudo_cell, traced_array, traced_cell
from .heads import head_candidates
from .stacked import GateStacked

MAX_GATES = 4
_D, _H = 3, 2  # the sizes of the traced step (traced_cell's)


def _declare_hint(code):
    label = getattr(code.forward, "__name__", "fn").removesuffix(".forward")
    return (f"Declare the cell instead: verify_framework({label}, "
            f"cell=symrnn.Cell(...) (or a built-in name), layout=...) or --cell file.py:function.")


def _state_outputs(outs, states, what, H):
    """``{state: (H,) object array}`` from a step's outputs: ``h`` the first, ``c`` the last other
    output of H entries that is not ``h`` itself (an LSTM's ``c_n``); states in heads flattened."""
    flat = [np.asarray(o, dtype=object).reshape(-1) for o in outs]
    if not flat or flat[0].size != H:
        raise TracingError(f"{what} returns {flat[0].size if flat else 0} values for one step of one example, "
                           f"where H = {H} states belong first")
    new = {"h": flat[0]}
    if "c" in states:
        same = [f for f in flat[1:] if f.size == H and any(a.e != b.e for a, b in zip(f, flat[0]))]
        if not same:
            raise TracingError(f"{what} takes c0 but returns no c: return the last cell state too (as nn.LSTM does: "
                               f"hs, (h_n, c_n)) so that one step shows how c is updated")
        new["c"] = same[-1]
    return new


def _step_function(code, layout, states, heads=1):
    """``step(x, states, params)`` for :func:`~symrnn.verify.trace.traced_cell`: the code's graph on
    symbols (the states given in ``heads`` heads, ``(1, heads, H/heads)``, when ``heads`` > 1)."""
    gates = layout.gate_order
    names = {r: n for r, n in code.names.items() if r not in ("x", "h0", "c0")}

    def state(values):
        return traced_array(values.reshape((1, heads, -1) if heads > 1 else (1, -1)))

    def step(xs, ss, symbolic):
        user = {k: traced_array(v) for k, v in layout.to_user(pseudo_cell(gates, states), symbolic).items()}
        data = {"x": traced_array(xs[None, None, :]), "h0": state(ss["h"])}
        if "c" in ss:
            data["c0"] = state(ss["c"])
        outs = code.symbolic([data[r] if r in data else user[names[r]] for r in code.roles])
        return _state_outputs(outs, states, code.describe.split(",")[0], len(ss["h"]))
    return step


def _reproduces(code, cell, layout, batch_first, heads=1):
    """The first of the batch conventions in which the traced cell reproduces the forward on numbers."""
    from dataclasses import replace

    from ...models.model import Model
    from ..auto import PROBE, reproduces

    model = Model(cell, D=PROBE["D"], H=PROBE["H"] * heads, loss="upstream")
    for first in (False, True) if batch_first is None else (bool(batch_first),):
        candidate = replace(layout, batch_major=first)
        if reproduces(code.forward, code.roles, candidate, model, cell):
            return candidate
    return None


def _try(code, G, states, batch_first, heads=1):
    """The cell traced with ``G`` gate blocks (with heads: in each row order of the heads) and the
    layout in which it reproduces the forward."""
    gates = tuple(f"g{k}" for k in range(G)) if G > 1 else ("",)
    names = {r: n for r, n in code.names.items() if r not in ("x", "h0", "c0")}
    layout = GateStacked("pytorch", names, gate_order=gates)
    what = f"{code.describe.split(',')[0]} for one step"
    for L in [layout] if heads == 1 else head_candidates([layout], heads):
        step = _step_function(code, L, states, heads)
        cell = traced_cell("traced", gates, step, states, D=_D, H=_H * heads, what=what)
        found = _reproduces(code, cell, L, batch_first, heads)
        if found is not None:
            return cell, found
    raise TracingError(f"the cell traced from {what} with {G} gate block(s) does not reproduce the forward on "
                       f"numbers")


def _first_reason(errors):
    """What stopped the tracing: an operation refused on symbols (it names the user's line) before a
    capture that failed at another number of gates (shapes that do not fit), before a traced cell
    that does not reproduce the forward."""
    def rank(message):
        if "(from " in message or "needs the numbers" in message or "cannot read" in message:
            return 0
        return 2 if "reproduce" in message else 1
    return min(errors, key=lambda e: (rank(e[1]), e[0]))[1]


def trace_code(code, layout, batch_first, heads=1):
    """The cell and layout of ``code`` (a FrameworkCode) traced from its framework's graph of one step
    (its states in ``heads`` heads: the rows of its weights head by head or gate by gate, both tried).

    Returns
    -------
    SimpleNamespace
        ``cell`` (a :class:`~symrnn.Cell`), ``layout`` (a GateStacked layout), ``text`` (the equations).
    """
    if code.symbolic is None:
        raise TracingError(f"The forward of {code.describe} computes no built-in cell, and its framework's graph "
                           f"cannot be captured (a custom operator without a Python implementation). "
                           + _declare_hint(code))
    if not {"Wx", "Wh", "b"} <= set(code.roles):
        raise TracingError(f"The forward of {code.describe} computes no built-in cell, and tracing reads weights "
                           f"stacked as PyTorch's (weight_ih, weight_hh, bias); its arguments are "
                           f"{list(code.names.values())}. " + _declare_hint(code))
    states = ("h", "c") if "c0" in code.roles else ("h",)
    errors = []
    for G in range(1, MAX_GATES + 1):
        try:
            cell, found = _try(code, G, states, batch_first, heads)
        except (TracingError, SymRNNError) as exc:
            errors.append((G, str(exc)))
            continue
        how = "torch.export's graph (Core ATen)" if "torch" in code.describe else "its jaxpr"
        blocks = ("one gate block (U, W, b)" if found.gate_order == ("",) else
                  f"{G} gate blocks {' '.join(found.gate_order)} (U_g, W_g, b_g)")
        text = (f"traced from {how} of one step (no built-in cell): {blocks} stacked in "
                f"{', '.join(found.names.values())}, {'batch-first' if found.batch_major else 'time-major'}"
                + (f", {heads} heads (state (N, {heads}, H/{heads}), rows ordered "
                   f"{'head by head' if found.head_major else 'gate by gate'})" if heads > 1 else "")
                + "; its equations:\n" + equations_text(cell))
        return SimpleNamespace(cell=cell, layout=found, text=text)
    shown = _first_reason(errors)
    raise TracingError(f"The forward of {code.describe} computes no built-in cell, and tracing its graph of one "
                       f"step failed: {shown}. " + _declare_hint(code))

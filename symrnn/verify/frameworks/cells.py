"""Which cell a framework's forward computes, and in which layout: declared, matched against the
built-in cells (PyTorch's RNN/LSTM/GRU through :func:`symrnn.verify.auto.find`, the cells of today
through :mod:`~symrnn.verify.frameworks.stacked`), or traced from the framework's own graph
(:mod:`~symrnn.verify.frameworks.traced`)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ...errors import SymRNNError, UnknownNameError
from ...models.layouts import layout_for
from ..trace import TracingError
from .heads import head_candidates
from .stacked import TODAY, candidates

_CLASSIC = ("Wx", "Wh", "b")  # what symrnn.verify.auto reads: the built-in RNN, LSTM and GRU


@dataclass
class Resolved:
    cell: object  # a built-in name or a Cell; None: verify_layer finds it (RNN, LSTM, GRU)
    layout: object
    batch_first: bool
    text: str = ""  # what was found, for the report (empty: verify_layer says it)


def framework_layout(code, layout, batch_first, cell):
    """PyTorch's layout (or ``layout``) under the user's names, batch-first or not."""
    base = layout_for("pytorch" if layout is None else layout, "rnn-tanh" if cell is None else cell)
    names = {r: n for r, n in code.names.items() if r not in ("x", "h0", "c0")}
    return replace(base, names=names, batch_major=bool(batch_first))


def _is_today(cell):
    name = cell if isinstance(cell, str) else None
    return name in TODAY[True] + TODAY[False]


def _classic_batch_first(code, layout, batch_first, cell):
    """The batch-first flag in which the forward reproduces a built-in RNN, LSTM or GRU (declared:
    the flag given, else time-major), or None when no cell was declared and none is reproduced."""
    given = batch_first if batch_first is not None else code.batch_first
    if cell is not None and (given is not None or not isinstance(cell, str)):
        return bool(given)
    from ..auto import find

    for candidate in (False, True) if given is None else (bool(given),):
        try:
            find(code.forward, cell=cell, layout=framework_layout(code, layout, candidate, cell))
            return candidate
        except SymRNNError:
            continue
    return None if cell is None else False


def match_today(code, cell, batch_first, heads=1):
    """``(cell name, GateStacked layout)`` of the first cell of today (or ``cell``) the forward
    reproduces in PyTorch's stacking, any gate order, or None."""
    from ..auto import probe_model, reproduces

    names = {r: n for r, n in code.names.items() if r not in ("x", "h0", "c0")}
    flag = batch_first if batch_first is not None else code.batch_first
    cells = (cell,) if isinstance(cell, str) else TODAY["Wh" in code.roles]
    if heads > 1 and cell is None and "Wh" in code.roles:  # a multi-head LSTM or RNN in a head layout
        cells = cells + (("lstm",) if "c0" in code.roles else ("rnn-tanh",))
    for name in cells:
        model = probe_model(name)
        layouts = candidates(names, name, flag)
        for L in layouts if heads == 1 else head_candidates(layouts, heads):
            try:
                L.to_user(name, model.init_params(0))
            except (SymRNNError, KeyError, ValueError):
                return None if cell is None else _no_fit(code, name)
            if reproduces(code.forward, code.roles, L, model, name):
                return name, L
    return None


def _no_fit(code, name):
    raise UnknownNameError(f"{code.describe}: its arguments {list(code.names.values())} carry not every weight of "
                           f"{name!r} stacked as PyTorch stacks gates (weight_ih, weight_hh, bias).")


def _gates_text(L):
    if tuple(L.gate_order) == ("",):  # one gate (IndRNN)
        return "weights in weight_ih" + (", weight_hh" if "Wh" in L.names else "")
    return f"gates {' '.join(L.gate_order)} stacked in weight_ih" + (", weight_hh" if "Wh" in L.names else "")


def resolve(code, cell, layout, batch_first, heads=1) -> Resolved:
    """The cell and layout to verify ``code`` against (see the module); code with ``heads`` heads is
    matched against the cells of today in a head layout."""
    from ..native import is_native

    if layout is not None and is_native(layout):
        return _in_symrnn_names(code, cell, batch_first)
    if _is_today(cell) or heads > 1 or (cell is None and not set(_CLASSIC) <= set(code.roles)):
        found = match_today(code, cell, batch_first, heads)
        if found is not None:
            name, L = found
            how = "declared" if cell is not None else "matched"
            split = (f", {heads} heads (state (N, {heads}, H/{heads}), rows ordered "
                     f"{'head by head' if L.head_major else 'gate by gate'})" if heads > 1 else "")
            return Resolved(name, L, L.batch_major, f"{how}: the cell of today {name!r}; {_gates_text(L)}, "
                                                    + ("batch-first" if L.batch_major else "time-major") + split)
        if cell is not None and heads == 1 and _named_as(code, cell):  # IndRNN's U, w, b: symrnn's names
            return _in_symrnn_names(code, cell, batch_first)
        if cell is not None or (heads > 1 and not {"Wx", "Wh", "b"} <= set(code.roles)):
            raise TracingError(f"The forward of {code.describe} computes no {cell or 'cell of today'!r} in "
                               f"PyTorch's stacking (weight_ih, weight_hh, bias; any gate order; batch-first or "
                               f"not): pass layout= "
                               f"(a symrnn.models.layouts.Layout).")
        return _traced_or_refused(code, layout, batch_first, heads)
    first = _classic_batch_first(code, layout, batch_first, cell)
    if cell is None and first is None:
        found = match_today(code, None, batch_first)
        if found is not None:
            name, L = found
            return Resolved(name, L, L.batch_major, f"matched: the cell of today {name!r}; {_gates_text(L)}")
        return _traced_or_refused(code, layout, batch_first)
    first = bool(first)
    return Resolved(cell, framework_layout(code, layout, first, cell), first)


def _in_symrnn_names(code, cell, batch_first) -> Resolved:
    """``layout="symrnn"``: the code's weights are the declared cell's parameters under symrnn's names
    (IndRNN's ``U, w, b``), one argument each, in any order."""
    from ..native import NATIVE

    weights = {r: n for r, n in code.names.items() if r not in ("x", "h0", "c0")}
    params = [] if cell is None else _params(cell)
    if cell is None or not _named_as(code, cell):
        has = "" if cell is None else f"; {cell if isinstance(cell, str) else cell.name!r} has the parameters {params}"
        raise UnknownNameError(
            f"layout='symrnn' reads the weights of {code.describe} by symrnn's names, one argument per parameter "
            f"of the declared cell: it takes {list(weights.values())}{has}" + (": declare the cell (cell=...)"
                                                                              if cell is None else "")
            + "; name its weight arguments so (any order), or leave layout out for PyTorch's names and stacking "
              "(weight_ih, weight_hh, bias_ih).")
    first = bool(batch_first if batch_first is not None else code.batch_first)
    return Resolved(cell, replace(NATIVE, names=weights, batch_major=first), first,
                    f"declared: {cell if isinstance(cell, str) else cell.name!r} in symrnn's names "
                    f"({', '.join(params)}), " + ("batch-first" if first else "time-major"))


def _params(cell) -> list:
    from ...engine.cells import builtin_cell

    return [k for k, spec in (builtin_cell(cell) if isinstance(cell, str) else cell).params.items() if not spec.fixed]


def _named_as(code, cell) -> bool:
    """The code's weight arguments are the cell's parameters, by symrnn's names."""
    return sorted(n for r, n in code.names.items() if r not in ("x", "h0", "c0")) == sorted(_params(cell))


def _traced_or_refused(code, layout, batch_first, heads=1):
    """The cell traced from the framework's graph of one step (or a TracingError saying how to declare it)."""
    from .traced import trace_code

    traced = trace_code(code, layout, batch_first, heads)
    return Resolved(traced.cell, traced.layout, traced.layout.batch_major, traced.text)

"""The forward is the specification: what a hand-written layer computes, found from the code.

``verify_layer(forward, backward, cell=None)`` (``symrnn verify FILE:backward`` without
``--cell``) reads the roles of the forward's arguments from their names (``x``, ``h0``/``prev_h``,
``c0``, ``Wx``/``Wxh``/``weight_ih``, ``Wh``, ``W`` for one matrix over ``[x, h]`` or ``[h, x]``,
``b``, ``b_hh``), then runs the forward on small random problems in every convention a
:class:`~symrnn.layouts.Layout` can describe (row or column convention, rows or column vectors,
batch- or time-major, bias shapes, ``[x, h]`` or ``[h, x]``, every gate order):

1. the first built-in cell whose forward it reproduces is the one verified against;
2. if none, the cell is *traced* (:mod:`symrnn.verify.trace`): the step (the forward's own
   ``*_step_forward`` when the module has one, else the forward run for one step) is run on
   symbols and its equations become a :class:`~symrnn.Cell`, checked on numbers against the
   forward before it is used.

The backward is called as CS231n's: ``backward(dh[, dc], cache)`` returning the gradient of
every forward argument, in the forward's order (``dx, dh0, dWx, dWh, db``).
"""
from __future__ import annotations

import functools
import inspect
import itertools
import sys
from dataclasses import dataclass, replace

import numpy as np

from ..cells import builtin_cell
from ..errors import SymRNNError, UnknownNameError
from ..layouts import LAYOUTS, Layout
from .hygiene import guarded
from .signatures import Signature
from .trace import TracingError, equations_text, pseudo_cell, run_on_symbols, traced_array, traced_cell

#: names people give the forward's arguments, by role (compared in lower case)
ROLE_NAMES = {
    "x": ("x", "xs", "x_seq", "inputs", "input", "seq", "x_t", "sequence"),
    "h0": ("h0", "h_0", "hprev", "h_prev", "prev_h", "h", "hidden", "h_init", "hx", "h_t", "prev_hidden", "h_start"),
    "c0": ("c0", "c_0", "cprev", "c_prev", "prev_c", "c", "cell", "c_init", "cx", "c_t", "c_start"),
    "Wx": ("wx", "wxh", "w_ih", "weight_ih", "kernel", "u", "w_x", "w_xh", "wi", "w_in", "w_input"),
    "Wh": ("wh", "whh", "w_hh", "weight_hh", "recurrent_kernel", "w_h", "w_hh_", "w_rec", "w_recurrent"),
    "W": ("w", "weight", "weights", "w_all"),
    "b": ("b", "bh", "bias", "b_ih", "bias_ih", "b_h"),
    "b_hh": ("b_hh", "bias_hh"),
}
FAMILIES = (("rnn-tanh", "rnn-relu", "rnn-sigmoid"), ("lstm",), ("gru-reset-before", "gru-reset-before-chung",
                                                                  "gru", "gru-chung"))
GATES = {"rnn": ("",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
PROBE = dict(D=5, H=2, N=3, T=4)  # sizes no two of which (nor G*H) coincide: a wrong axis cannot pass


@functools.lru_cache(maxsize=None)
def _probe_model(name):
    """The built-in cell ``name`` at the probe's sizes (derived once per process)."""
    from ..model import Model

    return Model(builtin_cell(name), D=PROBE["D"], H=PROBE["H"], loss="upstream")


def forward_roles(fn) -> tuple:
    """The roles of ``fn``'s arguments from their names, or a :class:`UnknownNameError` that says how
    to name them."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise UnknownNameError(f"Cannot read the arguments of {fn!r}; pass cell= and layout= (and signature=).")
    by_name = {n: role for role, names in ROLE_NAMES.items() for n in names}
    roles, unknown = [], []
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
            continue
        role = by_name.get(p.name.lower())
        (roles if role else unknown).append(role or p.name)
    if unknown or "x" not in roles or len(set(roles)) != len(roles):
        raise UnknownNameError(
            f"Cannot tell the roles of {getattr(fn, '__name__', 'the forward')}'s arguments "
            f"{[p.name for p in parameters]}" + (f" ({unknown} are not names symrnn knows)" if unknown else "")
            + ": give --cell and --layout (and, in Python, signature=symrnn.verify.Signature(...)), or name them "
              "as CS231n does: x, h0 (prev_h), c0 (prev_c), Wx, Wh, b (W for one matrix over [x, h]).")
    if "W" in roles and ("Wx" in roles or "Wh" in roles) or "W" not in roles and not {"Wx", "Wh"} <= set(roles) \
            or "b" not in roles:
        raise UnknownNameError(f"The forward's arguments {roles} are not input weights, recurrent weights and a bias "
                               f"(Wx, Wh, b or W, b): give --cell and --layout.")
    return tuple(roles)


def layouts_for(roles, names):
    """Every layout a forward with these argument roles may use, the presets' conventions first."""
    stackings = ("xh", "hx") if "W" in roles else ("separate",)
    out = []
    for convention, vectors, batch_major, bias_shape, stacking in itertools.product(
            ("row", "column"), ("rows", "columns"), (True, False), ("flat", "row", "column"), stackings):
        if vectors == "columns" and bias_shape == "row" or vectors == "rows" and bias_shape == "column":
            continue  # a bias shaped against the vectors does not broadcast
        out.append(Layout("found", {r: n for r, n in names.items() if r in roles and r not in ("x", "h0", "c0")},
                          convention=convention,
                          stacking=stacking, bias_shape=bias_shape, vectors=vectors, batch_major=batch_major))
    return out


@dataclass
class Found:
    cell: object  # a built-in name or a traced Cell
    layout: Layout
    signature: Signature
    how: str  # "built-in" or "traced"
    text: str  # what was found, for the report
    N: int = PROBE["N"]


def _probe(model, seed=0, N=None):
    p = dict(PROBE, N=N or PROBE["N"])
    rng = np.random.default_rng(seed)
    params = model.init_params(seed, scale=0.8)
    x = rng.normal(size=(p["T"], p["N"], p["D"]))
    h0 = {s: rng.normal(size=(p["N"], p["H"])) * 0.5 for s in model.state_names}
    return params, x, h0


def _call_forward(forward, roles, layout, cell, params, x, h0, zero):
    data = {"x": layout.sequence_to_user(x), "h0": layout.state_to_user(h0["h"] * (0 if "h" in zero else 1))}
    if "c" in h0:
        data["c0"] = layout.state_to_user(h0["c"] * (0 if "c" in zero else 1))
    user = layout.to_user(cell, params)
    args = [data[r] if r in data else user[layout.names[r]] for r in roles]
    with np.errstate(all="ignore"), guarded("the forward"):
        out = forward(*args)
    return out[0] if isinstance(out, (tuple, list)) else out


def _matches(forward, roles, layout, model, cell, N=None):
    """The forward reproduces ``model`` in ``layout`` (states the code does not take start at zero)."""
    zero = tuple(s for s in model.state_names if f"{s}0" not in roles)
    params, x, h0 = _probe(model, N=N)
    for s in zero:
        h0[s] = np.zeros_like(h0[s])
    try:
        h = _call_forward(forward, roles, layout, cell, params, x, h0, zero)
        h = layout.sequence_from_user(h, "h", (x.shape[0], x.shape[1], model.sizes["H"]))
    except (Exception, SymRNNError):
        return False
    exact = model.run_cell(params, x, h0)[2][f"S_{model.out}"][1:]
    return bool(np.all(np.isfinite(h)) and np.allclose(h, exact, rtol=1e-4, atol=1e-6))


def _runs(forward, roles, layout, G, N=None):
    """The forward runs on arrays laid out with ``G`` gate blocks and returns h of the right shape."""
    model = _probe_model({1: "rnn-tanh", 3: "gru-reset-before", 4: "lstm"}[G])
    cell = model.cell.name
    params, x, h0 = _probe(model, N=N)
    gates = GATES["rnn" if G == 1 else "gru" if G == 3 else "lstm"]
    lay = replace(layout, gate_order=() if G == 1 else gates)
    try:
        h = _call_forward(forward, roles, lay, cell, params, x, h0, ())
        lay.sequence_from_user(h, "h", (x.shape[0], x.shape[1], PROBE["H"]))
    except (Exception, SymRNNError):
        return False
    return True


def find(forward, *, step_forward=None, cell=None, layout=None, names=None) -> Found:
    """What ``forward`` computes: a built-in cell, or one traced from the code (see the module)."""

    roles = forward_roles(forward)
    arg_names = [p.name for p in inspect.signature(forward).parameters.values()
                 if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    names = dict(zip(roles, arg_names))
    candidates = [layout] if isinstance(layout, Layout) else layouts_for(roles, names)
    tried = []
    for N in (None, 1):  # code written for one example at a time runs with N = 1 only
        runnable = [(G, lay) for G in (1, 3, 4) for lay in candidates if _runs(forward, roles, lay, G, N)]
        if not runnable:
            continue
        families = [f for f in FAMILIES if cell is None or (isinstance(cell, str) and cell in f)]
        for G, lay in runnable:
            for family in families:
                gates = GATES["rnn" if family[0].startswith("rnn") else family[0].split("-")[0]]
                if len(gates) != G:
                    continue
                for name in family if cell is None else (cell,):
                    model = _probe_model(name)
                    for order in (itertools.permutations(gates) if G > 1 else [()]):
                        candidate = replace(lay, gate_order=tuple(order))
                        try:
                            candidate.to_user(name, model.init_params(0))
                        except SymRNNError:
                            continue
                        if _matches(forward, roles, candidate, model, name, N):
                            return _found(name, candidate, roles, forward, "built-in", N)
        tried.append(N)
        if cell is not None and isinstance(cell, str):
            continue
        errors = []
        for G, lay in runnable:
            try:
                return _traced(forward, step_forward, roles, lay, G, N)
            except (TracingError, SymRNNError) as exc:
                errors.append(str(exc))
        if errors:
            raise TracingError("The forward computes no built-in cell in any layout tried, and tracing it failed: "
                               + errors[0] + ". Declare the cell instead (symrnn.Cell, --cell file.py:function) "
                               "with a layout.")
    raise UnknownNameError(
        f"The forward did not run on arrays laid out in any convention symrnn knows (arguments {arg_names} read "
        f"as {list(roles)}; sizes D={PROBE['D']}, H={PROBE['H']}, N={PROBE['N']} or 1, T={PROBE['T']}): give --cell "
        f"and --layout, or signature= in Python.")


def _describe(layout):
    shape = {"row": "x W (row convention)", "column": "W x (column convention)"}[layout.convention]
    parts = [shape, f"gates {' '.join(layout.gate_order)}" if layout.gate_order else "",
             {"xh": "one W over [x, h]", "hx": "one W over [h, x]", "separate": ""}[layout.stacking],
             "vectors as columns" if layout.vectors == "columns" else "",
             "batch-major (N, T, D)" if layout.batch_major else "time-major (T, N, D)", f"{layout.bias_shape} bias"]
    same = [name for name, preset in LAYOUTS.items()
            if (preset.convention, preset.vectors, preset.batch_major, preset.stacking, preset.bias_shape)
            == (layout.convention, layout.vectors, layout.batch_major, layout.stacking, layout.bias_shape)]
    return ", ".join(p for p in parts if p) + (f" (as {' and '.join(same)})" if same else "")


def _signature(roles, forward_returns):
    back = tuple({"x": "dx", "h0": "dh0", "c0": "dc0"}.get(r, r) for r in roles)
    return Signature(roles, forward_returns, ("dh", "cache"), back)


def _found(name, layout, roles, forward, how, N, cell=None):
    returns = _returns(forward, roles, layout, cell or name, N)
    text = (f"the forward computes the built-in cell {name!r}; layout: {_describe(layout)}" if how == "built-in"
            else f"the forward computes no built-in cell; traced from the code: {_describe(layout)}")
    return Found(cell or name, layout, _signature(roles, returns), how, text, N or PROBE["N"])


def _returns(forward, roles, layout, cell, N):
    from ..model import Model

    model = _probe_model(cell) if isinstance(cell, str) else Model(cell, D=PROBE["D"], H=PROBE["H"], loss="upstream")
    params, x, h0 = _probe(model, N=N)
    data = {"x": layout.sequence_to_user(x), "h0": layout.state_to_user(h0["h"])}
    if "c" in h0:
        data["c0"] = layout.state_to_user(h0["c"])
    user = layout.to_user(cell, params)
    with np.errstate(all="ignore"), guarded("the forward"):
        out = forward(*[data[r] if r in data else user[layout.names[r]] for r in roles])
    if not isinstance(out, (tuple, list)):
        return ("h",)
    return ("h", "cache") if len(out) == 2 else ("h", "c", "cache") if len(out) == 3 else ("h",) + ("ignored",) * (
        len(out) - 1)


def step_forward_of(forward):
    """The module's ``<name>_step_forward`` beside ``<name>_forward`` (CS231n's pair), or None."""
    name = getattr(forward, "__name__", "")
    namespace = getattr(forward, "__globals__", None) or vars(sys.modules.get(getattr(forward, "__module__", ""), sys))
    if not name.endswith("_forward"):
        return None
    step = namespace.get(name[: -len("_forward")] + "_step_forward")
    return step if callable(step) else None


def _traced(forward, step_forward, roles, layout, G, N):
    """Trace the step (the module's step function, else the forward for one step) in ``layout``."""
    from ..model import Model

    gates = tuple(f"g{k}" for k in range(G)) if G > 1 else ("",)
    lay = replace(layout, gate_order=gates if G > 1 else ())
    step_forward = step_forward or step_forward_of(forward)
    states = ("h", "c") if "c0" in roles else ("h",)
    if step_forward is not None:
        step_roles = forward_roles(step_forward)
        states = ("h", "c") if "c0" in step_roles else ("h",)

        def step(xs, ss, symbolic):
            pseudo = pseudo_cell(gates, states)
            user = {k: traced_array(v) for k, v in lay.to_user(pseudo, symbolic).items()}
            data = {"x": traced_array(lay.state_to_user(xs[None, :])),
                    "h0": traced_array(lay.state_to_user(ss["h"][None, :]))}
            if "c" in ss:
                data["c0"] = traced_array(lay.state_to_user(ss["c"][None, :]))
            out = run_on_symbols(step_forward, [data[r] if r in data else user[lay.names[r]] for r in step_roles],
                                 f"{step_forward.__name__}(...)")
            out = out if isinstance(out, (tuple, list)) else (out,)
            return {s: np.asarray(v, dtype=object).reshape(-1) for s, v in zip(states, out)}
        what = f"{step_forward.__name__}(...)"
    else:
        def step(xs, ss, symbolic):
            pseudo = pseudo_cell(gates, states)
            user = {k: traced_array(v) for k, v in lay.to_user(pseudo, symbolic).items()}
            data = {"x": traced_array(lay.sequence_to_user(xs[None, None, :])),
                    "h0": traced_array(lay.state_to_user(ss["h"][None, :]))}
            if "c" in ss:
                data["c0"] = traced_array(lay.state_to_user(ss["c"][None, :]))
            out = run_on_symbols(forward, [data[r] if r in data else user[lay.names[r]] for r in roles],
                                 f"{forward.__name__}(...) for one step")
            out = out[0] if isinstance(out, (tuple, list)) else out
            return {"h": np.asarray(out, dtype=object).reshape(-1)}
        what = f"{forward.__name__}(...) for one step"
    cell = traced_cell("traced", gates, step, states,
                       D=3, H=2, what=what)
    model = Model(cell, D=PROBE["D"], H=PROBE["H"], loss="upstream")
    if not _matches(forward, roles, lay, model, cell, N):
        raise TracingError(f"the cell traced from {what} does not reproduce the forward on numbers (a state the "
                           f"code keeps to itself, or a branch on values?)")
    found = _found(cell.name, lay, roles, forward, "traced", N, cell=cell)
    arrays = ", ".join(lay.names[r] for r in ("Wx", "Wh", "W", "b") if r in lay.names)
    found.text += (f"; its equations (U_g, W_g, b_g: the blocks of {arrays} in their order, one per gate g):\n"
                   if G > 1 else "; its equations:\n") + equations_text(cell)
    return found

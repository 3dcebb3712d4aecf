"""The forward is the specification: what a hand-written layer computes, found from the code.

``verify_layer(forward, backward, cell=None)`` (``symrnn verify FILE:backward`` without
``--cell``) reads the roles of the forward's arguments from their names (``x``, ``h0``/``prev_h``,
``c0``, ``Wx``/``Wxh``/``weight_ih``, ``Wh``, ``W`` for one matrix over ``[x, h]`` or ``[h, x]``,
``b``, ``b_hh``), then runs the forward on small random problems in every convention a
:class:`~symrnn.models.layouts.Layout` can describe (row or column convention, rows or column vectors,
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

from ..engine.cells import builtin_cell
from ..errors import ShapeError, SymRNNError, UnknownNameError, UserCodeError, UserCodeExit
from ..models.layouts import LAYOUTS, Layout, layout_for
from .hygiene import guarded
from .pergate import find_per_gate, per_gate_roles
from .signatures import Signature, gate_role
from .trace import TracingError, user_line, equations_text, pseudo_cell, run_on_symbols, traced_array, traced_cell

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
    from ..models.model import Model

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
    gated = per_gate_roles([p.name for p in parameters]) if unknown else None  # minGRU's Wz, bz, Wh, bh
    if gated:
        return gated
    if unknown or "x" not in roles or len(set(roles)) != len(roles):
        raise UnknownNameError(
            f"Cannot tell the roles of {getattr(fn, '__name__', 'the forward')}'s arguments "
            f"{[p.name for p in parameters]}" + (f" ({unknown} are not names symrnn knows)" if unknown else "")
            + ": give --cell and --layout (and, in Python, signature=symrnn.verify.Signature(...)), or name them "
              "as CS231n does: x, h0 (prev_h), c0 (prev_c), Wx, Wh, b (W for one matrix over [x, h])"
            + ("; code that takes a params dict in symrnn's names is verified with --cell NAME (and --layout "
               "symrnn)" if any(p.name.lower() in ("params", "p", "weights") for p in parameters) else "") + ".")
    if {"Wx", "b"} <= set(roles) and not {"Wh", "W"} & set(roles):  # minGRU, minLSTM: no recurrent weight
        return tuple(roles)
    if "W" in roles and ("Wx" in roles or "Wh" in roles) or "W" not in roles and not {"Wx", "Wh"} <= set(roles) \
            or "b" not in roles:
        raise UnknownNameError(f"The forward's arguments {roles} are not input weights, recurrent weights and a bias "
                               f"(Wx, Wh, b or W, b): give --cell and --layout.")
    return tuple(roles)


def layouts_for(roles, names):
    """Every layout a forward with these argument roles may use, the presets' conventions first."""
    stackings = ("xh", "hx") if "W" in roles else ("separate",)
    out, late = [], []
    for convention, vectors, batch_major, bias_shape, stacking in itertools.product(
            ("row", "column"), ("rows", "columns"), (True, False), ("flat", "row", "column"), stackings):
        against = vectors == "columns" and bias_shape == "row" or vectors == "rows" and bias_shape == "column"
        if against and (convention == "row") == (bias_shape == "column"):
            continue  # a bias shaped against both the vectors and the weights does not broadcast
        # a bias shaped as the weights' products, against the vectors ((W @ z.T + b).T with b (4H, 1)): last
        (late if against else out).append(Layout(
            "found", {r: n for r, n in names.items() if r in roles and r not in ("x", "h0", "c0")},
            convention=convention, stacking=stacking, bias_shape=bias_shape, vectors=vectors, batch_major=batch_major))
    return out + late


@dataclass
class Found:
    cell: object  # a built-in name or a traced Cell
    layout: Layout
    signature: Signature
    how: str  # "built-in" or "traced"
    text: str  # what was found, for the report
    N: int = PROBE["N"]


def _probe(model, seed=0, N=None):
    """Parameters, inputs and initial states of a probe problem at ``model``'s sizes."""
    N, D, H = N or PROBE["N"], model.sizes["D"], model.sizes["H"]
    rng = np.random.default_rng(seed)
    params = model.init_params(seed, scale=0.8)
    x = rng.normal(size=(PROBE["T"], N, D))
    h0 = {s: rng.normal(size=(N, H)) * 0.5 for s in model.state_names}
    return params, x, h0


def _call_forward(forward, roles, layout, cell, params, x, h0, zero, whole=False):
    """The forward's h on the probe in ``layout`` (``whole``: everything it returned)."""
    data = {"x": layout.sequence_to_user(x), "h0": layout.state_to_user(h0["h"] * (0 if "h" in zero else 1))}
    if "c" in h0:
        data["c0"] = layout.state_to_user(h0["c"] * (0 if "c" in zero else 1))
    user = layout.to_user(cell, params)
    args = [data[r] if r in data else _user_value(layout.names[r], user) for r in roles]
    with np.errstate(all="ignore"), guarded("the forward"):
        out = forward(*args)
    return out if whole or not isinstance(out, (tuple, list)) else out[0]


def _user_value(name, user):
    return tuple(user[n] for n in name) if isinstance(name, tuple) else user[name]


#: how close a forward in half precision (PyTorch or JAX code) must come: 4 units of its rounding
#: (a correct GRU or LSTM at the probe's sizes: 5e-4 in float16, 5e-3 in bfloat16; another cell: 0.09 or more)
HALF_CLOSE = {"float16": 4 * 2.0 ** -11, "bfloat16": 4 * 2.0 ** -8}


def _matches(forward, roles, layout, model, cell, N=None):
    """The forward reproduces ``model`` in ``layout`` (states the code does not take start at zero), to
    1e-4 relative, or to :data:`HALF_CLOSE` when it returns float16 or bfloat16 states."""
    zero = tuple(s for s in model.state_names if f"{s}0" not in roles)
    params, x, h0 = _probe(model, N=N)
    for s in zero:
        h0[s] = np.zeros_like(h0[s])
    try:
        h = _call_forward(forward, roles, layout, cell, params, x, h0, zero)
        close = HALF_CLOSE.get(getattr(getattr(h, "dtype", None), "name", ""))
        h = layout.sequence_from_user(h, "h", (x.shape[0], x.shape[1], model.sizes["H"])).astype(float)
    except (Exception, SymRNNError):
        return False
    exact = model.run_cell(params, x, h0)[2][f"S_{model.out}"][1:]
    rtol, atol = (close, close) if close else (1e-4, 1e-6)
    return bool(np.all(np.isfinite(h)) and np.allclose(h, exact, rtol=rtol, atol=atol))


reproduces = _matches  # public names: the framework adapters and the finders of cells of today use them
call_forward = _call_forward  # ... and object mode (auto_object)
probe_model = _probe_model  # the built-in cell at the probe's sizes (PROBE), derived once per process


#: the numbers of gate blocks a forward's stacked weights are read with: a built-in cell's, then two
#: (a minimal gated unit's r and n, or any 2-block cell, which only tracing can find)
BLOCKS = (1, 3, 4, 2)


def _probe_states(forward, roles, layout, G, N=None):
    """The forward's h on the probe, (T, N, H), read in ``layout`` with ``G`` gate blocks (or what it raised)."""
    if G not in (1, 3, 4):
        cell, params, x, h0, lay = _blocks_probe(layout, G, "c0" in roles, N)
    else:
        model = _probe_model({1: "rnn-tanh", 3: "gru-reset-before", 4: "lstm"}[G])
        params, x, h0 = _probe(model, N=N)
        lay, cell = replace(layout, gate_order=() if G == 1 else GATES["gru" if G == 3 else "lstm"]), model.cell.name
    h = _call_forward(forward, roles, lay, cell, params, x, h0, ())
    return lay.sequence_from_user(h, "h", (x.shape[0], x.shape[1], PROBE["H"]))


def _blocks_probe(layout, G, with_c, N=None):
    """A probe with ``G`` gate blocks g0, g1, ... of no built-in cell: the blocks' shapes only."""
    gates = tuple(f"g{k}" for k in range(G))
    cell = pseudo_cell(gates, ("h", "c") if with_c else ("h",))
    rng = np.random.default_rng(0)
    D, H, N = PROBE["D"], PROBE["H"], N or PROBE["N"]
    shapes = {"U": (H, D), "W": (H, H), "b": (H,)}
    params = {k: rng.normal(size=shapes[k[0]]) * 0.5 for k in cell.params}
    x = rng.normal(size=(PROBE["T"], N, D))
    h0 = {s: rng.normal(size=(N, H)) * 0.5 for s in cell.states}
    return cell, params, x, h0, replace(layout, gate_order=gates)


def _runs(forward, roles, layout, G, N=None, errors=None):
    """The forward runs on arrays laid out with ``G`` gate blocks and returns h of the right shape
    (what it raised otherwise goes to ``errors``)."""
    try:
        _probe_states(forward, roles, layout, G, N)
    except UserCodeExit:
        raise  # exit() in the forward: reported as such, whatever the layout
    except (Exception, SymRNNError) as exc:
        if errors is not None:
            errors.append(exc)
        return False
    return True


#: what a forward raises when it is given arrays of another layout; anything else is a mistake of its own
LAYOUT_ERRORS = (ValueError, IndexError, TypeError, ShapeError)


def _no_layout(forward, errors, arg_names, roles):
    """The error when the forward ran in no layout: its own mistake (exit 3) when it raised something
    other than a layout's shape errors, else a usage error naming what the first layout gave."""
    own = next((e for e in errors if not isinstance(e, LAYOUT_ERRORS)), None)
    if own is not None:
        where = user_line(own.__traceback__)
        return UserCodeError(f"{getattr(forward, '__name__', 'the forward')}(...) raised {type(own).__name__}: {own}"
                             + (f" at {where}" if where else "") + " (on arrays in every layout tried)")
    first = errors[0] if errors else None
    return UnknownNameError(
        f"The forward did not run on arrays laid out in any convention symrnn knows (arguments {arg_names} read "
        f"as {list(roles)}; sizes D={PROBE['D']}, H={PROBE['H']}, N={PROBE['N']} or 1, T={PROBE['T']})"
        + (f"; in the first layout tried it raised {type(first).__name__}: {first}" if first else "")
        + f" (stacked weights were read with {', '.join(map(str, sorted(BLOCKS)))} gate blocks): declare the cell "
          "(--cell NAME or file.py:function; in Python an sr.Cell) and its layout: a preset with --layout, or in "
          "Python layout=symrnn.models.layouts.Layout(name, names={role: argument}, gate_order=..., "
          "convention='row'|'column', stacking='separate'|'xh'|'hx', bias_shape='flat'|'row'|'column', "
          "vectors='rows'|'columns', batch_major=...) with signature=.")


#: constants added to the gate f inside a forward (TF1's forget_bias=1.0), tried after none at all
FORGET_BIASES = (1.0,)


def _builtin(forward, roles, runnable, cell, N, forget_bias=0.0):
    """The built-in cell (``cell``, or any) and gate order that ``forward`` computes in one of the
    ``runnable`` layouts, with ``forget_bias`` added to the gate f inside (0: none), or None."""
    families = [f for f in FAMILIES if cell is None or (isinstance(cell, str) and cell in f)]
    for G, lay in runnable:
        for family in families:
            gates = GATES["rnn" if family[0].startswith("rnn") else family[0].split("-")[0]]
            if len(gates) != G or (forget_bias and "f" not in gates):
                continue
            for name in family if cell is None else (cell,):
                model = _probe_model(name)
                for order in (itertools.permutations(gates) if G > 1 else [()]):
                    candidate = replace(lay, gate_order=tuple(order), forget_bias=forget_bias)
                    try:
                        candidate.to_user(name, model.init_params(0))
                    except SymRNNError:
                        continue
                    if _matches(forward, roles, candidate, model, name, N):
                        return found_as(name, candidate, roles, forward, "built-in", N)
    return None


def find(forward, *, step_forward=None, cell=None, layout=None) -> Found:
    """What ``forward`` computes: a built-in cell, or one traced from the code (see the module).

    ``step_forward`` is the step to trace (default: the module's ``<name>_step_forward``); ``cell``
    (a built-in name) and ``layout`` (a :class:`~symrnn.models.layouts.Layout`) narrow the search."""

    roles = forward_roles(forward)
    arg_names = [p.name for p in inspect.signature(forward).parameters.values()
                 if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    names = dict(zip(roles, arg_names))
    from .unrecurrent import find_without_recurrent_weight, no_recurrent_weight

    if no_recurrent_weight(roles):
        return find_without_recurrent_weight(forward, roles, names, cell, layout)
    if any(gate_role(r) for r in roles):
        return find_per_gate(forward, roles, names, cell)
    candidates = [layout] if isinstance(layout, Layout) else layouts_for(roles, names)
    errors, ran = [], False
    for N in (None, 1):  # code written for one example at a time runs with N = 1 only
        runnable = [(G, lay) for G in BLOCKS for lay in candidates if _runs(forward, roles, lay, G, N, errors)]
        if not runnable:
            continue
        ran = True
        for bias in (0.0,) + FORGET_BIASES:  # a constant added to the forget gate inside the forward last
            found = _builtin(forward, roles, runnable, cell, N, bias)
            if found is not None:
                return found
        _refuse_non_finite(forward, roles, runnable, N)
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
    if ran and cell is not None:
        raise TracingError(f"The forward computes no {cell!r} in any layout tried (it runs, but its states differ "
                           f"from the cell's): give --layout, or leave out --cell to find or trace what it computes.")
    raise _no_layout(forward, errors, arg_names, roles)


def _refuse_non_finite(forward, roles, runnable, N):
    """A forward that returns NaN or inf on the finite probe in every layout it runs in is wrong, whatever
    cell it meant: say where (in the first layout)."""
    first = None
    for G, lay in runnable:
        try:
            h = np.asarray(_probe_states(forward, roles, lay, G, N), dtype=float)
        except (Exception, SymRNNError):
            return
        bad = np.argwhere(~np.isfinite(h))
        if not len(bad):
            return
        first = first or (h, bad)
    if first is not None:
        h, bad = first
        t, n, i = (int(k) for k in bad[0])
        raise TracingError(
            f"The forward returned {h[t, n, i]} for h at step {t + 1} of {h.shape[0]}, example {n}, unit {i} "
            f"(examples and units counted from 0; {len(bad)} of {h.size} entries are not finite) on finite "
            f"inputs of moderate size (D={PROBE['D']}, H={PROBE['H']}): look for a division by zero, the log "
            f"or sqrt of a negative number, or an array left uninitialised (np.empty) in the forward.")


def describe_layout(layout, cell=None):
    """The layout in words, with the presets it agrees with (and, for a built-in ``cell`` with gates,
    only those that stack its gates in the same order)."""
    shape = {"row": "x W (row convention)", "column": "W x (column convention)"}[layout.convention]
    parts = [shape, f"gates {' '.join(layout.gate_order)}" if layout.gate_order else "",
             {"xh": "one W over [x, h]", "hx": "one W over [h, x]", "separate": ""}[layout.stacking],
             "vectors as columns" if layout.vectors == "columns" else "",
             "batch-major (N, T, D)" if layout.batch_major else "time-major (T, N, D)", f"{layout.bias_shape} bias"]
    added = (f"; a forget bias {layout.forget_bias:g} added to the gate f inside the forward (symrnn's b_f is "
             f"your b_f + {layout.forget_bias:g})" if layout.forget_bias else "")
    same = [name for name, preset in LAYOUTS.items()
            if (preset.convention, preset.vectors, preset.batch_major, preset.stacking, preset.bias_shape)
            == (layout.convention, layout.vectors, layout.batch_major, layout.stacking, layout.bias_shape)
            and (cell is None or not layout.gate_order or _preset_gates(name, cell) == tuple(layout.gate_order))]
    return ", ".join(p for p in parts if p) + (f" (as {' and '.join(same)})" if same else "") + added


def _preset_gates(preset, cell):
    try:
        return tuple(layout_for(preset, cell).gate_order)
    except SymRNNError:
        return None


def _signature(roles, forward_returns):
    back = tuple({"x": "dx", "h0": "dh0", "c0": "dc0"}.get(r, r) for r in roles)
    return Signature(roles, forward_returns, ("dh", "cache"), back)


def found_as(name, layout, roles, forward, how, N, cell=None):
    returns = _returns(forward, roles, layout, cell or name, N)
    layout_text = describe_layout(layout, name if how == "built-in" else None)
    text = (f"the forward computes the built-in cell {name!r}; layout: {layout_text}" if how == "built-in"
            else f"the forward computes no built-in cell; traced from the code: {layout_text}")
    return Found(cell or name, layout, _signature(roles, returns), how, text, N or PROBE["N"])


def _returns(forward, roles, layout, cell, N):
    """The forward's returns, by role: h, and the cache (and c) when it returns a tuple."""
    from ..models.model import Model

    model = _probe_model(cell) if isinstance(cell, str) else Model(cell, D=PROBE["D"], H=PROBE["H"], loss="upstream")
    params, x, h0 = _probe(model, N=N)
    out = _call_forward(forward, roles, layout, cell, params, x, h0, (), whole=True)
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
    from ..models.model import Model

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
        hint = ("the forward keeps a state of its own (such as an LSTM's c, started at zero inside it), which one "
                "step cannot show: give its step function (a *_step_forward beside the forward, taking and returning "
                "every state) or declare the cell" if step_forward is None else
                "a branch on values, or a state the step does not return?")
        raise TracingError(f"the cell traced from {what} does not reproduce the forward on numbers: {hint}")
    found = found_as(cell.name, lay, roles, forward, "traced", N, cell=cell)
    arrays = ", ".join(lay.names[r] for r in ("Wx", "Wh", "W", "b") if r in lay.names)
    found.text += (f"; its equations (U_g, W_g, b_g: the blocks of {arrays} in their order, one per gate g):\n"
                   if G > 1 else "; its equations:\n") + equations_text(cell)
    return found



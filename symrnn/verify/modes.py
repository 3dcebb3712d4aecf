"""Running user code on a problem: the three ways to plug an implementation in.

Each adapter converts a canonical :class:`~symrnn.verify.problems.Problem` into
the user's layout and calling convention, calls the user's code through
:func:`~symrnn.verify.hygiene.call`, and converts what comes back into
symrnn's canonical names: a :class:`UserRun`.
"""
from __future__ import annotations

import contextlib

from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, ShapeError, UnknownNameError, UserCodeError
from .hygiene import call, compare_runs, snapshot
from .problems import states_read_back
from .signatures import is_parameter_role


@dataclass
class UserRun:
    states: dict = field(default_factory=dict)  # state -> (T, N, size) as the user's forward returned them
    loss: float | None = None
    grads: dict = field(default_factory=dict)  # canonical keys, for what the user returned
    user_grads: dict = field(default_factory=dict)  # the user's own names -> arrays (as returned)
    dtypes: set = field(default_factory=set)
    raw: object = None  # the backward's outputs, for the second-call comparison
    first_call: object = None  # the first of two calls on the same inputs (run_twice), judged too


def as_tuple(out, expected, what):
    if len(expected) == 1:
        return (out,)
    if not isinstance(out, (tuple, list)) or len(out) != len(expected):
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else f"a {type(out).__name__}"
        shown = [f"d{r}" if is_parameter_role(r) and "dx" in expected else r for r in expected]
        raise UserCodeError(f"{what} returned {got}; expected {len(expected)}: ({', '.join(shown)}).")
    return tuple(out)


def dtype_of(value, dtypes):
    if isinstance(value, np.ndarray) and (np.issubdtype(value.dtype, np.floating) or value.dtype.name == "bfloat16"):
        dtypes.add(value.dtype.name)  # bfloat16: ml_dtypes' NumPy type, from PyTorch and JAX code
    elif isinstance(value, (np.floating,)):
        dtypes.add(np.dtype(type(value)).name)


def not_an_array(value) -> str | None:
    """What ``value`` is when it is not an array of numbers (``"a str ('db')"``, ``"None"``), else None."""
    if value is None:
        return "None"
    if isinstance(value, (str, bytes)):
        return f"a {type(value).__name__} ({value[:40]!r})"
    if hasattr(value, "detach") or isinstance(value, (int, float, complex)):
        return None  # a tensor (a framework's code), a Python number
    try:
        dtype = np.asarray(value).dtype
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"
    if dtype.kind in "biufc" or dtype.name == "bfloat16":  # bfloat16: ml_dtypes' NumPy type
        return None
    return f"an array of {dtype}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"


def check_gradient(name, value, what, shape=None):
    """Refuse a gradient that is not an array of numbers, saying what it is and what is expected."""
    got = not_an_array(value)
    if got is not None:
        expected = f"a floating-point array of shape {tuple(shape)}" if shape is not None else "a floating-point array"
        raise UserCodeError(f"The gradient {name} returned by {what} is {got}, not an array of numbers; expected "
                            f"{expected} (one entry per entry of what it is the gradient of).")


def state_of_role(model, role):
    """The state an initial-state role names (``h0``/``dh0``, ``c0``/``dc0``): ``h``, ``c``; for a cell
    without a state ``h``, ``h0`` is its output state's (as the role ``h`` is its output), when the cell
    reads it back.  A role naming no such state is refused, saying what to pass instead."""
    state = role[1:-1] if role.startswith("d") else role[:-1]
    if state in model.state_names:
        return state
    cell, states = model.cell.name, ", ".join(model.state_names)
    if state == "h" and model.out in states_read_back(model.cell):
        return model.out
    if state == "h":
        raise UnknownNameError(f"The signature passes {role!r}, the initial value of the output state, but the cell "
                               f"{cell!r} never reads its output state {model.out!r} back (its states: {states}): "
                               f"pass every initial state as a dict with the role 's0' (its gradients as 'ds0').")
    raise UnknownNameError(f"The signature passes {role!r}, but the cell {cell!r} has no state {state!r} (its states: "
                           f"{states}): drop {role!r} from the signature, or pass every initial state as a dict "
                           f"with the role 's0' (its gradients as 'ds0').")


class Adapter:
    """What the three modes share: the model, the layout, the signature."""

    def __init__(self, model, layout, signature):
        self.model, self.layout, self.signature = model, layout, signature
        self.cell_name = model.cell.name
        self.cell = model.cell  # what a layout reads the gates of (a user's cell has its own)

    def user_params(self, problem):
        return self.layout.to_user(self.cell, problem.params)

    def param_value(self, role, user_params):
        name = self.layout.names[role]
        return tuple(user_params[n] for n in name) if isinstance(name, tuple) else user_params[name]

    def user_names(self, roles: dict) -> dict:
        """``{user name: array}`` from ``{role: array or tuple of arrays (one per gate)}``."""
        out = {}
        for r, v in roles.items():
            name = self.layout.names[r]
            if isinstance(name, tuple):
                if not isinstance(v, (tuple, list)) or len(v) != len(name):
                    raise UserCodeError(f"The gradient of {', '.join(name)} must come as {len(name)} arrays, one "
                                        f"per gate; got {type(v).__name__}.")
                out.update(zip(name, v))
            else:
                out[name] = v
        return out

    def user_param_shapes(self) -> dict:
        """``{user name: shape}`` of the parameters in the user's layout (what their gradients are shaped)."""
        zeros = {k: np.zeros(s) for k, s in self.model.param_shapes.items()}
        try:
            return {k: np.shape(v) for k, v in self.layout.to_user(self.cell, zeros).items()}
        except (ShapeError, ParameterError, KeyError):
            return {}

    @staticmethod
    def record(run, user_name, value, key, convert, what="the user's code", shape=None):
        """Keep the user's gradient ``value`` (under ``user_name``, for judging) and its canonical form
        ``convert(value)`` (under ``key``); a shape that does not fit is the user's code's error."""
        check_gradient(user_name, value, what, shape)
        try:
            run.grads[key] = convert(value)
        except ShapeError as exc:
            raise UserCodeError(str(exc)) from None
        run.user_grads[user_name] = value

    def grads_from_dict(self, grads, what, dtypes) -> tuple:
        """``(canonical gradients, the user's gradients by name)`` from a dict keyed by symrnn's names
        (a layout with ``native`` set); ``dx``, ``dh0``, ``dc0`` in it are left to the caller."""
        if not getattr(self.layout, "native", False):
            raise UserCodeError(f"{what} returned grads as a dict, which only layout NATIVE (symrnn's names) "
                                f"reads in layer mode; return the gradients by role (dWx, dWh, db) instead.")
        if not isinstance(grads, dict):
            raise UserCodeError(f"{what} returned grads of type {type(grads).__name__}; expected a dict keyed "
                                f"by symrnn's names {sorted(self.model.cell.params)}.")
        params = {k: v for k, v in grads.items() if k not in ("dx", "dh0", "dc0")}
        shapes = self.user_param_shapes()
        for k, v in params.items():
            check_gradient(f"grads[{k!r}]", v, what, shapes.get(k))
            dtype_of(v, dtypes)
        try:
            canonical = self.layout.from_user(self.cell, params, self.model.sizes, gradients=True)
        except (ShapeError, ParameterError) as exc:
            raise UserCodeError(f"The gradients {what} returned do not fit: {exc}") from None
        return canonical, {"d" + k: v for k, v in params.items()}

    def grads_from_roles(self, values: dict, sizes, what="the user's code") -> dict:
        """Canonical gradients from ``{role: array}`` of the parameter roles the user returned."""
        names = self.layout.names
        missing = [r for r in names if r not in values and (r not in ("V", "V_b") or sizes.get("K"))]
        if missing:
            raise UserCodeError(f"The user's code returned no gradient for {missing} ({[names[r] for r in missing]}); "
                                f"the signature must list every parameter's gradient.")
        user = self.user_names(values)
        shapes = self.user_param_shapes()
        for n, v in user.items():
            check_gradient(f"d{n}", v, what, shapes.get(n))
        try:
            return self.layout.from_user(self.cell, user, sizes, gradients=True)
        except ShapeError as exc:
            order = ", ".join(f"d{n}" if isinstance(n, str) else "/".join(f"d{m}" for m in n) for n in
                              (names[r] for r in values))
            raise UserCodeError(f"A gradient the user's code returned has the wrong shape: {exc} (the gradient "
                                f"returned in that parameter's place; the backward must return the parameters' "
                                f"gradients in the order {order}: two swapped gradients look like this)") from None


def step_name(state) -> str:
    """The name step mode gives the gradient of the previous state ``state`` its backward returns (the
    roles ``dh0``, ``dc0``): ``dprev_h``, ``dprev_c``, as CS231n's step functions call them."""
    return f"dprev_{state}"


class LayerFunctions(Adapter):
    """Layer mode (``rnn_forward``/``rnn_backward``) and step mode (``*_step_forward/backward``)."""

    def __init__(self, model, layout, signature, forward, backward, step=False):
        super().__init__(model, layout, signature)
        self.forward, self.backward, self.step = forward, backward, step

    def _sequence_in(self, X):
        return self.layout.state_to_user(X[0]) if self.step else self.layout.sequence_to_user(X)

    def _sequence_out(self, value, what, size, T, N):
        if self.step:
            return self.layout.state_from_user(value, what, (N, size))[None]
        return self.layout.sequence_from_user(value, what, (T, N, size))

    def run(self, problem, findings, second=False):
        sig, L, model = self.signature, self.layout, self.model
        T, N, D = problem.x.shape
        H = model.sizes["H"]
        user_params = self.user_params(problem)
        data = {"x": self._sequence_in(problem.x), "params": user_params,
                "s0": {s: L.state_to_user(v) for s, v in problem.h0.items()}}  # every state, symrnn's names
        data.update({r: L.state_to_user(problem.h0[state_of_role(model, r)]) for r in ("h0", "c0")
                     if r in sig.forward_args})
        args = [data[r] if r in data else self.param_value(r, user_params) for r in sig.forward_args]
        run = UserRun()
        what = f"{getattr(self.forward, '__name__', 'forward')}(...)"
        out = as_tuple(call(self.forward, args, sig.forward_args, what, problem, findings), sig.forward_returns, what)
        out = dict(zip(sig.forward_returns, out))
        returned = {s: out[s] for s in ("h", "c") if s in out}
        if "h" in returned and model.out != "h":  # the role h is the output state (LRU's out)
            returned[model.out] = returned.pop("h")
        returned.update(self._states_dict(out.get("states"), what) if "states" in out else {})
        for s, value in returned.items():
            dtype_of(value, run.dtypes)
            try:
                run.states[s] = self._sequence_out(value, f"the {s} returned by {what}", model.state_size(s), T, N)
            except ShapeError as exc:
                raise UserCodeError(str(exc)) from None
        upstream = {"dh": (L.state_to_user(problem.targets[-1]) if self.step
                           else L.sequence_to_user(problem.targets)), "cache": out.get("cache")}
        if "dc" in sig.backward_args:
            upstream["dc"] = L.state_to_user(problem.final_grads["c"])
        for role, s in (("dh_n", "h"), ("dc_n", "c")):  # gradients arriving at the final states (or None)
            g = (problem.final_grads or {}).get(s) if role in sig.backward_args else None
            upstream[role] = None if g is None else L.state_to_user(g)
        bargs = [upstream[r] for r in sig.backward_args]
        what = f"{getattr(self.backward, '__name__', 'backward')}(...)"
        names = [r if r != "cache" else "cache" for r in sig.backward_args]
        watched = [a for a, r in zip(bargs, sig.backward_args) if r != "cache"]
        bout = call(self.backward, bargs, names, what, problem, findings, watch=bool(watched))
        bout = dict(zip(sig.backward_returns, as_tuple(bout, sig.backward_returns, what)))
        run.raw = bout
        for v in bout.values():
            dtype_of(v, run.dtypes)
        if "grads" in bout:  # a dict in the layout's names (symrnn's own: NATIVE)
            run.grads, run.user_grads = self.grads_from_dict(bout["grads"], what, run.dtypes)
        else:
            roles = {r: v for r, v in bout.items() if is_parameter_role(r)}
            run.grads = self.grads_from_roles(roles, model.sizes, what)
            run.user_grads = {"d" + n: v for n, v in self.user_names(roles).items()}
        if "dx" in bout:
            self.record(run, "dx", bout["dx"], model.input_name,
                        lambda v: self._sequence_out(v, f"dx returned by {what}", D, T, N), what,
                        np.shape(data["x"]))
        self._record_initial_state_grads(run, bout, data, what, N)
        return run

    def _record_initial_state_grads(self, run, bout, data, what, N):
        """The gradients of the initial states the backward returned: by role (``dh0``, ``dc0``) or by name
        (``ds0``); a step's are named ``dprev_h``, ``dprev_c`` (the message leaving h_{t-1}), as the step
        names them."""
        L, model = self.layout, self.model
        for key in ("dh0", "dc0"):
            if key in bout:
                state = state_of_role(model, key)
                name = step_name(state) if self.step else key
                self.record(run, name, bout[key], model.initial_state_key(state),
                            lambda v, name=name, s=state: L.state_from_user(v, f"{name} returned by {what}",
                                                                            (N, model.state_size(s))), what,
                            np.shape(data.get(key[1:])) if key[1:] in data else None)
        for state, value in self._states_dict(bout.get("ds0", {}), what).items():  # dL/d(initial state), by name
            self.record(run, step_name(state) if self.step else f"d{state}0", value, model.initial_state_key(state),
                        lambda v, s=state: L.state_from_user(v, f"ds0[{s!r}] returned by {what}",
                                                             (N, model.state_size(s))))

    def _states_dict(self, value, what):
        """A dict keyed by the cell's state names (roles ``states``, ``ds0``), checked."""
        names = self.model.state_names
        if not isinstance(value, dict) or not set(value) <= set(names):
            got = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise UserCodeError(f"{what} returned {got} where a dict keyed by the cell's states {names} "
                                f"(or some of them) is expected.")
        return dict(value)


class LayerObject(Adapter):
    """Layer mode for layer objects (Deep Learning from Scratch 2): ``make(Wx, Wh, b)`` builds a layer
    with ``forward(xs) -> hs``, ``backward(dhs) -> dxs``, gradients in ``layer.grads`` (same order as
    ``layer.params``), the initial state set by ``set_state`` and ``dL/dh0`` in ``layer.dh``."""

    def __init__(self, model, layout, signature, make, param_roles=("Wx", "Wh", "b")):
        super().__init__(model, layout, signature)
        self.make, self.param_roles = make, param_roles

    def run(self, problem, findings, second=False):
        L, model = self.layout, self.model
        T, N, D = problem.x.shape
        H = model.sizes["H"]
        user_params = self.user_params(problem)
        args = [self.param_value(r, user_params) for r in self.param_roles]
        layer = call(self.make, args, self.param_roles, f"{getattr(self.make, '__name__', 'make')}(...)", problem,
                     findings)
        if getattr(layer, "stateful", None) is False:
            layer.stateful = True
        states = [L.state_to_user(problem.h0[s]) for s in model.state_names]
        if not callable(getattr(layer, "set_state", None)):
            raise UserCodeError(
                f"The layer {type(layer).__name__} has no set_state(h) method: the verifier sets the initial "
                f"state with it (Deep Learning from Scratch 2: def set_state(self, h): self.h = h, and the "
                f"layer made with stateful=True) and reads dL/dh0 from layer.dh.")
        layer.set_state(*states)
        x = L.sequence_to_user(problem.x)
        run = UserRun()
        hs = call(layer.forward, [x], ["xs"], "layer.forward(xs)", problem, findings)
        dtype_of(hs, run.dtypes)
        try:
            run.states["h"] = L.sequence_from_user(hs, "the hs returned by layer.forward", (T, N, H))
        except ShapeError as exc:
            raise UserCodeError(str(exc)) from None
        dxs = call(layer.backward, [L.sequence_to_user(problem.targets)], ["dhs"], "layer.backward(dhs)", problem,
                   findings)
        grads = list(getattr(layer, "grads", []))
        if len(grads) != len(self.param_roles):
            raise UserCodeError(f"layer.grads has {len(grads)} arrays; expected {len(self.param_roles)} "
                                f"({', '.join(self.param_roles)}), in the order of layer.params.")
        run.raw = {"dx": dxs, "grads": grads, "dh0": getattr(layer, "dh", None)}
        for v in [dxs] + grads:
            dtype_of(v, run.dtypes)
        roles = dict(zip(self.param_roles, grads))
        run.grads = self.grads_from_roles(roles, model.sizes, "layer.backward(dhs) (in layer.grads)")
        run.user_grads = {"d" + L.names[r]: v for r, v in roles.items()}
        self.record(run, "dx", dxs, model.input_name,
                    lambda v: L.sequence_from_user(v, "dxs returned by layer.backward", (T, N, D)))
        if getattr(layer, "dh", None) is not None:
            self.record(run, "dh0", layer.dh, "h0", lambda v: L.state_from_user(v, "layer.dh", (N, H)))
        return run


class LossFunction(Adapter):
    """Loss mode: the user's function returns the loss and gradients for a batch.

    Parameters reach it as a dict argument (role ``params``), as positional
    arguments (their roles), or as module globals (``module``: min-char-rnn's
    ``lossFun`` reads ``Wxh``, ``Whh`` ... from its module; set before each call
    and restored after).
    """

    def __init__(self, model, layout, signature, fn, module=None):
        super().__init__(model, layout, signature)
        self.fn = fn
        uses_params = "params" in signature.forward_args or any(is_parameter_role(r) for r in signature.forward_args)
        # the namespace the function reads its globals from (a module loaded from a file included)
        self.namespace = vars(module) if module is not None else (None if uses_params else fn.__globals__)

    def run(self, problem, findings, second=False):
        user_params = self.user_params(problem)
        args = self._arguments(problem, user_params)
        what = f"{getattr(self.fn, '__name__', 'loss')}(...)"
        with self._globals(user_params):
            out = call(self.fn, args, self.signature.forward_args, what, problem, findings)
        returns = self.signature.forward_returns
        return self._read(dict(zip(returns, as_tuple(out, returns, what))), user_params, problem, what)

    def _arguments(self, problem, user_params):
        """The user's function's arguments, in its signature's order and the layout's form."""
        L, model = self.layout, self.model
        targets = np.asarray(problem.targets)
        data = {"x": lambda: L.sequence_to_user(problem.x),
                "h0": lambda: L.state_to_user(problem.h0[state_of_role(model, "h0")]),
                "c0": lambda: L.state_to_user(problem.h0[state_of_role(model, "c0")]), "ignored": lambda: None,
                "params": lambda: user_params,
                "y": lambda: (L.sequence_to_user(targets) if targets.ndim == 3
                              else np.swapaxes(targets, 0, 1) if L.batch_major else targets),
                "mask": lambda: None if problem.mask is None else (problem.mask.T if L.batch_major else problem.mask),
                "x_ids": lambda: [int(i) for i in np.argmax(problem.x[:, 0], axis=-1)],
                "y_ids": lambda: [int(i) for i in targets[:, 0]],
                "k": lambda: _truncation(problem, "k"), "k1": lambda: _truncation(problem, "k1"),
                "k2": lambda: _truncation(problem, "k2")}
        return [data[r]() if r in data else user_params[L.names[r]] for r in self.signature.forward_args]

    @contextlib.contextmanager
    def _globals(self, user_params):
        """The parameters as globals of the function's module while it runs (min-char-rnn reads them
        so); the module's own values are put back after."""
        saved, missing = {}, object()
        if self.namespace is not None:
            for name, value in user_params.items():
                saved[name] = self.namespace.get(name, missing)
                self.namespace[name] = value
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is missing:
                    del self.namespace[name]
                else:
                    self.namespace[name] = value

    def _read(self, out, user_params, problem, what):
        """The :class:`UserRun` of what the function returned: loss, gradients by role, dx, dh0, dc0."""
        L, model = self.layout, self.model
        T, N, D = problem.x.shape
        H = model.sizes["H"]
        run = UserRun(raw=out)
        try:
            run.loss = float(out["loss"]) if "loss" in out else None
        except (TypeError, ValueError):
            raise UserCodeError(f"{what} returned a loss of type {type(out['loss']).__name__}; expected a number.")
        if "grads" in out and getattr(L, "native", False):
            run.grads, run.user_grads = self.grads_from_dict(out["grads"], what, run.dtypes)
            roles = {}
            extra = {k: v for k, v in out["grads"].items() if k in ("dx", "dh0", "dc0")}
            extra.update({r: v for r, v in out.items() if r in ("dx", "dh0", "dc0")})
        elif "grads" in out:
            if not isinstance(out["grads"], dict):
                raise UserCodeError(f"{what} returned grads of type {type(out['grads']).__name__}; expected a dict "
                                    f"keyed by the layout's names {sorted(user_params)}.")
            by_name = {v: r for r, v in L.names.items()}
            roles = {by_name[k]: v for k, v in out["grads"].items() if k in by_name}
            extra = {k: v for k, v in out["grads"].items() if k not in by_name}
            extra.update({r: v for r, v in out.items() if r in ("dx", "dh0", "dc0")})
        else:
            roles = {r: v for r, v in out.items() if is_parameter_role(r)}
            extra = {r: v for r, v in out.items() if r in ("dx", "dh0", "dc0")}
        for v in list(roles.values()) + list(extra.values()):
            dtype_of(v, run.dtypes)
        if not getattr(L, "native", False):
            run.grads = self.grads_from_roles(roles, model.sizes, what)
            run.user_grads = {"d" + L.names[r]: v for r, v in roles.items()}
        if "dx" in extra:
            self.record(run, "dx", extra["dx"], model.input_name, lambda v: L.sequence_from_user(v, "dx", (T, N, D)),
                        what)
        if "dh0" in extra or "h0" in extra:
            key = model.initial_state_key(state_of_role(model, "h0"))
            self.record(run, "dh0", extra.get("dh0", extra.get("h0")), key,
                        lambda v: L.state_from_user(v, "dh0", (N, H)), what)
        if "dc0" in extra and "c" in model.state_names:
            self.record(run, "dc0", extra["dc0"], model.initial_state_key("c"),
                        lambda v: L.state_from_user(v, "dc0", (N, H)), what)
        return run


def loss_and_grads_returned(out, what, keys) -> tuple:
    """``(run, grads)`` from what a loss function returned, ``(loss, grads)``: the :class:`UserRun`
    holding the loss, and the grads as a dict (``keys`` says how it is keyed, for the message)."""
    loss, grads = as_tuple(out, ("loss", "grads"), what)
    run = UserRun(raw={"loss": loss, "grads": grads})
    try:
        run.loss = float(loss)
    except (TypeError, ValueError):
        raise UserCodeError(f"{what} returned {type(loss).__name__} as its loss; expected (loss, grads).") from None
    if not isinstance(grads, dict):
        raise UserCodeError(f"{what} returned grads of type {type(grads).__name__}; expected a dict keyed like "
                            f"{keys}.")
    return run, dict(grads)


def checked_gradients(user, expected, what, refuse_unknown=False) -> dict:
    """The user's gradient dict as float arrays in the order of ``expected`` (name -> shape): a missing
    key, a wrong shape (or, with ``refuse_unknown``, a key that names no parameter) is the user's
    code's error."""
    missing = sorted(set(expected) - set(user))
    if missing:
        strays = sorted(set(user) - set(expected))
        raise UserCodeError(f"{what} returned no gradient for {missing}"
                            + (f" but one under {strays}, which names no parameter (a misspelt key?)" if strays else "")
                            + f"; the grads dict has one entry per parameter ({', '.join(sorted(expected))}).")
    unknown = sorted(set(user) - set(expected)) if refuse_unknown else []
    if unknown:
        raise UserCodeError(f"{what} returned gradients under {unknown}, which name no parameter; the keys "
                            f"are {', '.join(sorted(expected))}.")
    for k, shape in expected.items():
        if np.shape(user[k]) != shape:
            raise UserCodeError(f"{what}: the gradient for {k!r} has shape {np.shape(user[k])}, expected "
                                f"{shape} (the shape of params[{k!r}]).")
    return {k: np.asarray(user[k], dtype=float) for k in expected}


def _truncation(problem, role):
    tr = problem.truncation
    if tr is None:
        raise UserCodeError(f"The signature passes the truncation length {role!r}, but no truncation was declared: "
                            f"pass truncation=k (or (k1, k2)) to verify_loss.")
    if role == "k" and tr.k1 != tr.k2:
        raise UserCodeError(f"The signature passes one truncation length 'k', but {tr} has k1 != k2: name the "
                            f"roles 'k1' and 'k2' in the signature.")
    return {"k": tr.k1, "k1": tr.k1, "k2": tr.k2}[role]


def run_twice(adapter, problem, findings, what):
    """Run the user's code twice on copies: the second run shows nondeterminism and reused buffers."""
    first = adapter.run(problem, findings)
    kept = snapshot(first.raw)
    first.grads = {k: np.array(v) for k, v in first.grads.items()}  # copies: buffers may be reused
    first.states = {k: np.array(v) for k, v in first.states.items()}
    second = adapter.run(problem, [])
    compare_runs(first.raw, second.raw, kept, what, findings)
    second.first_call = first  # judged too when it returned other numbers (symrnn.verify.cases)
    return second  # its arrays are the latest, should the code reuse its buffers

"""Code written in symrnn's own names (the layout ``"symrnn"``, :data:`symrnn.models.layouts.NATIVE`):
its calling convention read from the code, so that ``symrnn verify FILE:backward --cell lru --layout
symrnn`` needs no :class:`~symrnn.verify.Signature`.

The forward takes, in any order, the inputs ``x`` (time-major), the initial state (``h0``; ``c0``
beside it for a cell state; or ``s0``, a dict of every initial state by the cell's state names) and
``params`` (a dict by symrnn's names); it returns the output sequence, the cache last, and between
them (forwards that return three things) ``c`` when it takes ``c0``, else ``states`` (a dict by state
name).  The backward takes the upstream gradient and the cache (``dc`` too when named so) and returns
the gradients of the forward's data arguments in their order, ``grads`` (a dict) for ``params``.
"""
from __future__ import annotations

import inspect

import numpy as np

from ..errors import UnknownNameError
from ..models.layouts import NATIVE
from .auto import ROLE_NAMES
from .problems import in_domain
from .signatures import Signature

#: the names the native layout is known by (the API's ``layout="symrnn"``, the layout's own name)
NATIVE_NAMES = ("symrnn", "native")

_FORWARD_NAMES = {"s0": ("s0", "states0", "state0", "s_0", "initial_states", "states"),
                  "params": ("params", "p", "weights", "parameters", "theta", "param")}
_BACKWARD_NAMES = {"dh": ("dh", "dy", "dout", "dhs", "grad_h", "dh_all", "g", "grad"), "dc": ("dc", "dcs"),
                   "cache": ("cache", "ctx", "saved", "memo")}
_GRADIENT = {"x": "dx", "h0": "dh0", "c0": "dc0", "s0": "ds0", "params": "grads"}


def is_native(layout) -> bool:
    """Whether ``layout`` (a name or a Layout) is symrnn's own names."""
    if isinstance(layout, str):
        return layout.strip().lower() in NATIVE_NAMES
    return bool(getattr(layout, "native", False))


def native_signature(forward, backward, model) -> Signature:
    """The :class:`Signature` of a native-layout forward and backward, read from their argument names
    and from what the forward returns on a small problem of ``model`` (see the module)."""
    f_roles = _roles(forward, {**{r: ROLE_NAMES[r] for r in ("x", "h0", "c0")}, **_FORWARD_NAMES}, "forward",
                     "x, h0 (c0) or s0, params")
    if "x" not in f_roles or "params" not in f_roles:
        raise UnknownNameError(f"{_name(forward)} takes {list(f_roles)}: a forward in symrnn's names takes x, the "
                               f"initial state (h0, or s0 for every state as a dict) and params; name its arguments "
                               f"so, or pass signature=symrnn.verify.Signature(...).")
    b_roles = _roles(backward, _BACKWARD_NAMES, "backward", "dh, cache")
    returned = _returned(forward, f_roles, model)
    if returned <= 2:
        f_returns = ("h", "cache")[:max(returned, 1)]
    else:
        middle = "c" if "c0" in f_roles else "states"
        f_returns = ("h", middle) + ("ignored",) * (returned - 3) + ("cache",)
    return Signature(tuple(f_roles), f_returns, tuple(b_roles), tuple(_GRADIENT[r] for r in f_roles))


def takes_native(forward) -> bool:
    """Whether ``forward``'s argument names are those of code in symrnn's names (``params`` among them)."""
    try:
        roles = _roles(forward, {**{r: ROLE_NAMES[r] for r in ("x", "h0", "c0")}, **_FORWARD_NAMES}, "forward", "")
    except UnknownNameError:
        return False
    return "x" in roles and "params" in roles


def _roles(fn, names, what, expected):
    try:
        parameters = [p for p in inspect.signature(fn).parameters.values()
                      if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    except (TypeError, ValueError):
        raise UnknownNameError(f"Cannot read the arguments of {fn!r}; pass signature=symrnn.verify.Signature(...).")
    by_name = {n: role for role, spelled in names.items() for n in spelled}
    roles = [by_name.get(p.name.lower()) for p in parameters]
    if None in roles or len(set(roles)) != len(roles):
        unknown = [p.name for p, r in zip(parameters, roles) if r is None]
        raise UnknownNameError(
            f"Cannot tell the roles of the {what} {_name(fn)}'s arguments {[p.name for p in parameters]}"
            + (f" ({unknown} are not names symrnn knows)" if unknown else " (two name the same thing)")
            + f" in symrnn's layout: name them {expected}, or pass signature=symrnn.verify.Signature(...).")
    return roles


def _returned(forward, roles, model):
    """How many things the forward returns on a small problem (2 when it fails there: the verification
    itself then reports the failure, with the case)."""
    rng = np.random.default_rng(0)
    N, T = 1, 2
    states = in_domain(model, {s: 0.1 * rng.standard_normal((N, model.state_size(s))) for s in model.state_names})
    data = {"x": 0.5 * rng.standard_normal((T, N, model.sizes["D"])), "params": model.init_params(0),
            "s0": states, "h0": states.get("h"), "c0": states.get("c")}
    try:
        with np.errstate(all="ignore"):
            out = forward(*[data[r] for r in roles])
    except (Exception, SystemExit):  # noqa: BLE001 - the user's code: the verification reports its failure
        return 2
    return len(out) if isinstance(out, (tuple, list)) else 1


def _name(fn):
    return getattr(fn, "__name__", "the function")


__all__ = ["NATIVE", "NATIVE_NAMES", "is_native", "native_signature", "takes_native"]

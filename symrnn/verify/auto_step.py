"""What a hand-written *step* computes: the layer finder of :mod:`symrnn.verify.auto`, run on the step.

A step ``step_forward(x, prev_h[, prev_c], *weights) -> (next_h[, next_c], cache)`` is run over the
time steps of a sequence in each layout its arguments allow; the layer this makes is given to
:func:`~symrnn.verify.auto.find`, which matches it against every built-in cell (and gate order) or
traces the step. What is found is the cell and the layout; the calling convention is the step's own:
its arguments by their names, its returns ``next_h`` (and ``next_c``, when it takes ``prev_c``) and
a cache, and a backward ``(dnext_h[, dnext_c], cache) -> (dx, dprev_h[, dprev_c], *dweights)``.
"""
from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np

from ..errors import SymRNNError, UnknownNameError
from .auto import Found, describe_layout, find, forward_roles, layouts_for
from .signatures import Signature, gate_role
from .trace import TracingError


def find_step(step_forward, *, cell=None, layout=None) -> Found:
    """What ``step_forward`` computes, found as :func:`~symrnn.verify.auto.find` finds a layer's.

    ``cell`` (a built-in name) and ``layout`` (a :class:`~symrnn.models.layouts.Layout`) narrow the
    search. Raises :class:`~symrnn.verify.trace.TracingError`
    (the step computes no cell that can be found or traced) or
    :class:`~symrnn.errors.UnknownNameError` (its arguments' roles cannot be told from their names)."""
    roles = forward_roles(step_forward)
    if any(gate_role(r) for r in roles):
        raise UnknownNameError(f"The step takes one array per gate (arguments read as {list(roles)}): such code is "
                               f"found in layer mode only; verify its layer, or give --cell and --layout.")
    names = [p.name for p in inspect.signature(step_forward).parameters.values()
             if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    errors = []
    for candidate in [layout] if layout is not None else layouts_for(roles, dict(zip(roles, names))):
        layer = _as_layer(step_forward, roles, candidate)
        try:
            found = find(layer, step_forward=step_forward, cell=cell, layout=candidate)
        except (TracingError, SymRNNError) as exc:
            errors.append(exc)
            continue
        layout_text = describe_layout(found.layout, found.cell if found.how == "built-in" else None)
        text = (f"the step computes the built-in cell {found.cell!r}; layout: {layout_text}" if found.how == "built-in"
                else f"the step computes no built-in cell; traced from the code: {layout_text}")
        return replace(found, signature=step_signature(roles), text=text)
    raise errors[0] if errors else TracingError("The step ran in no layout symrnn knows: give --cell and --layout.")


def step_signature(roles) -> Signature:
    """The calling convention of a step with these argument roles (see the module)."""
    cell_state = "c0" in roles
    returns = ("h", "c", "cache") if cell_state else ("h", "cache")
    upstream = ("dh", "dc", "cache") if cell_state else ("dh", "cache")
    back = tuple({"x": "dx", "h0": "dh0", "c0": "dc0"}.get(r, r) for r in roles)
    return Signature(tuple(roles), returns, upstream, back)


def _as_layer(step_forward, roles, layout):
    """A layer forward (the same arguments) that runs ``step_forward`` over the steps of its ``x`` read
    in ``layout``; it returns the ``h`` of every step in ``layout`` and no cache."""
    probe = np.empty((2, 3, 5))
    user = layout.sequence_to_user(probe).shape
    to_canonical = tuple(user.index(n) for n in probe.shape)  # (T, N, F) from the user's axes

    def layer(*args):
        given = dict(zip(roles, args))
        X = np.asarray(given["x"]).transpose(to_canonical)
        state = {"h0": given["h0"], "c0": given.get("c0")}
        hs = []
        for t in range(X.shape[0]):
            step_args = [layout.state_to_user(X[t]) if r == "x" else state[r] if r in state else given[r]
                         for r in roles]
            out = step_forward(*step_args)
            out = out if isinstance(out, (tuple, list)) else (out,)
            state["h0"] = out[0]
            if "c0" in roles:
                state["c0"] = out[1]
            hs.append(np.asarray(out[0]).T if layout.vectors == "columns" else np.asarray(out[0]))
        return layout.sequence_to_user(np.stack(hs)), None

    layer.__signature__ = inspect.signature(step_forward)
    layer.__name__ = getattr(step_forward, "__name__", "step")
    return layer

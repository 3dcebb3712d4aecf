"""A bidirectional layer's input gradient put together in the wrong time order.

The backward direction of a bidirectional layer reads the sequence reversed; code that runs it on
``x[::-1]`` gets that direction's ``dx`` in reversed time too and must reverse it back before adding
it to the forward direction's.  Left unreversed, only ``dx`` is wrong (every weight's gradient is
right), which the generic placement reads as a local derivative.  :func:`time_order_of_dx` confirms
the mistake by a fit: one more call of the user's code on a probe case (one sequence, ``T <= D``
steps), whose exact input gradient is split into the two directions' shares (each direction's input
weights' gradient ``dU = sum_t da_t x_t^T`` gives its pre-activation gradients ``da_t`` when the
``x_t`` are independent: ``T <= D``); the user's ``dx`` must equal the shares put together in one of
the wrong time orders to within rounding, else nothing is claimed.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .mutants import Mutation
from .problems import Plan, exact

#: the wrong time orders tried: (name, what it is, the shares put together as the code does)
ORDERS = (
    ("backward-direction-dx-not-reversed",
     "the backward direction's dx is not reversed in time: that direction reads x reversed, so its "
     "input gradient comes out in reversed time and must be flipped back (dx_bwd[::-1]) before it is added "
     "to the forward direction's; every other gradient is right",
     lambda f, b: f + b[::-1]),
    ("forward-direction-dx-reversed",
     "the forward direction's dx is reversed in time (flipped where the backward direction's belongs); "
     "every other gradient is right", lambda f, b: f[::-1] + b),
    ("input-gradient-reversed-in-time",
     "dx is reversed in time (both directions' shares flipped); every other gradient is right",
     lambda f, b: f[::-1] + b[::-1]),
)
TIME_ORDERS = frozenset(name for name, _, _ in ORDERS)
FIT = 1e-8  # relative to the shares' size: rounding of the split is far below, a mistake far above


def time_order_of_dx(adapter, failing):
    """The :class:`Mutation` of a bidirectional first layer whose ``dx`` is put together in a wrong time
    order, confirmed on a probe case, when ``dx`` is the only wrong gradient of every failing case;
    else None."""
    model = adapter.model
    layers = getattr(model, "layers", None)
    name = model.input_name
    if getattr(adapter, "targets", None) is None or not layers or not getattr(layers[0], "bidirectional", False):
        return None
    if not all(name in run.grads and all(v.ok or v.name == "d" + name for v in verdicts) and
               any(not v.ok for v in verdicts) for _, run, _, _, verdicts in failing):
        return None
    D = model.sizes["D"]
    if D < 2:
        return None
    shares, user = _probe(adapter, failing[0][0], min(D, 4))
    if shares is None:
        return None
    f, b = shares
    size = float(np.max(np.abs(f)) + np.max(np.abs(b)))
    for mistake, description, put in ORDERS:
        if np.max(np.abs(user - put(f, b))) <= FIT * size:
            return Mutation(mistake, description, where="dx of the bidirectional layer 0", changes="dL/dx")
    return None


def _probe(adapter, like, T):
    """``((forward share, backward share), the user's dx)`` on a probe case of one sequence of ``T``
    steps (``like``'s clipping), or ``(None, None)`` when the user's code fails on it or the shares do
    not add up to the exact dx (a cell whose input enters otherwise than by products ``U x``)."""
    from .stack import draw_stack

    model = adapter.model
    problem = replace(draw_stack(model, Plan(T=T, N=1), T, "dx time-order probe", 7, adapter.targets),
                      clip=like.clip)
    try:
        with np.errstate(all="ignore"):
            run = adapter.run(problem, [])
    except Exception:  # noqa: BLE001 -- the user's code failing on the probe: no claim
        return None, None
    ex = exact(model, problem)
    X = problem.x[:, 0, :]  # (T, D), independent rows
    inverse = np.linalg.pinv(X)
    shares = []
    for d in ("fwd", "bwd"):
        params = model.direction_params(problem.params, 0, d)
        share = np.zeros_like(X)
        for key, spec in model.cell.params.items():
            if len(spec.shape) == 2 and str(spec.shape[-1]) == "D":  # an input weight: a_t = U x_t + ...
                da = (ex.grads[model.key(0, d, key)] @ inverse).T  # (T, rows of U)
                share += da @ params[key]
        shares.append(share[:, None, :])
    full = ex.grads[model.input_name]
    if np.max(np.abs(shares[0] + shares[1] - full)) > FIT * float(np.max(np.abs(full)) + 1e-300):
        return None, None
    return tuple(shares), np.asarray(run.grads[model.input_name], dtype=float)

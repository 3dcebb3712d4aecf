"""Judging one run of the user's code: the forward check, the error model (float64 or float32
rounding), and a verdict per gradient in the user's own names and shapes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import judge as J
from .modes import state_of_role
from .result import ForwardCheck


# -- the forward check and the error model ---------------------------------------------------
def _forward_excess(run, ex, unit, factor, spread):
    """How far the user's forward lies outside what rounding at ``unit`` allows: ``(ratio, state, step,
    max difference, relative difference)``, ratio <= 1 when inside.  Rounding allows ``8 unit`` per
    rounding (``factor``) relative to ``1 + |exact|``, and, when ``spread`` (a callable returning a
    :class:`~symrnn.verify.judge.Spread`) is given and the first bound is exceeded, ``SAFETY`` times
    the spread of the rounded recomputations (a chaotic forward amplifies rounding step by step)."""
    worst = (0.0, None, None, 0.0, 0.0)
    if run.loss is not None and not run.states:
        err = abs(run.loss - ex.loss) if np.isfinite(run.loss) else np.inf
        allowed = 8 * unit * factor * max(1.0, abs(ex.loss))
        if err > allowed and spread is not None:
            allowed = max(allowed, J.SAFETY * spread().loss)
        return (err / allowed if allowed > 0 else (0.0 if err == 0 else np.inf), "loss", None, err,
                err / max(1.0, abs(ex.loss)))
    first = None  # (step, -ratio, state): the earliest step at which some state differs, then the worst one
    for s, user in run.states.items():
        ref = ex.states[s] if user.shape[0] == ex.states[s].shape[0] else ex.states[s][-user.shape[0]:]
        diff = np.abs(user - ref)
        allowed = 8 * unit * factor * (1 + np.abs(ref))
        if np.any(diff > allowed) and spread is not None:
            allowed = np.maximum(allowed, J.SAFETY * _row_spread(spread().states[s], user.shape[0]))
        ratio = diff / allowed
        if ratio.size and ratio.max() > 1:
            t = int(np.argwhere(ratio > 1)[0][0])
            first = min(first or (np.inf,), (t, -float(ratio[t].max()), s))
        if ratio.size and ratio.max() > worst[0]:
            worst = (float(ratio.max()), s, None, float(diff.max()), float((diff / (1 + np.abs(ref))).max()))
    if first is not None:  # the ratio stays the largest anywhere; the state and step are where it starts
        worst = (worst[0], first[2], first[0], worst[3], worst[4])
    return worst


def _row_spread(states, steps):
    """The spread of the rounded recomputations' states over the last ``steps`` steps, as an envelope:
    at each step the largest entry of any sequence at that step or before.  Once a chaotic forward has
    amplified rounding to the size of the states, a few recomputations spread widely but not in every
    entry nor at every later step: one that happens to stay close somewhere is no bound on where
    correct code that rounds otherwise lands (trajectories part and meet again)."""
    states = states if states.shape[0] == steps else states[-steps:]
    if states.ndim < 2 or not states.size:
        return states
    rows = np.max(states.reshape(states.shape[0], -1), axis=1)
    return np.maximum.accumulate(rows).reshape((-1,) + (1,) * (states.ndim - 1))


def not_finite_message(s, user, ref, t):
    """What is not finite in the user's state ``s`` (first at step index ``t``) and where, beside the
    exact value there, and the usual causes: the verifier sees the value, not which operation made it."""
    bad = ~np.isfinite(user[t])
    j = np.unravel_index(int(np.argmax(bad)), bad.shape)
    value = user[t][j]
    kind = "nan" if np.isnan(value) else f"{value}"
    return (f"the user's {s} is {kind} at step {t + 1}, sequence {j[0]}, unit {j[-1]} ({int(bad.sum())} of "
            f"{bad.size} entries of that step are not finite; every earlier step is finite) where the exact "
            f"forward is {ref[t][j]:.6g}: an operation in the code overflowed, underflowed into a division by 0, "
            f"or took the log or sqrt of a negative number at that step; usual causes: exp of a large argument "
            f"(tanh or sigmoid written through exp), a long product over the steps (cumprod in a parallel scan; "
            f"a scan in log space keeps it finite), a division by a quantity that reached 0")


def _forward_check(model, run, ex, factor, spread=None, unit=J.U32):
    """Compare the user's states (or loss) with the exact ones; first step and quantity that differ.

    Returns the :class:`ForwardCheck` and the largest relative difference."""
    if run.loss is not None and not run.states:
        ratio, _, _, err, rel = _forward_excess(run, ex, unit, factor, spread)
        msg = (f"loss {run.loss:.12g}, exact {ex.loss:.12g}, relative difference {rel:.2e}" if np.isfinite(run.loss)
               else f"the loss is {run.loss} where the exact loss is {ex.loss:.6g}")
        return ForwardCheck(bool(np.isfinite(run.loss) and ratio <= 1), msg, "loss", None, err), rel
    if run.loss is None and not run.states:
        return ForwardCheck(True, "the code returns neither states nor a loss: the forward is not compared"), 0.0
    for s, user in run.states.items():
        ref = ex.states[s] if user.shape[0] == ex.states[s].shape[0] else ex.states[s][-user.shape[0]:]
        if not np.all(np.isfinite(user)):
            t = int(np.argwhere(~np.isfinite(user))[0][0])
            return ForwardCheck(False, not_finite_message(s, user, ref, t), s, t + 1, float("inf")), float("inf")
    ratio, s, t, diff, rel = _forward_excess(run, ex, unit, factor, spread)
    if ratio > 1:
        user, ref = run.states[s], ex.states[s]
        ref = ref if user.shape[0] == ref.shape[0] else ref[-user.shape[0]:]
        kind = "output" if s == model.out and len(model.state_names) > 1 else "state"
        j = np.unravel_index(int(np.argmax(np.abs(user - ref)[t])), user[t].shape)
        return ForwardCheck(
            False, f"{s} first differs at step {t + 1} (the {kind} {s}; max difference "
                   f"{np.abs(user - ref)[t].max():.3e}, at sequence {j[0]}, unit {j[-1]}: {user[t][j]:.10g} "
                   f"where the sequential definition gives {ref[t][j]:.10g}): the code computes another cell "
                   f"than {model.cell.name!r}; if that is intended, declare it as a custom cell (symrnn.Cell, see "
                   f"the README) and verify against it", s, t + 1, diff), rel
    return ForwardCheck(True, f"states match the exact forward of the cell (max relative difference {rel:.1e})"), rel


def _dtype_model(run, forward_rel, factor, excess64=0.0):
    """float32 when the code returns float32 arrays or its forward is farther from the exact one than
    float64 rounding allows (``excess64 > 1``: :func:`_forward_excess` at ``u = 2**-53``)."""
    for half in ("bfloat16", "float16"):  # PyTorch and JAX code in half precision
        if half in run.dtypes:
            return J.DtypeModel(half, f"the code returns {sorted(run.dtypes)} arrays")
    if "float32" in run.dtypes:
        return J.DtypeModel("float32", f"the code returns {sorted(run.dtypes)} arrays")
    if excess64 > 1:
        return J.DtypeModel("float32", f"the code returns float64 arrays, but its forward agrees with the exact one "
                                       f"only to {forward_rel:.1e} relative, as float32 arithmetic inside the code "
                                       f"does: it computes in float32", computed_in="float32")
    return J.DtypeModel("float64", f"float64 outputs; the forward agrees to {forward_rel:.1e} relative")


def assess(adapter, problem, run, ex):
    """The forward check, the error model and the verdicts of one run of the user's code:
    ``(forward check, dtype model, verdicts)``; verdicts is None when the forward differs.
    Sets ``ex.tol``."""
    model = adapter.model
    factor = J.length_factor(model, problem.T)
    spreads = {}

    def spread(unit):
        if unit not in spreads:
            spreads[unit] = J.rounding_spread(model, problem, ex, unit)
        return spreads[unit]

    loosest = max([J.U32] + [J.UNITS[d] for d in run.dtypes if d in ("float16", "bfloat16")])
    fwd, rel = _forward_check(model, run, ex, factor, lambda: spread(loosest), loosest)
    if not fwd.ok:
        return fwd, J.DtypeModel("float64", "not chosen: the forward differs from the declared one"), None
    excess64 = _forward_excess(run, ex, J.U64, factor, lambda: spread(J.U64))[0]
    if chaos_onset(ex, spread(J.U64)) is not None:  # a chaotic forward's distance tells no precision
        excess64 = 0.0
    dtype_model = _dtype_model(run, rel, factor, excess64)
    unit = dtype_model.unit
    widening = _forward_widening(run, ex, spread(unit))
    if widening > 1:  # a parallel scan, a log-space scan: the states the backward reads are rounded more
        spreads[unit] = spread(unit * widening)  # the tolerance below reads the spread of the wider rounding
        dtype_model = replace(dtype_model, reason=f"{dtype_model.reason}; the forward's states differ from the "
                              f"sequential definition {widening:.3g} times as much as rounding at that precision "
                              f"moves them (as a parallel or log-space scan's do), so the gradients are judged "
                              f"with a unit roundoff {widening:.3g} times larger")
    ex.tol = J.perturbation_tolerance(model, problem, ex, dtype_model.unit, spread(dtype_model.unit))
    onset = chaos_onset(ex, spread(dtype_model.unit))
    if onset is not None:  # no gradient of one trajectory binds code that rounds otherwise
        return replace(fwd, chaotic=onset, message=f"states match the exact forward of the cell as far as rounding "
                       f"allows; from step {onset} on it is chaotic at this precision (rounding moves the states by "
                       f"a tenth of their size), max relative difference {rel:.1e}"), dtype_model, []
    return fwd, dtype_model, judge_case(adapter, run, ex)


CHAOS = 0.1  # rounding moves a state by this share of its size: the trajectories have come apart


def chaos_onset(ex, spread):
    """The first step (from 1) at which rounding at the judged precision moves some state by ``CHAOS``
    of the size of the states at that step or more, or None.  From there a chaotic forward has no one
    trajectory that correct code follows (rounding differently it follows another), nor does its gradient."""
    first = None
    for s, spr in spread.states.items():
        spr, ref = np.asarray(spr), np.abs(ex.states[s])
        if spr.ndim and spr.shape[0] and spr.shape == ref.shape:
            rows = spr.reshape(spr.shape[0], -1).max(axis=1) / (1 + ref.reshape(ref.shape[0], -1).max(axis=1))
            hit = np.flatnonzero(rows >= CHAOS)
            first = int(hit[0]) + 1 if hit.size and (first is None or hit[0] + 1 < first) else first
    return first


def _forward_widening(run, ex, spread):
    """How many times farther the user's forward states lie from the exact ones than the rounded
    recomputations move them (at most ``max diff / max spread`` over the states; 1 when inside).

    Correct code that solves the recurrence another way (an associative or chunked scan, the minGRU
    paper's log-space scan ``exp(a*_t + logcumsumexp(log b - a*))``) rounds differently from the
    sequential loop: the log-space form loses about ``|a*_t| u`` relative.  Its backward reads those
    states, so its gradients carry the same larger rounding; the tolerance widens by this factor."""
    widest = 1.0
    for s, user in run.states.items():
        ref, spr = ex.states[s], spread.states.get(s)
        if spr is None:
            continue
        if user.shape[0] != ref.shape[0]:
            ref, spr = ref[-user.shape[0]:], spr[-user.shape[0]:]
        floor = float(np.max(spr, initial=0.0))
        if floor > 0:
            widest = max(widest, float(np.max(np.abs(user - ref), initial=0.0)) / floor)
    return widest


def _gate_blocks(layout, cell_name, H, user_name, shape):
    """``[(gate, index)]`` of a stacked user gradient, or ``[]``."""
    gates = layout.gates(cell_name)
    roles = {v: r for r, v in layout.names.items()}
    role = roles.get(user_name[1:] if user_name.startswith("d") else user_name)
    if len(gates) < 2 or role not in ("Wx", "Wh", "W", "b", "b_hh"):
        return []
    G = len(gates)
    axis = next((a for a, n in enumerate(shape) if n == G * H), None)
    if role in ("Wx", "Wh", "W") and layout.convention == "row":
        axis = len(shape) - 1
    if axis is None:
        return []
    out = []
    for k, g in enumerate(gates):
        index = [slice(None)] * len(shape)
        index[axis] = slice(k * H, (k + 1) * H)
        out.append((g, tuple(index)))
    return out


def exact_in_user_layout(adapter, ex, run):
    """The exact gradients and their tolerances under the user's names and shapes (what the user returned)."""
    L, model, cell_name = adapter.layout, adapter.model, adapter.cell
    params = {k: ex.grads[k] for k in model.param_shapes}
    scales = {k: ex.tol[k] for k in model.param_shapes}
    exact_user = {"d" + k: v for k, v in L.to_user(cell_name, params, gradients=True).items()}
    scale_user = {"d" + k: v for k, v in L.to_user(cell_name, scales, gradients=True).items()}
    for key, arr in run.user_grads.items():
        if key == "dx":
            conv = (lambda a: L.state_to_user(a[0])) if getattr(adapter, "step", False) else L.sequence_to_user
            exact_user[key], scale_user[key] = conv(ex.grads[model.input_name]), conv(ex.tol[model.input_name])
        elif key in ("dh0", "dc0") or (key[1:-1] in model.state_names and key.endswith("0")) or (
                key.startswith("dprev_") and key[6:] in model.state_names):  # ds0's and step mode's too
            state = key[6:] if key.startswith("dprev_") else (
                state_of_role(model, key) if key in ("dh0", "dc0") else key[1:-1])
            k = model.initial_state_key(state)
            exact_user[key], scale_user[key] = L.state_to_user(ex.grads[k]), L.state_to_user(ex.tol[k])
    return exact_user, scale_user


def judge_case(adapter, run, ex):
    exact_user, scale_user = exact_in_user_layout(adapter, ex, run)
    verdicts = []
    H = adapter.model.sizes["H"]
    for name, user in run.user_grads.items():
        if name not in exact_user:
            continue
        user = np.asarray(user, dtype=np.float64)
        if user.shape != np.shape(exact_user[name]):
            user = user.reshape(np.shape(exact_user[name])) if user.size == np.size(exact_user[name]) else user
        blocks = _gate_blocks(adapter.layout, adapter.cell, H, name, user.shape)
        verdicts.append(J.judge_array(name, user, exact_user[name], scale_user[name], blocks))
    return verdicts


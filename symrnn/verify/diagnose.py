"""Diagnosis of a wrong gradient: the catalogued mistake it matches (fingerprint), undeclared
clipping that explains it, and where it is (gradient, gate block, state path, first wrong
backward message)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..models.clipping import TORCH_EPS, Clipping, clip_gradients
from ..errors import ShapeError, SymRNNError, UserCodeError
from ..engine.symbols import parse
from ..models.truncated import truncated_loss_and_grads
from . import judge as J
from .assess import exact_in_user_layout
from .directions import TIME_ORDERS
from .mutants import Mutation, candidate, mutations_for
from .mutants import backward as candidate_backward
from .mutants import input_terms as mutant_terms
from .problems import Plan, draw, initial_state_keys, states_read_back
from .shrink import rebuilder


def matches_candidate(run, candidate, ex, unit=J.U64):
    """The user's gradients equal ``candidate``'s on every key the user returned: within the exact
    tolerances plus the rounding of the candidate's own sums (a mistaken gradient can be large where
    the exact one is zero, as a swapped gate's)."""
    keys = [k for k in run.grads if k in candidate]
    candidate = {k: np.asarray(candidate[k], dtype=float) for k in keys}  # a never-read start's gradient: 0
    return bool(keys) and all(
        np.all(np.abs(np.asarray(run.grads[k], dtype=float) - candidate[k]) <= ex.tol[k] + 64 * unit *
               np.sqrt(candidate[k].size + 1) * np.max(np.abs(candidate[k]), initial=0)) for k in keys)


def fingerprint(adapter, failing):
    """The catalogued mistake the user's gradients match in every failing case, or None."""
    model = adapter.model
    cases = sorted(failing, key=lambda f: f[0].T)[:4]
    truncation = cases[0][0].truncation
    clipped = None
    for mutation in mutations_for(model, max(f[0].T for f in cases), truncation):
        if mutation.clip_inside_from_user:  # clipping after the backward gives the same numbers at T = 1
            clipped = explain_clipping(model, failing) if clipped is None else clipped
            if clipped:
                continue
        made = {}  # each case's candidate, made when first needed: the shortest case rules most out

        def grads_of(i, problem, run):
            if i not in made:
                made[i] = candidate(model, problem, _concrete(mutation, run, model))
            return made[i]

        for zeroed in ((), mutation.drop_carry):
            if all(matches_candidate(run, _start_zeroed(model, grads_of(i, problem, run), zeroed), ex, dtype_model.unit)
                   for i, (problem, run, ex, dtype_model, _) in enumerate(cases)):
                return mutation
    return None


def transposed_returns(adapter, failing):
    """A :class:`Mutation` naming the square gradients the user's code returns transposed (``dWh.T``
    for an ``H x H`` recurrent weight: the shapes agree, so nothing fails loudly), when that explains
    every wrong gradient of every failing case; else None."""
    names = []
    for _, run, ex, _, verdicts in failing:
        exact_user, scale_user = exact_in_user_layout(adapter, ex, run)
        for v in (v for v in verdicts if not v.ok):
            user, exact = np.asarray(run.user_grads[v.name], dtype=float), np.asarray(exact_user[v.name])
            if user.ndim != 2 or user.shape[0] != user.shape[1] or exact.shape != user.shape or \
                    not np.all(np.abs(user - exact.T) <= np.asarray(scale_user[v.name]).T):
                return None
            names += [v.name] if v.name not in names else []
    if not names:
        return None
    shown = ", ".join(n[1:] if n.startswith("d") else n for n in names)
    returned = ", ".join(f"{n}.T" for n in names)
    return Mutation("gradient-transposed", f"the gradient of {shown} is transposed: the code returns {returned} "
                                           f"where {', '.join(names)} belongs (a square matrix, so the shapes "
                                           f"agree and nothing fails loudly); every other gradient is right",
                    changes=", ".join(f"dL/{n}" for n in names))


def swapped_returns(adapter, failing):
    """A :class:`Mutation` naming two same-shape gradients the code returns in each other's place (``dWx``
    and ``dWh`` when ``D = H``, ``dh0`` and ``dc0``), when that explains every wrong gradient of every
    failing case; else None."""
    pairs = set()
    for _, run, ex, _, verdicts in failing:
        exact_user, scale_user = exact_in_user_layout(adapter, ex, run)
        wrong = [v.name for v in verdicts if not v.ok]

        def fits(a, b):  # the user's a is the exact b
            user, exact = np.asarray(run.user_grads[a], dtype=float), np.asarray(exact_user[b])
            return user.shape == exact.shape and bool(np.all(np.abs(user - exact) <= np.asarray(scale_user[b])))
        found = {tuple(sorted((a, b))) for a in wrong for b in wrong if a != b and b in exact_user and fits(a, b)
                 and fits(b, a)}
        if not found or {n for p in found for n in p} != set(wrong):
            return None
        pairs |= found
    if not pairs:
        return None
    said = "; ".join(f"the returned {a} is the exact {b}, the returned {b} the exact {a}" for a, b in sorted(pairs))
    return Mutation("gradients-swapped", f"two gradients are returned in each other's place: {said} (the same "
                                         f"shape, so nothing fails loudly; return them in the signature's order)",
                    changes=", ".join(f"dL/{a[1:]} and dL/{b[1:]}" for a, b in sorted(pairs)))


def _start_zeroed(model, grads, states):
    """A dropped carry's two spellings: the message not added at each step (what step 1 sends back still
    reaches the initial state: the catalogue's ``grads``), or zeroed (``dc = 0`` passed on to the step
    before, the initial state's included): ``grads`` with the initial gradients of ``states`` zero."""
    if not states:
        return grads
    return {**grads, **{model.initial_state_key(s): np.zeros_like(grads[model.initial_state_key(s)])
                        for s in states if model.initial_state_key(s) in grads}}


def common_factor(failing) -> str | None:
    """When every gradient of every failing case is the exact one times one factor per case (``c != 1``),
    the sentence that says so: the gradients are normalised differently from the loss (a mean over
    ``N T`` where the loss divides by the scored tokens, say), not wrong at any one step."""
    factors = []
    for problem, run, ex, dtype_model, _ in failing:
        keys = [k for k in run.grads if k in ex.grads and np.any(ex.grads[k])]
        if not keys:
            return None
        user = np.concatenate([np.ravel(np.asarray(run.grads[k], dtype=float)) for k in keys])
        exact = np.concatenate([np.ravel(ex.grads[k]) for k in keys])
        c = float(user @ exact / (exact @ exact))
        slack = np.concatenate([np.ravel(ex.tol[k]) for k in keys]) + 64 * dtype_model.unit * np.abs(c * exact)
        if not np.isfinite(c) or np.all(np.abs(user - exact) <= slack) or np.any(np.abs(user - c * exact) > slack):
            return None
        factors.append(f"{c:.6g} at T={problem.T}")
    return ("every gradient is the exact one times one factor (" + ", ".join(factors) + "): the gradients are "
            "normalised differently from the loss (a sum where a mean belongs, a mean over N*T where the loss "
            "divides by the number of scored tokens, or the other way round); no step is wrong on its own")


def _concrete(mutation, run, model):
    """A mutation with the numbers it reads from the user's gradients (the clipping threshold)."""
    if not mutation.clip_inside_from_user:
        return mutation
    keys = model.param_shapes if mutation.readout_too else model.cell.params
    c = max((float(np.max(np.abs(run.grads[k]), initial=0)) for k in keys if k in run.grads), default=0.0)
    return replace(mutation, clip_inside=c or 1.0)


def _clippings(user, exact_grads, keys):
    """The clippings, one threshold each, that could turn ``exact_grads`` into ``user``: element-wise,
    global-norm (``c / norm``, or PyTorch's ``c / (norm + 1e-6)``) and per-parameter norm."""
    norm = float(np.sqrt(sum(np.sum(user[k] ** 2) for k in keys)))
    exact_norm = float(np.sqrt(sum(np.sum(np.square(exact_grads[k])) for k in keys)))
    options = [("value", max(float(np.abs(user[k]).max(initial=0)) for k in keys), None),
               ("global-norm", norm, None),
               ("global-norm", norm * (exact_norm + TORCH_EPS) / exact_norm if exact_norm > 0 else 0.0, TORCH_EPS),
               ("norm", max(float(np.linalg.norm(user[k])) for k in keys), None)]
    return [Clipping(kind, c, eps) for kind, c, eps in options if c > 0]


def _same_clipping(a, b):
    return a.kind == b.kind and a.eps == b.eps and abs(a.threshold - b.threshold) <= 1e-9 * b.threshold


def explain_clipping(model, failing):
    """The :class:`~symrnn.models.clipping.Clipping` that turns the exact gradients into the user's in every
    failing case (element-wise, global-norm or per-parameter norm, at one threshold), or None."""
    survivors = None
    for problem, run, ex, _, _ in failing:
        keys = [k for k in model.param_shapes if k in run.grads]
        if not keys:
            return None
        user = {k: np.asarray(run.grads[k], dtype=float) for k in keys}
        if not all(np.all(np.isfinite(u)) for u in user.values()):
            return None
        matches = []
        for clipping in _clippings(user, ex.grads, keys):
            clipped = clip_gradients(ex.grads, clipping, keys)
            changed = any(np.any(np.abs(clipped[k] - ex.grads[k]) > ex.tol[k]) for k in keys)
            if changed and all(np.all(np.abs(user[k] - clipped[k]) <= ex.tol[k] + 8 * J.U64 * np.abs(clipped[k]))
                               for k in keys):
                matches.append(clipping)
        if survivors is not None:  # one clipping, at one threshold, in every failing case
            matches = [m for m in matches if any(_same_clipping(m, s) for s in survivors)]
        if not matches:
            return None
        survivors = matches
    return _covering_states(model, failing, survivors[0]) if survivors else None


def _covering_states(model, failing, clipping):
    """``clipping``, covering the initial states' gradients when the code clipped them too (None when
    they differ otherwise: the clipping does not explain everything)."""
    covered = replace(clipping, states=True) if clipping.kind == "value" else None
    needed = False
    for problem, run, ex, _, _ in failing:
        for k in initial_state_keys(model):
            if k not in run.grads or k not in ex.grads:
                continue
            user, exact_k = np.asarray(run.grads[k], dtype=float), ex.grads[k]
            if np.all(np.abs(user - exact_k) <= ex.tol[k]):
                continue  # as declared: not clipped (or within the threshold)
            clipped = np.clip(exact_k, -clipping.threshold, clipping.threshold)
            if covered is None or not np.all(np.abs(user - clipped) <= ex.tol[k] + 8 * J.U64 * np.abs(clipped)):
                return None
            needed = True
    return covered if needed else clipping


def localise(adapter, problem, run, ex, dtype_model, verdicts, state=None, shortest=None):
    """Which gradient, gate block, state path and backward message are wrong (what the probes show);
    ``state`` names the state whose message is wrong when known (default the output state);
    ``shortest`` is ``(T, last wrong step from 0)`` of the smallest failing prefix (or a function that
    gives it, called only when needed), when shrunk: with
    what the case itself shows, it tells a local derivative from the message into its step
    (:func:`place_first_wrong`)."""
    model = adapter.model
    wrong = [v for v in verdicts if not v.ok]
    out = {"gradient": wrong[0].name if wrong else None, "block": None, "path": None, "step": None,
           "message": ""}
    for v in wrong:
        bad = [b.block for b in v.blocks if not b.ok]
        if bad and any(b.ok and b.tested for b in v.blocks):
            out["gradient"], out["block"] = v.name, ",".join(bad)
            break
    judged = [s for s in model.state_names if model.initial_state_key(s) in run.grads]  # a task without states: none
    states_wrong = [s for s in judged if any(v.name == f"d{s}0" and not v.ok for v in verdicts)]
    if len(states_wrong) == 1 and len(judged) > 1:
        out["path"] = states_wrong[0]
    bad_steps = wrong_input_steps(model, problem, run, ex)
    if bad_steps:
        starts = None if not judged else not states_wrong
        partial = out["block"] is not None and all(any(b.ok and b.tested for b in v.blocks)
                                                   for v in wrong if len(v.blocks) > 1)
        out["step"], out["message"] = place_first_wrong(bad_steps, problem.T, starts, partial, shortest,
                                                        _messages(model, state), "dx")
        case = f"in the case {problem.label!r}"  # the step is this case's, not the table's
        out["message"] = out["message"][:-1] + f"; {case})" if out["message"].endswith(")") else \
            f"{out['message']} ({case})"
    return out


def _messages(model, state=None):
    """The backward message(s) a wrong step may come from: ``dL/d(state)``, else the output state's
    when the cell reads it back, else those of every state it reads back (mLSTM's C, n, m)."""
    read = states_read_back(model.cell)
    states = [state] if state else [model.out] if model.out in read or not read else list(read)
    words = [f"dL/d{s}" for s in states]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]


def wrong_input_steps(model, problem, run, ex):
    """The steps (from 0) whose input gradient is wrong, or None when the code returns none to judge."""
    key = model.input_name
    if key not in run.grads or problem.T < 2:
        return None
    tol = ex.tol[key]
    return [t for t in range(problem.T) if np.any(np.abs(run.grads[key][t] - ex.grads[key][t]) > tol[t])]


def place_first_wrong(bad_steps, T, starts_right=None, partial_blocks=False, shortest=None, message="dL/dh",
                      inputs="dx"):
    """``(step from 1, words)``: where the first wrong thing of the backward pass is, from the steps
    (from 0) whose input gradient is wrong, with the upstream gradient reaching the last wrong one.

    The last wrong step ``j < T - 1`` is a local derivative of step ``j`` or the message into it from
    ``j + 1``.  A local derivative is said when the evidence rules the message out: the smallest failing
    prefix (``shortest = (T_min, its last wrong step)``) ends at ``j`` and is wrong at its own last step,
    where no message arrives; or only step j's input gradient is wrong, the steps before and the initial
    state's gradient (``starts_right``: None when not judged) right, which a wrong message would reach;
    or only some gate blocks are wrong (``partial_blocks``), where a wrong message reaches every gate of
    the steps before.  The message is said when the smallest failing prefix ends at ``j + 1`` and is
    right at its last step.  Otherwise both are said."""
    j = max(bad_steps)
    if j == T - 1:
        return T, f"already wrong at the last step t={T} (a local derivative, not a message)"
    t, local = j + 1, f"a local derivative at t={j + 1} is wrong, not a message: "
    T_min, last = (shortest() if callable(shortest) else shortest) or (None, None)
    if T_min == j + 1 and last == T_min - 1:
        return t, local + (f"the smallest failing case ends at t={t} and is already wrong at its last step, where "
                           f"nothing arrives from a later step ({inputs} is right for t > {t})")
    if bad_steps == [j] and (j > 0 or starts_right) and starts_right is not False:
        return t, local + (f"only {inputs} at t={t} is wrong; {inputs} before it"
                           + (" and the initial state's gradient are" if starts_right else " is")
                           + f" right, which a wrong message into t={t} would reach")
    if partial_blocks and j > 0:
        return t, local + (f"only some gate blocks are wrong, while a wrong message into t={t} reaches every gate "
                           f"of the steps before it ({inputs} is right for t > {t})")
    if T_min == j + 2 and last == T_min - 2:
        return j + 2, (f"{message} from t={j + 2} to t={j + 1} is the first wrong backward message (steps from 1; "
                       f"{inputs} is right for t > {j + 1}; the smallest failing case ends at t={j + 2} and is right "
                       f"at its last step)")
    return j + 2, (f"the first wrong thing is at step {j + 2}: the backward message ({message}) from t={j + 2} to "
                   f"t={j + 1}, or else a local derivative at t={j + 1} ({inputs} is right for t > {j + 1}; steps "
                   f"from 1; what this verification sees cannot tell the two apart)")


PROBE_H = 2  # the message probe's hidden size: small, so that D can exceed the rows of every input product


def message_probe(adapter, declared, T, seed=7):
    """Which backward message is the first wrong one, on which state path, and which gate blocks
    it reaches: layer mode, from the user's ``dx`` alone.

    With ``D`` larger than the rows of all products ``P x_t`` together (``4H`` for an LSTM), the
    user's ``dx_t = sum_P q_P P`` determines each block ``q_P`` (what the gate's pre-activation
    carries back at step t): the stacked ``P`` has full row rank, so ``q = dx_t pinv(P)``.  The
    upstream gradient arrives at the last step only, so the last step (from the end) whose blocks
    differ from the exact ones is where the first wrong thing is: the message arriving there, or
    that step's own local derivative.  A second call with the upstream gradient at that step only
    tells the two apart: nothing then arrives from the step after, so blocks still wrong there are
    a local derivative of that step.  For a message, scaling the exact message of each state in
    turn shows which blocks each state's message reaches, and the path is the state whose blocks
    are exactly the wrong ones."""
    names = _probed_products(adapter, declared, T)
    if names is None:
        return None
    probe = rebuilder(adapter, declared.make_model)(D=len(names) * PROBE_H + 1, H=PROBE_H)
    pm = probe.model
    seen = _probe_blocks(probe, declared, names, T, seed, T - 1)
    if seen is None:
        return None
    problem, user, exact_q, relative = seen
    first = _first_wrong_message(user, exact_q, names, T, relative)
    if first is None:
        return None
    t, wrong, size = first
    blocks = _blocks_reached(pm, names, wrong, exact_q[t], size)
    if t == T - 1:
        return {"step": T, **blocks, "path": None, "local": True,
                "message": (f"already wrong at the last step t={T} of the message probe (a local derivative, not a "
                            f"message)")}
    local = _local_at(probe, declared, names, T, seed, t)
    if isinstance(local, dict):
        return {"step": t + 1, **local, "path": None, "local": True,
                "message": (f"a local derivative at t={t + 1} is wrong, not a message: with the upstream gradient "
                            f"at t={t + 1} only, nothing arrives from t={t + 2} and the gate blocks at t={t + 1} are "
                            f"already wrong; the message from t={t + 2} to t={t + 1} is right (message probe, T={T})")}
    scaled = "" if local is None else (f"; with the upstream gradient at t={t + 1} only every gate block at t={t + 1} "
                                       f"is {local:.6g} times the exact one: what arrives at t={t + 1} (the message "
                                       f"and the upstream gradient together) is scaled there")
    scaled_in = _scaled_messages(pm, problem, names, t, exact_q[t])
    path, factor, reaching = _wrong_path(pm, scaled_in, names, wrong, exact_q[t], size, user[t], relative)
    fitted = _wrong_states(pm, scaled_in, names, exact_q[t], user[t], relative * size)
    if fitted is not None and len(fitted) > 1 and set(fitted) != set((path or "").split(",")):
        shown = " and ".join(f"dL/d{s}" for s in fitted)  # several states' messages wrong at once
        return {"step": t + 2, **blocks, "path": ",".join(fitted), "local": False,
                "message": f"{shown} from t={t + 2} to t={t + 1} are the first wrong backward messages (message "
                           f"probe, T={T})" + scaled}
    others = [s for s in pm.state_names if s not in (path or "").split(",")]
    # another state's message is said right only when the wrong one alone explains the blocks
    right = "; ".join(f"dL/d{s} is right" for s in others) if path and fitted is not None else ""
    message = f"dL/d{_shown(path)}" if path else " or ".join(f"dL/d{s}" for s in reaching or pm.state_names)
    how = "" if factor is None else ("; it arrives as zero (dropped at that step)" if abs(factor) < 1e-6 else
                                     f"; it arrives {factor:.6g} times the exact one")
    return {"step": t + 2, **blocks, "path": path, "local": False,
            "message": (f"{message} from t={t + 2} to t={t + 1} is the first wrong backward message"
                        + (f"; {right}" if right else "") + f" (message probe, T={T})" + how + scaled)}


def _wrong_states(pm, scaled, names, exact_at_t, user_at_t, tolerance):
    """The states whose messages into step ``t`` are wrong: the user's blocks there as the exact ones
    with each state's message times its own factor (least squares over the blocks of
    :func:`_scaled_messages`); None when no such factors fit."""
    columns = [np.concatenate([np.ravel(scaled[s][n] - exact_at_t[n]) for n in names]) / 0.5 for s in pm.state_names]
    d = np.concatenate([np.ravel(user_at_t[n] - exact_at_t[n]) for n in names])
    V = np.stack(columns, axis=1)
    factors = np.linalg.lstsq(V, d, rcond=None)[0]
    if not np.all(np.isfinite(factors)) or np.abs(d - V @ factors).max() > tolerance:
        return None
    return [s for s, c, v in zip(pm.state_names, factors, columns) if np.abs(c * v).max() > tolerance]


def _probe_blocks(probe, declared, names, T, seed, upstream):
    """``(problem, user blocks, exact blocks, relative tolerance)`` of one probe call with the upstream
    gradient at step ``upstream`` (from 0) only, or None when the user's code gives no ``dx``."""
    pm = probe.model
    problem = draw(pm, Plan(T=T, N=2, seed=seed), T, f"T={T}, message probe", seed, declared.zero_states,
                   upstream=upstream)
    exact_q = {}
    exact_dx = candidate_backward(pm, problem.params, problem.x, problem.h0, problem.targets,
                                  record=exact_q)[pm.input_name]
    # what dx_t carries besides the products (LRU's feedthrough d * x_t): taken off before projecting
    residual = {t: exact_dx[t] - sum(exact_q[t][n] @ problem.params[n] for n in names) for t in range(T)}
    user = _user_messages(probe, problem, names, residual)
    return None if user is None else (problem, user[0], exact_q, user[1])


def _local_at(probe, declared, names, T, seed, t):
    """What step ``t`` (from 0) does with the upstream gradient at ``t`` only, when nothing arrives
    from ``t + 1``: None when its gate blocks are right; the common factor ``c`` when the blocks at t
    and at every step before are all ``c`` times the exact ones (the adjoint arriving at t is scaled
    as a whole, and carried back so: a message's mistake, not a gate's); else the gate blocks at t,
    wrong and right (a local derivative of step t)."""
    seen = _probe_blocks(probe, declared, names, T, seed + 1, t)
    if seen is None:
        return None
    _, user, exact_q, relative = seen
    sizes = [max(float(np.abs(q).max(initial=0)) for q in exact_q[s].values()) or 1.0 for s in range(t + 1)]
    wrong = [n for n in names if np.abs(user[t][n] - exact_q[t][n]).max() > relative * sizes[t]]
    if not wrong:
        return None
    e = np.concatenate([np.ravel(exact_q[t][n]) for n in names])
    c = float(np.concatenate([np.ravel(user[t][n]) for n in names]) @ e / (e @ e))
    if np.isfinite(c) and all(np.abs(user[s][n] - c * exact_q[s][n]).max() <= relative * sizes[s]
                              for s in range(t + 1) for n in names):
        return c
    return _blocks_reached(probe.model, names, wrong, exact_q[t], sizes[t])


def _shown(path):
    """``h_re,h_im`` -> ``(h_re, h_im)``: a message on two states at once."""
    return f"({path.replace(',', ', ')})" if path and "," in path else path


def _probed_products(adapter, declared, T):
    """The names of the input products ``P x_t`` the probe reads, or None when it cannot run (no
    declaration to rebuild the model at the probe's sizes, step mode, T = 1, a product not of H rows)."""
    model = adapter.model
    if declared is None or declared.make_model is None or getattr(adapter, "step", False) or T < 2:
        return None
    names = [t.matrix.name for t in mutant_terms(model) if t.matrix is not None]
    rows = sum(model.cell.params[n].shape[0] == "H" for n in names) * PROBE_H
    return names if names and rows == len(names) * PROBE_H else None


#: how far a right block may differ, relative to the step's largest: float64 code, and code that
#: returns float32, float16 or bfloat16 (a 1% error in one message stays 80 times above it)
PROBE_RELATIVE = {"float64": 1e-7, "float32": 2000 * 2.0 ** -24}


def _user_messages(probe, problem, names, residual):
    """``({t: {product: q}}, relative tolerance)``: the blocks the user's ``dx_t`` carries back, or None
    (no ``dx``, or the code fails at the probe's sizes); ``residual[t]``, the exact part of ``dx_t``
    that no product carries (a feedthrough of the input), is taken off first."""
    try:
        run = probe.run(problem, [])
    except (UserCodeError, ShapeError, ValueError):
        return None
    dx = run.grads.get(probe.model.input_name)
    if dx is None:
        return None
    stacked = np.vstack([problem.params[n] for n in names])
    split = np.cumsum([problem.params[n].shape[0] for n in names])[:-1]
    relative = PROBE_RELATIVE["float64" if run.dtypes <= {"float64"} else "float32"]
    if run.dtypes & {"float16", "bfloat16"}:  # half precision: only a gross error is placed
        relative = 0.05
    pinv = np.linalg.pinv(stacked)
    return ({t: dict(zip(names, np.split((dx[t] - residual[t]) @ pinv, split, axis=1))) for t in range(problem.T)},
            relative)


def _first_wrong_message(user, exact_q, names, T, relative=PROBE_RELATIVE["float64"]):
    """``(t, wrong products, size)`` at the last step (from the end) whose blocks differ, or None."""
    for t in range(T - 1, -1, -1):
        size = max(float(np.abs(q).max(initial=0)) for q in exact_q[t].values()) or 1.0
        wrong = [n for n in names if np.abs(user[t][n] - exact_q[t][n]).max() > relative * size]
        if wrong:
            return t, wrong, size
    return None


def _blocks_reached(pm, names, wrong, exact_at_t, size):
    """The gates of the wrong products and of the right ones that the probe tested (a zero block is
    right by any code)."""
    gate_of = {n: parse(next(term.consumer for term in mutant_terms(pm) if term.matrix is not None
                             and term.matrix.name == n))[0] for n in names}
    tested = [n for n in names if np.abs(exact_at_t[n]).max() > 1e-12 * size]
    return {"blocks_wrong": [gate_of[n] for n in wrong],
            "blocks_right": [gate_of[n] for n in names if n not in wrong and n in tested]}


def _scaled_messages(pm, problem, names, t, exact_at_t):
    """``{state: {product: block}}``: the blocks at step ``t`` with that state's message into ``t`` scaled
    by 1.5 (which blocks each state's message reaches, and how)."""
    scaled = {}
    for s in pm.state_names:
        rec = {}
        candidate_backward(pm, problem.params, problem.x, problem.h0, problem.targets,
                           mutation=Mutation("probe", "", scale_message=(s, t, 1.5)), record=rec)
        scaled[s] = rec[t]
    return scaled


def _wrong_path(pm, scaled, names, wrong, exact_at_t, size, user_at_t=None, relative=1e-7):
    """``(state, factor, reaching)``: the state whose message into step ``t``, times ``factor``, gives the
    user's blocks there (factor None when no one factor does: then the state whose scaled message
    reaches exactly the wrong blocks; state None when not one state), and the states whose messages
    reach exactly the wrong blocks (an sLSTM's n and m reach the same gates)."""
    fits = {}
    if user_at_t is not None:  # the user's blocks as the exact ones with one state's message times c
        d = np.concatenate([np.ravel(user_at_t[n] - exact_at_t[n]) for n in names])
        for s in pm.state_names:
            v = np.concatenate([np.ravel(scaled[s][n] - exact_at_t[n]) for n in names]) / 0.5
            c = float(d @ v / (v @ v)) if v @ v > 0 else np.nan
            if np.isfinite(c) and np.abs(d - c * v).max() <= relative * size:
                fits[s] = 1.0 + c
    reached = {s: [n for n in names if np.abs(scaled[s][n] - exact_at_t[n]).max() > 1e-7 * size]
               for s in pm.state_names}
    paths = [s for s, r in reached.items() if set(r) == set(wrong)]
    if len(fits) == 1:
        return (*next(iter(fits.items())), paths)
    reaching = list(paths)
    if not paths:  # two states' messages together (the real and imaginary parts of LRU's complex state)
        pairs = [f"{a},{b}" for i, a in enumerate(pm.state_names) for b in pm.state_names[i + 1:]
                 if reached[a] and reached[b] and set(reached[a]) | set(reached[b]) == set(wrong)]
        paths = pairs if len(pairs) == 1 else []
    return (paths[0] if len(paths) == 1 else (pm.out if len(pm.state_names) == 1 else None)), None, reaching


#: a loss whose backward scores every step, the padded ones too (the loss itself masked)
MASK_LEFT_OUT = Mutation("mask-left-out-of-backward", "the mask is left out of the backward: the gradients are "
                                                      "those of a loss scoring every step, padding included "
                                                      "(the loss itself is right); multiply what each step's "
                                                      "scores send back by the mask, as the loss does",
                         changes="the scores' gradient at the padded steps")


def mask_left_out(model, failing):
    """:data:`MASK_LEFT_OUT` when, in every failing case, some step is masked and the user's gradients are
    those of the same loss with every step scored (normalised as the masked loss, by the scored steps'
    count, or by all of them); else None."""
    for problem, run, ex, _, _ in failing:
        scored = problem.mask
        if scored is None or scored.all() or problem.truncation is not None or not hasattr(model, "loss_and_grads"):
            return None
        try:
            unmasked = model.loss_and_grads(problem.params, problem.x, problem.targets, problem.h0, None)[1]
        except (TypeError, ValueError, SymRNNError):
            return None
        keys = [k for k in run.grads if k in unmasked]
        if not keys or not any(all(np.all(np.abs(np.asarray(run.grads[k], dtype=float) - c * unmasked[k])
                                          <= ex.tol[k] + 1e-12 * np.max(np.abs(unmasked[k]), initial=0))
                                   for k in keys) for c in (1.0, scored.size / scored.sum())):
            return None
    return MASK_LEFT_OUT if failing else None


def refine_by_fingerprint(loc, mutation, adapter, T):
    """What a named mistake says about where: the gate it is in, the step it leaves out."""
    if mutation is None:
        return
    if mutation is MASK_LEFT_OUT:  # every padded step's scores send back a gradient: no one step is wrong
        loc.update(step=None, path="mask", message="no one step is wrong: every padded step's scores send back a "
                                                   "gradient")
        return
    if mutation.name in TIME_ORDERS:  # not one step's: every step's dx is in another step's place
        loc.update(step=None, message="dx is put together in the wrong time order, not wrong at one step (a "
                                      "probe of one sequence fits the two directions' shares exactly)")
        return
    gates = adapter.layout.gates(adapter.cell)
    named = [parse(t)[0] for t in ([mutation.rewrite[0][0]] if mutation.rewrite else list(mutation.swap))]
    if named and all(g in gates for g in named):
        loc["block"] = ",".join(named)
    if mutation.skip_step or mutation.rewrite_at:
        loc["step"] = 1 if (mutation.skip_step or mutation.rewrite_at) == "first" else T



def forward_fingerprint(model, problem, run):
    """A loss that differs the way a catalogued mistake of the forward makes it differ (truncated
    BPTT with its carried state reset), or None."""
    if problem.truncation is None or run.loss is None:
        return None
    reset = Mutation("carried-state-reset", "", reset_state=True,
                     truncation=(problem.truncation.k1, problem.truncation.k2))
    mistake = next(m for m in mutations_for(model, problem.T, problem.truncation) if m.name == reset.name)
    loss = truncated_loss_and_grads(model, problem.params, problem.x, problem.targets, problem.truncation,
                                    problem.h0, problem.mask, reset_state=True)[0]
    return mistake if abs(loss - run.loss) <= 1e-9 * max(1.0, abs(loss)) else None


"""The verification driver: cases, the forward check, the error model, the judgement."""
from __future__ import annotations

import inspect
import os
import shlex
import tempfile
from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits

from ..cells import builtin_cell
from ..clipping import Clipping, as_clipping, clip_gradients
from ..errors import ShapeError, UnknownNameError, UserCodeError, UserCodeExit
from ..layouts import Layout, layout_for
from ..model import Model
from ..symbols import parse
from ..truncated import Truncation, as_truncation, truncated_loss_and_grads
from . import judge as J
from .modes import LayerFunctions, LayerObject, LossFunction, run_twice
from .mutants import Mutation, candidate, exact_line, mutations_for
from .mutants import backward as candidate_backward
from .mutants import input_terms as mutant_terms
from .problems import Plan, draw, exact
from .result import CaseResult, ForwardCheck, Verification
from .shrink import judged_failure, judged_wrong, load_case, rebuilder, save_case, shrink
from .signatures import Signature, forward_name, signature_for


def _cell_name(cell):
    return cell if isinstance(cell, str) else cell.name


_MODELS = {}


def _model(cell, D, H, K=None, **kwargs):
    """A model per configuration: built-in cells are derived and compiled once per process."""
    if not isinstance(cell, str):
        return Model(cell, D=D, H=H, K=K, **kwargs)
    key = (cell, D, H, K, tuple(sorted(kwargs.items())))
    if key not in _MODELS:
        _MODELS[key] = Model(builtin_cell(cell), D=D, H=H, K=K, **kwargs)
    return _MODELS[key]


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
    for s, user in run.states.items():
        ref = ex.states[s] if user.shape[0] == ex.states[s].shape[0] else ex.states[s][-user.shape[0]:]
        diff = np.abs(user - ref)
        allowed = 8 * unit * factor * (1 + np.abs(ref))
        if np.any(diff > allowed) and spread is not None:
            states = spread().states[s]
            allowed = np.maximum(allowed, J.SAFETY * (states if user.shape[0] == states.shape[0]
                                                      else states[-user.shape[0]:]))
        ratio = diff / allowed
        if ratio.size and ratio.max() > worst[0]:
            t = int(np.argwhere(ratio > 1)[0][0]) if ratio.max() > 1 else None
            worst = (float(ratio.max()), s, t, float(diff.max()), float((diff / (1 + np.abs(ref))).max()))
    return worst


def _forward_check(model, run, ex, factor, spread=None):
    """Compare the user's states (or loss) with the exact ones; first step and quantity that differ.

    Returns the :class:`ForwardCheck` and the largest relative difference."""
    if run.loss is not None and not run.states:
        ratio, _, _, err, rel = _forward_excess(run, ex, J.U32, factor, spread)
        msg = (f"loss {run.loss:.12g}, exact {ex.loss:.12g}, relative difference {rel:.2e}" if np.isfinite(run.loss)
               else f"the loss is {run.loss} where the exact loss is {ex.loss:.6g}")
        return ForwardCheck(bool(np.isfinite(run.loss) and ratio <= 1), msg, "loss", None, err), rel
    if run.loss is None and not run.states:
        return ForwardCheck(True, "the code returns neither states nor a loss: the forward is not compared"), 0.0
    for s, user in run.states.items():
        ref = ex.states[s] if user.shape[0] == ex.states[s].shape[0] else ex.states[s][-user.shape[0]:]
        if not np.all(np.isfinite(user)):
            t = int(np.argwhere(~np.isfinite(user))[0][0])
            return ForwardCheck(False, f"the user's {s} is not finite at step {t + 1} where the exact forward is "
                                       f"{ref[t].flat[0]:.4g} ...: an overflow in a hand-written function "
                                       f"(tanh or sigmoid through exp?)", s, t + 1, float("inf")), float("inf")
    ratio, s, t, diff, rel = _forward_excess(run, ex, J.U32, factor, spread)
    if ratio > 1:
        user, ref = run.states[s], ex.states[s]
        ref = ref if user.shape[0] == ref.shape[0] else ref[-user.shape[0]:]
        return ForwardCheck(
            False, f"{s} first differs at step {t + 1} (max difference {np.abs(user - ref)[t].max():.3e}): the "
                   f"code computes another cell than {model.cell.name!r}; if that is intended, declare it as a "
                   f"custom cell (symrnn.Cell, see the README) and verify against it", s, t + 1, diff), rel
    return ForwardCheck(True, f"states match the declared cell (max relative difference {rel:.1e})"), rel


def _dtype_model(run, forward_rel, factor, excess64=0.0):
    """float32 when the code returns float32 arrays or its forward is farther from the exact one than
    float64 rounding allows (``excess64 > 1``: :func:`_forward_excess` at ``u = 2**-53``)."""
    if "float32" in run.dtypes or "float16" in run.dtypes:
        return J.DtypeModel("float32", f"the code returns {sorted(run.dtypes)} arrays")
    if excess64 > 1:
        return J.DtypeModel("float32", f"the forward agrees with the exact one only to {forward_rel:.1e} relative, "
                                       f"as float32 arithmetic inside the code does")
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

    fwd, rel = _forward_check(model, run, ex, factor, lambda: spread(J.U32))
    if not fwd.ok:
        return fwd, J.DtypeModel("float64", "not chosen: the forward differs from the declared one"), None
    excess64 = _forward_excess(run, ex, J.U64, factor, lambda: spread(J.U64))[0]
    dtype_model = _dtype_model(run, rel, factor, excess64)
    ex.tol = J.perturbation_tolerance(model, problem, ex, dtype_model.unit, spread(dtype_model.unit))
    return fwd, dtype_model, _judge_case(adapter, run, ex)


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


def _exact_in_user_layout(adapter, ex, run):
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
        elif key in ("dh0", "dc0"):
            k = model.initial_state_key(key[1])
            exact_user[key], scale_user[key] = L.state_to_user(ex.grads[k]), L.state_to_user(ex.tol[k])
    return exact_user, scale_user


def _judge_case(adapter, run, ex):
    exact_user, scale_user = _exact_in_user_layout(adapter, ex, run)
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


def _matches(run, candidate, ex, unit=J.U64):
    """The user's gradients equal ``candidate``'s on every key the user returned: within the exact
    tolerances plus the rounding of the candidate's own sums (a mistaken gradient can be large where
    the exact one is zero, as a swapped gate's)."""
    keys = [k for k in run.grads if k in candidate]
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
        if all(_matches(run, candidate(model, problem, _concrete(mutation, run, model)), ex, dtype_model.unit)
               for problem, run, ex, dtype_model, _ in cases):
            return mutation
    return None


def _concrete(mutation, run, model):
    """A mutation with the numbers it reads from the user's gradients (the clipping threshold)."""
    if not mutation.clip_inside_from_user:
        return mutation
    keys = model.param_shapes if mutation.readout_too else model.cell.params
    c = max((float(np.max(np.abs(run.grads[k]), initial=0)) for k in keys if k in run.grads), default=0.0)
    return replace(mutation, clip_inside=c or 1.0)


def explain_clipping(model, failing):
    """The :class:`~symrnn.clipping.Clipping` that turns the exact gradients into the user's in every
    failing case (element-wise, global-norm or per-parameter norm, at one threshold), or None."""
    found = None
    for problem, run, ex, _, _ in failing:
        keys = [k for k in model.param_shapes if k in run.grads]
        if not keys:
            return None
        user = {k: np.asarray(run.grads[k], dtype=float) for k in keys}
        if not all(np.all(np.isfinite(u)) for u in user.values()):
            return None
        options = [("value", max(float(np.abs(user[k]).max(initial=0)) for k in keys)),
                   ("global-norm", float(np.sqrt(sum(np.sum(user[k] ** 2) for k in keys)))),
                   ("norm", max(float(np.linalg.norm(user[k])) for k in keys))]
        match = None
        for kind, c in options:
            if c <= 0 or (found is not None and kind != found.kind):
                continue
            clipping = Clipping(kind, c)
            clipped = clip_gradients(ex.grads, clipping, keys)
            changed = any(np.any(np.abs(clipped[k] - ex.grads[k]) > ex.tol[k]) for k in keys)
            if changed and all(np.all(np.abs(user[k] - clipped[k]) <= ex.tol[k] + 8 * J.U64 * np.abs(clipped[k]))
                               for k in keys):
                match = clipping
                break
        if match is None or (found is not None and abs(match.threshold - found.threshold) > 1e-9 * found.threshold):
            return None
        found = match
    return found


def localise(adapter, problem, run, ex, dtype_model, verdicts):
    """Which gradient, gate block, state path and backward message are wrong (what the probes show)."""
    model = adapter.model
    wrong = [v for v in verdicts if not v.ok]
    out = {"gradient": wrong[0].name if wrong else None, "block": None, "path": None, "step": None,
           "message": ""}
    for v in wrong:
        bad = [b.block for b in v.blocks if not b.ok]
        if bad and any(b.ok and b.tested for b in v.blocks):
            out["gradient"], out["block"] = v.name, ",".join(bad)
            break
    initial = getattr(model, "initial_state_key", lambda s: f"{s}0")
    states_wrong = [s for s in model.state_names if initial(s) in run.grads
                    and any(v.name == f"d{s}0" and not v.ok for v in verdicts)]
    if len(states_wrong) == 1 and len([s for s in model.state_names if initial(s) in run.grads]) > 1:
        out["path"] = states_wrong[0]
    key = model.input_name
    if key in run.grads and problem.T > 1:
        tol = ex.tol[key]
        bad_steps = [t for t in range(problem.T)
                     if np.any(np.abs(run.grads[key][t] - ex.grads[key][t]) > tol[t])]
        if bad_steps:
            j = max(bad_steps)
            if j == problem.T - 1:
                out["step"] = problem.T
                out["message"] = f"already wrong at the last step t={problem.T} (a local derivative, not a message)"
            else:
                out["step"] = j + 2
                out["message"] = (f"dL/d{model.out} from t={j + 2} to t={j + 1} is the first wrong backward message "
                                  f"(steps from 1; dx is right for t > {j + 1})")
    return out


@dataclass
class Declared:
    """What the user declared, for saving a minimal case and printing its replay command."""

    meta: dict  # mode, cell, layout, D, H, K, loss, reduction, architecture
    make_model: object = None  # (D=, H=) -> Model of other sizes; None: sizes stay
    functions: tuple = ()  # the user's functions, for the replay command
    save_to: object = None  # where the minimal case goes (None: a temporary file)
    replaying: bool = False
    search: int = 0  # Hypothesis examples (symrnn.strategies) tried beyond the fixed cases
    cli: bool = True  # the CLI can express the declaration (built-in cell, preset layout and signature)
    notes: list = field(default_factory=list)  # what the verification could not do, said in the report
    zero_states: tuple = ()  # initial states the user's code does not take (zero on both sides)


def search_failure(adapter, declared, max_T, truncation=None, clip=None):
    """A failing case found by Hypothesis among ``declared.search`` drawn problems (shrunk by
    Hypothesis), or None.  Deterministic: derandomized, no example database."""
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample

    from ..strategies import problems

    def prepare(problem):
        problem.truncation, problem.clip = truncation, clip
        for s in declared.zero_states:
            problem.h0[s] = np.zeros_like(problem.h0[s])
        return problem

    def fails(problem):
        prepare(problem)
        try:
            return judged_wrong(adapter, problem)
        except (UserCodeError, ShapeError, ValueError, ArithmeticError):
            return False

    try:
        found = find(problems(adapter.model, max_T=max_T), fails,
                     settings=settings(max_examples=declared.search, derandomize=True, database=None,
                                       suppress_health_check=list(HealthCheck), deadline=None))
    except NoSuchExample:
        return None
    found = prepare(found)
    found.label = f"T={found.T}, N={found.N}, found by search (symrnn.strategies)"
    return found


def run_cases(adapter, problems, mode, layout_name, declared=None):
    """Run every problem: forward first, then the gradients; the shortest failing case is reported,
    localised and, when it matches a catalogued mistake, named; then shrunk and saved.

    BLAS runs on one thread meanwhile: the verifier's products are small, and on a busy machine
    a second BLAS thread made them up to ten times slower (``reports/benchmarks.md``)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _run_cases(adapter, problems, mode, layout_name, declared)


def _run_cases(adapter, problems, mode, layout_name, declared):
    findings, cases, table, table_case = [], [], None, ""
    forward_result, dtype_model = None, None
    model = adapter.model
    failing, forward_mistake = [], None
    for problem in problems:
        run = run_twice(adapter, problem, findings, mode)
        ex = exact(model, problem)
        fwd, model_dtype, verdicts = assess(adapter, problem, run, ex)
        dtype_model = dtype_model or model_dtype
        if model_dtype.name == "float32":
            dtype_model = model_dtype
        if not fwd.ok:
            forward_result = fwd
            forward_mistake = _forward_fingerprint(model, problem, run)
            cases.append(CaseResult(problem.label, problem.T, problem.N, False, ["forward"]))
            table, table_case = [], problem.label
            break
        forward_result = forward_result or fwd
        wrong = [v.name for v in verdicts if not v.ok]
        cases.append(CaseResult(problem.label, problem.T, problem.N, not wrong, wrong))
        shortest_failing = [c.T for c in cases[:-1] if not c.ok]
        if table is None or (wrong and (not shortest_failing or problem.T < min(shortest_failing))):
            table, table_case = verdicts, problem.label  # the shortest failing case shows the mistake best
        if wrong:
            failing.append((problem, run, ex, model_dtype, verdicts))
    ok = forward_result.ok and all(c.ok for c in cases)
    unique = []
    for f in findings:
        if all(f.message != g.message for g in unique):
            unique.append(f)
    result = Verification(bool(ok), mode, model.cell.name, layout_name, forward_result, table or [], cases, unique,
                          dtype_model, table_case)
    result.notes = list(declared.notes) if declared is not None else []
    if forward_mistake is not None:
        result.fingerprint = forward_mistake
    stacked = not model.one_cell  # several cells wired: no single-cell sweep
    if failing and stacked:
        result.explanation = explain_clipping(model, failing)
    if failing and not stacked:
        result.fingerprint = fingerprint(adapter, failing)
        if result.fingerprint is not None:
            result.exact_line = exact_line(model, result.fingerprint)
        if result.fingerprint is None:
            result.explanation = explain_clipping(model, failing)
        elif result.fingerprint.truncation and failing[0][0].truncation is None:  # undeclared truncation
            result.explanation = Truncation(*result.fingerprint.truncation)
    if failing:
        shortest = min(failing, key=lambda f: f[0].T)
        probe = next((f for f in failing if f[0].label.endswith("at the last step only")), None)
        result.localisation = localise(adapter, *(probe or shortest))
        if probe is not None and probe is not shortest:
            shortest_loc = localise(adapter, *shortest)
            result.localisation.update({k: v for k, v in shortest_loc.items() if k in ("gradient", "block")})
        T_main = max(p.T for p in problems)
        messages = message_probe(adapter, declared, T_main) if mode == "layer" else None
        if messages is not None:
            loc = result.localisation
            loc.update(step=messages["step"], path=messages["path"], message=messages["message"])
            if messages["blocks_right"] and messages["blocks_wrong"]:
                at = min(messages["step"] - 1, T_main) if messages["path"] else T_main
                loc["block"] = ",".join(messages["blocks_wrong"])
                loc["message"] += (f"; at t={at} the gate block(s) {', '.join(messages['blocks_wrong'])} receive a "
                                   f"wrong gradient, {', '.join(messages['blocks_right'])} a right one")
        _refine_by_fingerprint(result.localisation, result.fingerprint, adapter, shortest[0].T)
        if result.fingerprint is not None and result.fingerprint.drop_carry and messages is None:
            path = result.localisation["path"] = result.fingerprint.drop_carry[0]
            result.localisation["message"] = result.localisation["message"].replace(f"dL/d{model.out} ",
                                                                                  f"dL/d{path} ")
    if failing and declared is not None and not declared.replaying:
        result.minimal = _minimal_case(adapter, min(failing, key=lambda f: f[0].T)[0], declared,
                                       result.explanation is None)
        T_min, T_ok = result.minimal["T"], [c.T for c in cases if c.ok]
        result.localisation["shortest_failing_T"] = T_min  # the shortest prefix on which the code fails
        if T_min > 1 and all(t < T_min for t in T_ok):
            if not result.localisation.get("message"):
                result.localisation["step"] = T_min
                result.localisation["message"] = (f"right for sequences of up to {T_min - 1} step(s), wrong from "
                                                  f"T={T_min} on: the mistake is in what reaches step {T_min - 1} "
                                                  f"from step {T_min}, or in a term that only a sequence of "
                                                  f"{T_min} steps has")
    return result


PROBE_H = 2  # the message probe's hidden size: small, so that D can exceed the rows of every input product


def message_probe(adapter, declared, T, seed=7):
    """Which backward message is the first wrong one, on which state path, and which gate blocks
    it reaches: layer mode, from the user's ``dx`` alone.

    With ``D`` larger than the rows of all products ``P x_t`` together (``4H`` for an LSTM), the
    user's ``dx_t = sum_P q_P P`` determines each block ``q_P`` (what the gate's pre-activation
    carries back at step t): the stacked ``P`` has full row rank, so ``q = dx_t pinv(P)``.  The
    upstream gradient arrives at the last step only, so the first step (from the end) whose blocks
    differ from the exact ones is where the first wrong message arrives; scaling the exact message of
    each state in turn shows which blocks each state's message reaches, and the path is the state
    whose blocks are exactly the wrong ones."""
    model = adapter.model
    if declared is None or declared.make_model is None or getattr(adapter, "step", False) or T < 2:
        return None
    names = [t.matrix.name for t in mutant_terms(model) if t.matrix is not None]
    rows = sum(model.cell.params[n].shape[0] == "H" for n in names) * PROBE_H
    if not names or rows != len(names) * PROBE_H:
        return None
    probe = rebuilder(adapter, declared.make_model)(D=rows + 1, H=PROBE_H)
    pm = probe.model
    problem = draw(pm, Plan(T=T, N=2, seed=seed), T, f"T={T}, message probe", seed, declared.zero_states,
                   upstream=T - 1)
    try:
        run = probe.run(problem, [])
    except (UserCodeError, ShapeError, ValueError):
        return None
    dx = run.grads.get(pm.input_name)
    if dx is None:
        return None
    stacked = np.vstack([problem.params[n] for n in names])
    split = np.cumsum([problem.params[n].shape[0] for n in names])[:-1]
    user = {t: dict(zip(names, np.split(dx[t] @ np.linalg.pinv(stacked), split, axis=1))) for t in range(T)}
    exact_q, scaled = {}, {}
    candidate_backward(pm, problem.params, problem.x, problem.h0, problem.targets, record=exact_q)
    first = None
    for t in range(T - 1, -1, -1):
        size = max(float(np.abs(q).max(initial=0)) for q in exact_q[t].values()) or 1.0
        wrong = [n for n in names if np.abs(user[t][n] - exact_q[t][n]).max() > 1e-7 * size]
        if wrong:
            first = (t, wrong, size)
            break
    if first is None:
        return None
    t, wrong, size = first
    gate_of = {n: parse(next(term.consumer for term in mutant_terms(pm) if term.matrix is not None
                             and term.matrix.name == n))[0] for n in names}
    tested = [n for n in names if np.abs(exact_q[t][n]).max() > 1e-12 * size]  # a zero block is right by any code
    out = {"step": min(t + 2, T), "blocks_wrong": [gate_of[n] for n in wrong],
           "blocks_right": [gate_of[n] for n in names if n not in wrong and n in tested], "path": None}
    if t == T - 1:
        out["message"] = (f"already wrong at the last step t={T} of the message probe (a local derivative, not a "
                          f"message)")
        return out
    for s in pm.state_names:
        rec = {}
        candidate_backward(pm, problem.params, problem.x, problem.h0, problem.targets,
                           mutation=Mutation("probe", "", scale_message=(s, t, 1.5)), record=rec)
        reached = [n for n in names if np.abs(rec[t][n] - exact_q[t][n]).max() > 1e-7 * size]
        scaled[s] = reached
    paths = [s for s, reached in scaled.items() if set(reached) == set(wrong)]
    path = paths[0] if len(paths) == 1 else (pm.out if len(pm.state_names) == 1 else None)
    out["path"] = path
    others = [s for s in pm.state_names if s != path]
    right = "; ".join(f"dL/d{s} is right" for s in others) if path else ""
    out["message"] = (f"dL/d{path or '(state)'} from t={t + 2} to t={t + 1} is the first wrong backward message"
                      + (f"; {right}" if right else "") + f" (message probe, T={T})")
    return out


def _refine_by_fingerprint(loc, mutation, adapter, T):
    """What a named mistake says about where: the gate it is in, the step it leaves out."""
    if mutation is None:
        return
    gates = adapter.layout.gates(adapter.cell)
    named = [parse(t)[0] for t in ([mutation.rewrite[0][0]] if mutation.rewrite else list(mutation.swap))]
    if named and all(g in gates for g in named):
        loc["block"] = ",".join(named)
    if mutation.skip_step or mutation.rewrite_at:
        loc["step"] = 1 if (mutation.skip_step or mutation.rewrite_at) == "first" else T



def _minimal_case(adapter, problem, declared, unexplained=True):
    """Shrink and save; a mistake that clipping does not explain stays unexplained in the smaller
    case (at T = 1 clipping inside the loop and after it give the same numbers)."""
    def still_fails(a, p):
        failure = judged_failure(a, p)
        return failure is not None and not (unexplained and explain_clipping(a.model, [failure]))

    rebuild = None if declared.make_model is None else rebuilder(adapter, declared.make_model)
    small_adapter, small = shrink(adapter, problem, still_fails, rebuild)
    model = small_adapter.model
    meta = dict(declared.meta, D=model.sizes["D"], H=model.sizes["H"])
    small = replace(small, label=f"minimal case T={small.T}, N={small.N}, D={model.sizes['D']}, "
                                 f"H={model.sizes['H']} (shrunk from {problem.label})")
    path = save_case(small, meta, declared.save_to)
    return {"path": path, "T": small.T, "N": small.N, "D": model.sizes["D"], "H": model.sizes["H"],
            "command": replay_command(declared, path)}


def replay_command(declared, path):
    """The one-line ``symrnn verify ... --replay`` for the user's functions (best effort: a function
    defined in a file, reachable by its name)."""
    meta = declared.meta
    fns = declared.functions
    main = fns[-1] if fns else None
    call = {"layer": "verify_layer", "step": "verify_step", "object": "verify_layer_object",
            "loss": "verify_loss"}[meta["mode"]]
    names = ", ".join(getattr(f, "__name__", "fn") for f in fns)
    if not declared.cli:  # a custom cell, layout or signature: only Python can declare it again
        return f"symrnn.verify.{call}({names}, <the same declaration>, replay={_shown_path(path)!r})"
    where = _source_of(main)
    if where is None:  # defined in a notebook or a session: the Python call, runnable there
        more = "".join(f", {k}={meta[k]!r}" for k in ("loss", "reduction", "architecture") if k in meta)
        return (f"symrnn.verify.{call}({names}, cell={meta['cell']!r}, layout={meta['layout']!r}{more}, "
                f"replay={_shown_path(path)!r})")
    target = f"{where}:{getattr(main, '__name__', 'FUNCTION')}"
    parts = ["symrnn", "verify", target, "--mode", meta["mode"], "--cell", str(meta["cell"]), "--layout",
             str(meta["layout"])]
    if meta["mode"] in ("layer", "step") and len(fns) == 2:
        fwd = getattr(fns[0], "__name__", None)
        if fwd and fwd != forward_name(getattr(main, "__name__", "")):
            parts += ["--forward", fwd]
    parts += ["--replay", _shown_path(path)]
    return " ".join(shlex.quote(p) for p in parts)


def declared_cli_command(forward, backward):
    """``symrnn verify FILE:backward [--forward NAME]`` for a forward found by name, or None."""
    where = _source_of(backward)
    if where is None:
        return None
    parts = ["symrnn", "verify", f"{where}:{getattr(backward, '__name__', 'FUNCTION')}"]
    fwd = getattr(forward, "__name__", None)
    if fwd and fwd != forward_name(getattr(backward, "__name__", "")):
        parts += ["--forward", fwd]
    return parts


def _source_of(fn):
    """The file that defines ``fn``, relative to the working directory; None when there is no file a
    command line could import (a notebook cell's temporary file, an interactive session)."""
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        return None
    if not source or source.startswith("<") or not os.path.isfile(source):
        return None
    if "ipykernel_" in source or getattr(fn, "__module__", None) == "__main__" and \
            os.path.realpath(source).startswith(os.path.realpath(tempfile.gettempdir()) + os.sep):
        return None  # a notebook's (or an interactive session's) temporary copy of a cell
    return os.path.relpath(source)


def _shown_path(path):
    """``path`` relative to the working directory when it lies under it, else as it is."""
    relative = os.path.relpath(str(path))
    return str(path) if relative.startswith(os.pardir) else relative


# -- the public entry points -----------------------------------------------------------------
def _check_sizes(**sizes):
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ShapeError(f"{name} must be a positive integer, got {value!r}.")


def _lengths(plan):
    return [t for t in plan.lengths if t < plan.T]


def _declared(problems, truncation=None, clip=None):
    """The problems with the declared truncated BPTT and clipping (see :mod:`symrnn.truncated`,
    :mod:`symrnn.clipping`): the exact gradients are those a trainer with them uses."""
    truncation, clip = (None if truncation is None else as_truncation(truncation)), as_clipping(clip)
    for p in problems:
        p.truncation, p.clip = truncation, clip
    return problems


def verify_layer(forward, backward, cell="rnn-tanh", layout=None, *, D=3, H=4, T=8, N=3, scale=None, seed=0,
                 signature=None, lengths=(1, 2, 3), truncation=None, clip=None, replay=None,
                 save_to=None, search=0, zero_states=()) -> Verification:
    """Verify a hand-written layer: ``forward(x, h0, *params) -> (h, cache)`` and
    ``backward(dh, cache) -> (dx, dh0, *dparams)`` (CS231n's ``rnn_forward``/``rnn_backward``).

    ``layout`` is a preset name (``cs231n``, the default, ``pytorch``, ``keras``, ``dlfs2``, ``minchar``)
    or a :class:`symrnn.layouts.Layout`; ``signature`` (a :class:`Signature`) describes another calling
    convention.  Sizes and values are chosen here unless given.  Returns a :class:`Verification`.

    On a failure the smallest failing case is saved (``save_to``, default a temporary file) and
    ``result.minimal`` holds its path, sizes and the command that replays it; ``replay=path``
    runs a saved case again.  ``truncation`` and ``clip`` as in :func:`verify_loss`.
    ``search=n`` also tries ``n`` cases drawn by Hypothesis (:mod:`symrnn.strategies`: lengths,
    sizes, weights from tiny to saturating, inputs, upstream gradients), deterministically.

    Parameters
    ----------
    forward, backward : callable
        Your layer's forward and backward, called as ``signature`` says.
    cell : str or Cell
        The cell the code implements (a built-in name or a :class:`~symrnn.Cell`).
    layout : str or Layout
        How the code lays out weights, inputs and states.
    D, H, T, N : int
        Sizes of the main case.
    scale : float, optional
        Half-width of the uniform weights (default ``1/sqrt(H)``).
    seed : int
    signature : Signature or str, optional
    lengths : tuple of int
        The shorter sequence lengths also run.
    truncation, clip : optional
        Declared truncated BPTT and gradient clipping (see :func:`verify_loss`).
    replay : str or path, optional
        A saved minimal case to run again.
    save_to : str or path, optional
        Where the smallest failing case is saved.
    search : int
        Cases drawn by Hypothesis in addition to the fixed ones.
    zero_states : tuple of str
        Initial states that are zero (``("h0",)``, ``("h0", "c0")``): for code that starts from
        zeros.  A state the signature does not pass (no ``h0`` or ``c0`` argument) is zero anyway.

    With ``cell=None`` the forward is the specification (:mod:`symrnn.verify.auto`): the built-in
    cell and the layout it computes are found from the code (``layout`` narrows the search), or,
    when it computes no built-in cell, the cell is traced from the code; ``result.found`` says
    which, with the traced equations.

    Returns
    -------
    Verification
        ``ok``, the forward check, every gradient's verdict; ``str()`` is the report.

    Examples
    --------
    >>> import symrnn.verify as V
    >>> from symrnn import example_backprop as ex
    >>> V.verify_layer(ex.rnn_forward, ex.rnn_backward, cell="rnn-tanh", layout="cs231n").ok
    True
    >>> wrong = V.verify_layer(ex.buggy_rnn_forward, ex.buggy_rnn_backward)
    >>> wrong.ok, wrong.fingerprint.name
    (False, 'recurrent-term-dropped')
    >>> print(wrong.summary())  # doctest: +ELLIPSIS
    rnn-tanh layer code is wrong: the recurrent term is dropped: ... smallest failing case T=2, N=1, D=1, H=1
    """
    _check_sizes(D=D, H=H, T=T, N=N)
    if (cell is None or layout == "auto") and _is_object_method(forward):
        from .auto import find_object  # net.forward, net.backward: the object's arrays are the weights

        found, code, D, H = find_object(forward, backward, cell=None if layout != "auto" else cell)
        try:
            result = _verify_found(found, code.forward, code.backward, locals_(D=D, H=H, T=T, N=N, scale=scale,
                                   seed=seed, lengths=lengths, truncation=truncation, clip=clip, replay=replay,
                                   save_to=save_to, search=search, zero_states=zero_states))
        finally:
            code.restore()
        if result.minimal:
            name = getattr(forward.__self__, "__name__", None) or "net"
            result.minimal["command"] = (f"symrnn.verify.verify_layer({name}.forward, {name}.backward, cell=None, "
                                         f"replay={_shown_path(result.minimal['path'])!r})")
        return result
    if cell is None or layout == "auto":  # the forward is the specification
        from .auto import find

        found = find(forward, cell=None if layout != "auto" else cell,
                     layout=layout if isinstance(layout, Layout) else None if layout in (None, "auto")
                     else layout_for(layout, "rnn-tanh"))
        result = _verify_found(found, forward, backward, locals_(D=D, H=H, T=T, N=N, scale=scale, seed=seed,
                               signature=signature, lengths=lengths, truncation=truncation, clip=clip,
                               replay=replay, save_to=save_to, search=search, zero_states=zero_states))
        if result.minimal and declared_cli_command(forward, backward) is not None:
            command = declared_cli_command(forward, backward) + ["--replay", _shown_path(result.minimal["path"])]
            result.minimal["command"] = " ".join(shlex.quote(p) for p in command)
        return result
    layout = "cs231n" if layout is None else layout
    replayed, D, H, _ = _replay_sizes(replay, D, H, None)
    model = _model(cell, D, H, loss="upstream")
    L = layout_for(layout, cell)
    sig = signature_for(signature or (layout if isinstance(layout, str) else "cs231n"), "layer", model.cell)
    adapter = LayerFunctions(model, L, sig, forward, backward)
    plan = Plan(T=T, N=N, scale=scale, seed=seed, lengths=lengths)
    zero = _zero_states(model, sig, zero_states)
    declared = Declared(_meta("layer", cell, L), lambda D, H: _model(cell, D, H, loss="upstream"),
                        (forward, backward), save_to, search=search, zero_states=zero,
                        cli=_cli_expressible(cell, layout, signature))
    return _run(adapter, lambda: _layer_problems(model, plan, T, seed, zero), declared, replayed, truncation, clip)


def locals_(**kwargs):
    return kwargs


def _verify_found(found, forward, backward, options):
    """verify_layer against what :mod:`symrnn.verify.auto` found: on a batch when the code runs on one
    (its forward and its backward), else one example at a time."""
    N = options.pop("N")
    signature = options.pop("signature", None) or found.signature

    def run(n):
        return verify_layer(forward, backward, found.cell, found.layout, N=n, signature=signature, **options)
    if found.N == 1 or N == 1:
        result = run(1)
    else:
        try:
            result = run(N)
        except UserCodeExit:
            raise
        except UserCodeError as exc:  # code written for one example at a time: its backward may need N = 1
            try:
                result = run(1)
            except UserCodeError:
                raise exc from None
            found.text += f"; one example at a time (the code failed on a batch of {N}: N = 1)"
    result.found = found.text
    return result


def _is_object_method(forward):
    """``forward`` is a bound method whose arguments are data only (its weights live on the object)."""
    if getattr(forward, "__self__", None) is None or inspect.ismodule(forward.__self__):
        return False
    from .auto import ROLE_NAMES

    data = {n for r in ("x", "h0", "c0") for n in ROLE_NAMES[r]}
    params = [p.name.lower() for p in inspect.signature(forward).parameters.values()
              if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return bool(params) and all(p in data for p in params)


def _zero_states(model, sig, declared=()):
    """The states that start at zero on both sides: those the signature does not pass (the code
    starts from zeros) and those declared zero (``zero_states=("h0",)`` or ``("h",)``)."""
    names = {f"{s}0": s for s in model.state_names}
    declared = (declared,) if isinstance(declared, str) else tuple(declared or ())
    unknown = [d for d in declared if d not in names and d not in names.values()]
    if unknown:
        raise UnknownNameError(f"zero_states={declared!r}: {unknown} name no initial state of {model.cell.name!r}; "
                               f"its initial states are {sorted(names)}.")
    zero = {s for role, s in names.items() if sig is not None and role not in sig.forward_args}
    zero |= {names.get(d, d) for d in declared}
    return tuple(s for s in model.state_names if s in zero)


def _layer_problems(model, plan, T, seed, zero):
    problems = [draw(model, plan, T, f"T={T}, upstream gradients at every step", seed, zero),
                draw(model, plan, T, f"T={T}, upstream gradient at step 1 only", seed + 1, zero, upstream=0)]
    if T > 1:
        problems.append(draw(model, plan, T, f"T={T}, upstream gradient at the last step only", seed + 2, zero,
                             upstream=T - 1))
    problems += [draw(model, plan, t, f"T={t}, upstream gradients at every step", seed + 3 + t, zero)
                 for t in _lengths(plan)]
    return problems


def verify_step(step_forward, step_backward, cell="rnn-tanh", layout="cs231n", *, D=3, H=4, N=3, scale=None,
                seed=0, signature=None, replay=None, save_to=None) -> Verification:
    """Verify one step: ``step_forward(x, prev_h[, prev_c], *params) -> (next_h[, next_c], cache)`` and
    ``step_backward(dnext_h[, dnext_c], cache) -> (dx, dprev_h[, dprev_c], *dparams)``.

    Two cases are run, the second with saturating weights. The arguments are those of
    :func:`verify_layer`.

    Returns
    -------
    Verification

    Examples
    --------
    >>> import numpy as np, symrnn.verify as V
    >>> def step_forward(x, prev_h, Wx, Wh, b):
    ...     h = np.tanh(x @ Wx + prev_h @ Wh + b)
    ...     return h, (x, prev_h, Wx, Wh, h)
    >>> def step_backward(dh, cache):
    ...     x, prev_h, Wx, Wh, h = cache
    ...     da = dh * (1 - h ** 2)
    ...     return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)
    >>> V.verify_step(step_forward, step_backward, cell="rnn-tanh", layout="cs231n").ok
    True
    """
    _check_sizes(D=D, H=H, N=N)
    replayed, D, H, _ = _replay_sizes(replay, D, H, None)
    model = _model(cell, D, H, loss="upstream")
    L = layout_for(layout, cell)
    sig = signature_for(signature or (layout if isinstance(layout, str) else "cs231n"), "step", model.cell)
    adapter = LayerFunctions(model, L, sig, step_forward, step_backward, step=True)
    plan = Plan(T=1, N=N, scale=scale, seed=seed)
    final = ("c",) if "dc" in sig.backward_args else ()
    declared = Declared(_meta("step", cell, L), lambda D, H: _model(cell, D, H, loss="upstream"),
                        (step_forward, step_backward), save_to, cli=_cli_expressible(cell, layout, signature))
    return _run(adapter, lambda: [draw(model, plan, 1, "one step", seed, final=final),
                                  draw(model, plan, 1, "one step, saturating weights", seed + 1, final=final,
                                       scale=2.0)], declared, replayed)


def verify_layer_object(make, cell="rnn-tanh", layout="dlfs2", *, D=3, H=4, T=8, N=3, scale=None, seed=0,
                        lengths=(1, 2, 3), replay=None, save_to=None) -> Verification:
    """Verify a layer object (Deep Learning from Scratch 2's ``TimeRNN``/``TimeLSTM``/``TimeGRU``).

    ``make(Wx, Wh, b)`` builds the layer; it has ``forward(xs) -> hs``, ``backward(dhs) -> dxs``,
    its gradients in ``grads`` (in the order of ``params``), ``set_state(h)``, and ``dL/dh0`` in
    ``dh``. The other arguments are those of :func:`verify_layer`.

    Returns
    -------
    Verification
    """
    _check_sizes(D=D, H=H, T=T, N=N)
    replayed, D, H, _ = _replay_sizes(replay, D, H, None)
    model = _model(cell, D, H, loss="upstream")
    L = layout_for(layout, cell)
    adapter = LayerObject(model, L, Signature((), ()), make)
    plan = Plan(T=T, N=N, scale=scale, seed=seed, lengths=lengths)
    zero = tuple(s for s in model.state_names if s != "h")
    declared = Declared(_meta("object", cell, L), lambda D, H: _model(cell, D, H, loss="upstream"), (make,), save_to,
                        cli=_cli_expressible(cell, layout, None))
    return _run(adapter, lambda: _layer_problems(model, plan, T, seed, zero), declared, replayed)


def verify_loss(fn, cell="rnn-tanh", layout="cs231n", *, D=3, H=4, K=3, T=8, N=3, loss="cross-entropy",
                reduction="sum", architecture="many-to-many", mask=False, scale=None, seed=0, signature=None,
                module=None, lengths=(1, 2, 3), truncation=None, clip=None, replay=None,
                save_to=None, search=0, num_layers=1, bidirectional=False, merge="concat",
                residual=False, zero_states=()) -> Verification:
    """Verify a loss function that returns the loss and its gradients for a batch.

    The model is declared: ``cell``, sizes, ``loss`` (``cross-entropy``, ``mse``), ``reduction``
    (``sum``, ``mean``, ``batch-mean``: sum over time and mean over the batch, ``token-mean``) and
    ``architecture``; ``mask=True`` draws padding masks (CS231n's ``mask``).  Parameters reach the
    function as its signature says: a dict, positional arguments, or the globals of ``module``
    (default: the function's own module when the signature passes no parameters).

    ``truncation=k`` (or ``(k1, k2)``) declares truncated BPTT (:mod:`symrnn.truncated`: the
    state crosses chunks, the gradient does not), verified exactly; the signature may pass
    ``k`` (or ``k1``, ``k2``) to the function.  ``clip=("value", 5.0)`` (or ``"norm"``,
    ``"global-norm"``) declares clipping of the parameter gradients after the backward.

    ``num_layers``, ``bidirectional``, ``merge`` and ``residual`` declare a stacked or
    bidirectional network (:class:`symrnn.StackedModel`); its loss function takes
    ``(params, x, h0[, c0], y)`` with PyTorch's ``state_dict`` names (``layout="pytorch"``) or
    symrnn's keys (``layout="symrnn"``), ``h0`` shaped as PyTorch's ``h_0``
    (:mod:`symrnn.verify.stack`); ``grads["x"]``, ``grads["h0"]``, ``grads["c0"]`` (or ``dx`` ...),
    when returned, are judged too.

    Returns
    -------
    Verification

    Examples
    --------
    A CS231n-style loss, ``loss(params, x, h0, y, mask) -> (loss, grads)``, with ``x`` of
    shape ``(N, T, D)`` and a softmax readout, summed over time and averaged over the batch:

    >>> import numpy as np, symrnn.verify as V
    >>> def rnn_loss(params, x, h0, y, mask):
    ...     Wx, Wh, b, Wv, bv = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
    ...     N, T, _ = x.shape
    ...     h, prev = np.zeros((N, T, len(b))), h0
    ...     for t in range(T):
    ...         prev = h[:, t] = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
    ...     s = h @ Wv + bv
    ...     p = np.exp(s - s.max(axis=2, keepdims=True)); p /= p.sum(axis=2, keepdims=True)
    ...     n, k = np.indices((N, T))
    ...     loss = -(np.log(p[n, k, y]) * mask).sum() / N
    ...     ds = p.copy(); ds[n, k, y] -= 1; ds *= mask[..., None] / N
    ...     g = {"W_vocab": np.einsum("ntk,ntv->kv", h, ds), "b_vocab": ds.sum(axis=(0, 1)),
    ...          "Wx": 0, "Wh": 0, "b": 0}
    ...     dh, carry = ds @ Wv.T, np.zeros_like(h0)
    ...     for t in reversed(range(T)):
    ...         da = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
    ...         g["Wx"] = g["Wx"] + x[:, t].T @ da
    ...         g["Wh"] = g["Wh"] + (h0 if t == 0 else h[:, t - 1]).T @ da
    ...         g["b"] = g["b"] + da.sum(axis=0)
    ...         carry = da @ Wh.T
    ...     return loss, g
    >>> result = V.verify_loss(rnn_loss, "rnn-tanh", "cs231n", reduction="batch-mean", mask=True)
    >>> result.ok, [c.T for c in result.cases]
    (True, [8, 1, 2, 3])
    """
    if num_layers != 1 or bidirectional or residual:
        return _verify_stack_loss(fn, cell, layout, D=D, H=H, K=K, T=T, N=N, loss=loss, reduction=reduction,
                                  architecture=architecture, scale=scale, seed=seed, signature=signature,
                                  lengths=lengths, clip=clip, save_to=save_to, num_layers=num_layers,
                                  bidirectional=bidirectional, merge=merge, residual=residual)
    _check_sizes(D=D, H=H, K=K, T=T, N=N)
    replayed, D, H, K = _replay_sizes(replay, D, H, K)
    cell_name = _cell_name(cell)
    layout_for(layout, cell)  # an unknown layout is refused as such, before its calling convention
    sig = signature_for(signature or (layout if isinstance(layout, str) else "cs231n"), "loss", cell if not isinstance(cell, str) else cell_name)
    if "x_ids" in sig.forward_args:
        D, N = K, 1  # one sequence of one-hot inputs
    model = _model(cell, D, H, K, loss=loss, reduction=reduction, architecture=architecture)
    L = layout_for(layout, cell)
    adapter = LossFunction(model, L, sig, fn, module)
    plan = Plan(T=T, N=N, scale=scale, seed=seed, lengths=lengths)

    def targets(rng, T_in, N_):
        T_out = {"many-to-one": 1, "one-to-one": 1}.get(architecture, T_in)
        if loss == "cross-entropy":
            return rng.integers(0, K, size=(T_out, N_))
        return rng.normal(size=(T_out, N_, K))

    if architecture not in ("many-to-many", "many-to-one"):
        raise UnknownNameError(f"verify_loss supports the architectures many-to-many and many-to-one, "
                               f"got {architecture!r}.")
    zero = _zero_states(model, sig, zero_states)
    problems = []
    for k, t in enumerate([T] + _lengths(plan)):
        p = draw(model, plan, t, f"T={t}", seed + k, zero, loss_targets=targets)
        if "x_ids" in sig.forward_args:
            p.x = np.eye(D)[np.random.default_rng(seed + k).integers(0, D, size=(t, 1))]
        if mask and "mask" in sig.forward_args:
            lengths_n = np.random.default_rng(seed + k).integers(1, t + 1, size=plan.N)
            lengths_n[0] = t
            p.mask = np.arange(t)[:, None] < lengths_n[None, :]
        problems.append(p)
    kwargs = dict(loss=loss, reduction=reduction, architecture=architecture)
    declared = Declared(_meta("loss", cell, L, K=K, **kwargs),
                        None if "x_ids" in sig.forward_args else lambda D, H: _model(cell, D, H, K, **kwargs),
                        (fn,), save_to, search=0 if "x_ids" in sig.forward_args or mask else search,
                        zero_states=zero, cli=_cli_expressible(cell, layout, signature) and module is None)
    if search and not declared.search:
        declared.notes.append(f"search={search} was not run: drawn cases have no "
                              + ("one-hot inputs from class ids" if "x_ids" in sig.forward_args else "padding masks")
                              + "; only the fixed cases ran")
    return _run(adapter, lambda: problems, declared, replayed, truncation, clip)


def _forward_fingerprint(model, problem, run):
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


def _verify_stack_loss(fn, cell, layout, *, D, H, K, T, N, loss, reduction, architecture, scale, seed, signature,
                       lengths, clip, save_to, num_layers, bidirectional, merge, residual):
    from ..wiring import StackedModel
    from .stack import StackLayout, StackLossFunction, draw_stack

    _check_sizes(D=D, H=H, K=K, T=T, N=N)
    if architecture not in ("many-to-many", "many-to-one"):
        raise UnknownNameError(f"verify_loss supports the architectures many-to-many and many-to-one, "
                               f"got {architecture!r}.")
    key = ("stack", _cell_name(cell), D, H, K, num_layers, bidirectional, merge, residual, loss, reduction,
           architecture)
    if key not in _MODELS or not isinstance(cell, str):
        _MODELS[key] = StackedModel(builtin_cell(cell) if isinstance(cell, str) else cell, D=D, H=H, K=K,
                                    num_layers=num_layers, bidirectional=bidirectional, merge=merge,
                                    residual=residual, architecture=architecture, loss=loss, reduction=reduction)
    model = _MODELS[key]
    L = StackLayout(layout if layout != "cs231n" else "pytorch", model)
    states = tuple(f"{s}0" for s in model.state_names)
    sig = signature if isinstance(signature, Signature) else Signature(("params", "x") + states + ("y",),
                                                                       ("loss", "grads"))
    adapter = StackLossFunction(model, L, sig, fn)
    plan = Plan(T=T, N=N, scale=scale, seed=seed, lengths=lengths)

    def targets(rng, T_in, N_):
        T_out = 1 if architecture == "many-to-one" else T_in
        if loss == "cross-entropy":
            return rng.integers(0, K, size=(T_out, N_))
        return rng.normal(size=(T_out, N_, K))

    problems = [draw_stack(model, plan, t, f"T={t}", seed + k, targets) for k, t in enumerate([T] + _lengths(plan))]
    declared = Declared(_meta("loss", cell, L, K=K, loss=loss, reduction=reduction, architecture=architecture,
                              num_layers=num_layers, bidirectional=bidirectional, merge=merge, residual=residual),
                        None, (fn,), save_to, cli=False)
    return run_cases(adapter, _declared(problems, None, clip), "loss", L.name, declared)


def _cli_expressible(cell, layout, signature):
    return isinstance(cell, str) and isinstance(layout, str) and (signature is None or isinstance(signature, str))


def _meta(mode, cell, layout, **more):
    return dict(mode=mode, cell=_cell_name(cell), layout=layout.name, **more)


def _replay_sizes(replay, D, H, K):
    """``(problem, D, H, K)``: a saved case and its sizes, or the given sizes."""
    if replay is None:
        return None, D, H, K
    meta, problem = load_case(replay)
    return (meta, problem), meta["D"], meta["H"], meta.get("K", K)


def _run(adapter, problems, declared, replayed=None, truncation=None, clip=None):
    if replayed is not None:
        meta, problem = replayed
        given = (None if truncation is None else as_truncation(truncation), as_clipping(clip))
        if any(g is not None and g != saved for g, saved in zip(given, (problem.truncation, problem.clip))):
            raise UnknownNameError(f"The case was saved with truncation={problem.truncation} and clip={problem.clip}; "
                                   f"a replay runs it as saved: drop truncation=/clip= (or verify anew).")
        for key in ("mode", "cell", "layout", "loss", "reduction", "architecture"):
            if key in meta and meta[key] != declared.meta.get(key):
                raise UnknownNameError(
                    f"The case was saved by a verification with {key}={meta[key]!r}, not {declared.meta.get(key)!r}: "
                    f"replay it as it was declared (" + ", ".join(f"{k}={v!r}" for k, v in meta.items()
                                                               if k in ("mode", "cell", "layout", "loss", "reduction",
                                                                        "architecture")) + ").")
        declared.replaying = True
    mode = "layer" if declared.meta["mode"] == "object" else declared.meta["mode"]
    if replayed is not None:
        return run_cases(adapter, [replayed[1]], mode, adapter.layout.name, declared)
    cases = _declared(problems(), truncation, clip)
    if declared.search:
        found = search_failure(adapter, declared, max(p.T for p in cases), cases[0].truncation, cases[0].clip)
        cases += [found] if found is not None else []
    result = run_cases(adapter, cases, mode, adapter.layout.name, declared)
    if declared.search and result.ok:
        result.searched = declared.search
    return result

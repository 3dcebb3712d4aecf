"""Running the cases of a verification: each problem's run judged, then, for the shortest failing
case, the diagnosis (named mistake, undeclared clipping or truncation, localisation) and the
minimal case, all put into one :class:`~symrnn.verify.result.Verification`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits

from ..models.clipping import as_clipping
from ..errors import ShapeError, UnknownNameError, UserCodeError
from ..models.truncated import Truncation, as_truncation
from .assess import assess
from .directions import time_order_of_dx
from .diagnose import MASK_LEFT_OUT, common_factor, explain_clipping, fingerprint, forward_fingerprint, localise, \
    mask_left_out, matches_candidate, message_probe, refine_by_fingerprint, swapped_returns, transposed_returns, \
    wrong_input_steps
from .kinks import explain_kinks
from .modes import run_twice
from .precision import Float32Rounding, explain_precision
from .lines import exact_line
from .problems import LONG_MARK, exact, padding_mask, settle_clipping
from .replay import replay_command
from .result import CaseResult, Verification
from .shrink import judged_failure, load_case, prefix, rebuilder, save_case, shrink, shrinks_steps


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
    masks: bool = False  # the user's loss takes a padding mask: drawn cases get one too
    found: str = ""  # the cell and layout found from the code (verify_layer(..., cell=None)), for the report
    command: object = None  # path -> the replay command, when the user declared less than the verifier ran


def search_failure(adapter, declared, max_T, truncation=None, clip=None):
    """A failing case found by Hypothesis among ``declared.search`` drawn problems (shrunk by
    Hypothesis), or None: one whose forward differs from the cell's (or is not finite), whose
    gradients are wrong, or on which the user's code raises.  The run of the cases then reports it as
    any other case.  Deterministic: derandomized, no example database."""
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample

    from ..strategies import problems

    def prepare(problem):
        h0 = {s: np.zeros_like(v) if s in declared.zero_states else v for s, v in problem.h0.items()}
        if declared.masks:  # padded sequences of drawn lengths, the first one full
            problem = replace(problem, mask=padding_mask(np.random.default_rng([problem.T, problem.N]), problem.T,
                                                         problem.N))
        return replace(problem, h0=h0, truncation=truncation, clip=clip)

    def fails(problem):  # a differing or non-finite forward, a wrong gradient or the code raising
        problem = prepare(problem)
        try:
            run = adapter.run(problem, [])
        except UserCodeError:
            return True
        except (ShapeError, ValueError, ArithmeticError):
            return False
        forward, _, verdicts = assess(adapter, problem, run, exact(adapter.model, problem))
        return not forward.ok or any(not v.ok for v in verdicts or ())

    try:
        strategy = getattr(adapter, "strategy", None) or problems  # a stacked model draws its own
        found = find(strategy(adapter.model, max_T=max_T), fails,
                     settings=settings(max_examples=declared.search, derandomize=True, database=None,
                                       suppress_health_check=list(HealthCheck), deadline=None))
    except NoSuchExample:
        return None
    return replace(prepare(found), label=f"T={found.T}, N={found.N}, found by search (symrnn.strategies)")


# -- running the cases ------------------------------------------------------------------------
@dataclass
class Runs:
    """Every case's outcome: what the report's table, cases and error model show."""

    cases: list  # CaseResult per case run (a differing forward stops the run)
    forward: object  # the ForwardCheck shown: the differing one, else the first
    dtype_model: object  # float32 when any case needs it
    table: list  # the verdicts of the case shown (the shortest failing one)
    table_case: str
    failing: list  # (problem, run, exact, dtype model, verdicts) of each case with a wrong gradient
    forward_mistake: object  # a catalogued mistake of the forward the loss matches, or None
    hygiene: list  # the findings, each once
    chaotic: list = field(default_factory=list)  # (label, step) of each case whose forward came apart
    nondeterministic: list = field(default_factory=list)  # cases whose two calls were judged differently


def run_cases(adapter, problems, mode, layout_name, declared=None):
    """Run every problem: forward first, then the gradients; the shortest failing case is reported,
    localised and, when it matches a catalogued mistake, named; then shrunk and saved.

    BLAS runs on one thread meanwhile: the verifier's products are small, and on a busy machine
    a second BLAS thread made them up to ten times slower (``reports/benchmarks.md``)."""
    with threadpool_limits(limits=1, user_api="blas"):
        runs = _run_each(adapter, problems, mode)
        ok = bool(runs.forward.ok and all(c.ok for c in runs.cases))
        flaky = runs.nondeterministic  # no mistake to name or place: another call returns other numbers
        mutation, explanation, line = _name_mistake(adapter, [] if flaky else runs.failing, runs.forward_mistake)
        localisation, minimal, evidence = {}, {}, {}
        if runs.failing and declared is not None and not declared.replaying and not flaky:
            shortest = min(runs.failing, key=lambda f: f[0].T)[0]
            minimal = minimal_case(adapter, shortest, declared, explanation is None, evidence)
        plain = runs.failing and not flaky and mutation is None and explanation is None
        scaled = common_factor(runs.failing) if plain else None
        if scaled:  # every gradient off by one factor: no step or path to point at
            localisation = {"message": scaled}
        elif runs.failing and not flaky and not isinstance(explanation, Float32Rounding):  # rounding: nothing to place
            localisation = _localisation(adapter, runs.failing, problems, mode, declared, mutation,
                                         evidence.get("shortest"))
        apart = _wrong_apart_only(adapter, runs.failing) if runs.failing and not flaky and mutation is None else ""
        localisation = dict(localisation, message=apart) if apart else localisation
        if minimal:
            localisation = _with_shortest_prefix(localisation, minimal["T"], runs.cases)
    searched = declared.search if declared is not None and not declared.replaying and ok else 0
    return Verification(ok, mode, adapter.model.cell.name, layout_name, runs.forward, runs.table, runs.cases,
                        runs.hygiene, runs.dtype_model, runs.table_case, localisation=localisation,
                        fingerprint=mutation, explanation=explanation, minimal=minimal, exact_line=line,
                        notes=(list(declared.notes) if declared is not None else []) + _chaos_notes(runs.chaotic),
                        found=declared.found if declared is not None else "", searched=searched,
                        nondeterministic=flaky)


def _chaos_notes(chaotic):
    """What the report says of each case whose gradients were not judged."""
    return [f"case {label!r} not judged: its forward is chaotic at the code's precision (rounding moves the "
            f"states by a tenth of their size from step {step} on, so correct code that rounds otherwise follows "
            f"another trajectory, with other gradients); the shorter cases were judged (a shorter T or smaller "
            f"weights judge the long range)" for label, step in chaotic]


def _run_each(adapter, problems, mode):
    """Run and judge every problem in turn; a forward that differs ends the run."""
    findings, cases, table, table_case = [], [], None, ""
    forward_result, dtype_model = None, None
    failing, forward_mistake, chaotic, nondeterministic = [], None, [], []
    todo = list(problems)
    for problem in todo:  # grows by the judged prefix of a chaotic case
        run = run_twice(adapter, problem, findings, mode)
        ex = exact(adapter.model, problem)
        fwd, model_dtype, verdicts = assess(adapter, problem, run, ex)
        other = _judged_apart(adapter, problem, run, ex, (fwd, model_dtype, verdicts))
        if other is not None:  # one call right, the other wrong: the wrong one is the case's verdict
            (fwd, model_dtype, verdicts), record = other
            nondeterministic.append(record)
            run = run.first_call if record["wrong_call"] == "first" else run
        dtype_model = model_dtype if model_dtype.name == "float32" else dtype_model or model_dtype
        if not fwd.ok:
            forward_result = fwd
            forward_mistake = forward_fingerprint(adapter.model, problem, run)
            cases.append(CaseResult(problem.label, problem.T, problem.N, False, ["forward"]))
            table, table_case = [], problem.label
            break
        forward_result = forward_result or fwd
        if fwd.chaotic is not None:
            cases.append(CaseResult(problem.label, problem.T, problem.N, True, [], judged=False))
            chaotic.append((problem.label, fwd.chaotic))
            before = prefix(adapter.model, problem, fwd.chaotic // 2) if fwd.chaotic // 2 > 3 else None
            if before is not None and all(p.T != before.T for p in todo):
                todo.append(replace(before, label=f"T={before.T}, the first steps of {problem.label!r}, before "
                                                  f"its chaos"))
            continue
        wrong = [v.name for v in verdicts if not v.ok]
        cases.append(CaseResult(problem.label, problem.T, problem.N, not wrong, wrong))
        shortest_failing = [c.T for c in cases[:-1] if not c.ok]
        if table is None or (wrong and (not shortest_failing or problem.T < min(shortest_failing))):
            table, table_case = verdicts, problem.label  # the shortest failing case shows the mistake best
        if wrong:
            failing.append((problem, run, ex, model_dtype, verdicts))
    unique = []
    for f in findings:
        if all(f.message != g.message for g in unique):
            unique.append(f)
    return Runs(cases, forward_result, dtype_model, table or [], table_case, failing, forward_mistake, unique,
                chaotic, nondeterministic)


def _judged_apart(adapter, problem, run, ex, second):
    """When the first of the two calls on the same inputs (:func:`~symrnn.verify.modes.run_twice`) returned
    other numbers and is judged otherwise than the second (``second``: its ``assess``): ``(the wrong call's
    assessment, a record: the case, the names judged apart, which call was wrong, each call's (error,
    tolerance) of those names)``, else None.  Differences within the tolerance (rounding in another
    order) stay a hygiene warning."""
    first = run.first_call
    if first is None or (_same(first.grads, run.grads) and _same(first.states, run.states)):
        return None
    calls = (assess(adapter, problem, first, ex), second)
    wrong = [["forward"] if not f.ok else [v.name for v in vs if not v.ok] for f, _, vs in calls]
    if wrong[0] == wrong[1]:
        return None
    bad = 0 if wrong[0] else 1  # the call judged wrong (the first, when both are, each otherwise)
    names = [n for n in wrong[bad] if n not in wrong[1 - bad]] or wrong[bad]
    by_name = [{v.name: (v.max_abs_error, v.tolerance) for v in vs or ()} for _, _, vs in calls]
    record = {"case": problem.label, "names": names, "wrong_call": ("first", "second")[bad],
              "errors": {n: [b.get(n) for b in by_name] for n in names}}
    return calls[bad], record


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def _wrong_apart_only(adapter, failing) -> str:
    """What the report says when every gradient of symrnn's own parameters is exact and only an array they
    do not hold apart is wrong (PyTorch's ``bias_hh``, added to ``bias_ih``), else ``""``."""
    if not all(matches_candidate(run, ex.grads, ex, d.unit) for _, run, ex, d, _ in failing):
        return ""
    names = list(dict.fromkeys(v.name for *_, verdicts in failing for v in verdicts if not v.ok))
    second, first = adapter.layout.names.get("b_hh"), adapter.layout.names.get("b")
    added = (f"; {second} is added to {first} in the cell, so the exact d{second} equals d{first}"
             if isinstance(second, str) and isinstance(first, str) else "")
    return (f"every gradient of the cell's own parameters, inputs and initial states is exact; only "
            f"{', '.join(names)} is wrong{added}")


def _name_mistake(adapter, failing, forward_mistake):
    """``(fingerprint, explanation, exact line)``: another convention at relu's kink or float32
    rounding that explains the failing cases, else the catalogued mistake they match (or the
    forward's), else the undeclared clipping or truncation that explains them."""
    model = adapter.model
    if not failing:
        return forward_mistake, None, {}
    if not model.one_cell:  # several cells wired: no single-cell sweep
        mistake = forward_mistake or time_order_of_dx(adapter, failing)  # a bidirectional layer's dx
        return mistake, None if mistake is not None else explain_clipping(model, failing), {}
    if all(matches_candidate(run, ex.grads, ex, d.unit) for _, run, ex, d, _ in failing):
        return None, None, {}  # wrong only in what symrnn's names do not hold apart (a second bias): nothing to name
    kink = explain_kinks(model, failing)  # before the catalogue: at a kink, "relu' missing" gives the same numbers
    if kink is not None:
        return None, kink, {}
    rounding = explain_precision(adapter, failing)
    if rounding is not None:
        return None, rounding, {}
    if mask_left_out(model, failing) is not None:
        return MASK_LEFT_OUT, None, {}
    mutation = transposed_returns(adapter, failing) or swapped_returns(adapter, failing) or \
        fingerprint(adapter, failing)
    if mutation is None:
        return None, explain_clipping(model, failing), {}
    undeclared = mutation.truncation and failing[0][0].truncation is None
    return mutation, Truncation(*mutation.truncation) if undeclared else None, exact_line(model, mutation)


def _localisation(adapter, failing, problems, mode, declared, mutation, shortest_prefix=None):
    """Where the mistake is: the probes' findings on the failing cases, the message probe's (layer
    mode) and what the named mistake says; ``shortest_prefix``: ``(T, last wrong step)`` of the
    smallest failing prefix (:func:`minimal_case`), which places a mistake when the probe cannot run."""
    shortest = min(failing, key=lambda f: f[0].T)
    probe = next((f for f in failing if f[0].label.endswith("at the last step only")), None)
    short = [p.T for p in problems if not p.label.endswith(LONG_MARK)]  # the long case: when only it fails
    T_main = max(short) if any(not f[0].label.endswith(LONG_MARK) for f in failing) else max(p.T for p in problems)
    messages = message_probe(adapter, declared, T_main) if mode == "layer" else None
    carry = mutation.drop_carry[0] if mutation is not None and mutation.drop_carry and messages is None else None
    loc = localise(adapter, *(probe or shortest), state=carry, shortest=None if messages else shortest_prefix)
    if probe is not None and probe is not shortest:
        shortest_loc = localise(adapter, *shortest)
        loc.update({k: v for k, v in shortest_loc.items() if k in ("gradient", "block")})
    if messages is not None:
        loc.update(_probe_localisation(messages, T_main))
    refine_by_fingerprint(loc, mutation, adapter, shortest[0].T)
    if carry is not None:
        loc["path"] = carry
    return _sent_to_the_start(adapter.model, failing, loc)


#: the probe's sentence when it cannot tell a message from a local derivative (diagnose.place_first_wrong)
UNDECIDED = re.compile(r"the first wrong thing is at step (\d+): the backward message \((.*?)\) from t=\d+ to t=(\d+), "
                       r"or else a local derivative at t=\d+ \((.*?) is right for t > \d+; steps from 1; what this "
                       r"verification sees cannot tell the two apart(.*)\)$", re.S)


def _sent_to_the_start(model, failing, loc):
    """``loc`` told, when a one-step case fails in the initial states' gradients only and a longer case
    in more, that the wrong thing is the message a step sends back to the states before it (at T = 1 it
    reaches the initial states; every gradient step 1 computes from its own values is right), not a local
    derivative: the probe's "or else a local derivative" resolved."""
    said = UNDECIDED.match(loc.get("message") or "")
    if (said is None and loc.get("message")) or not getattr(model, "one_cell", False):
        return loc
    starts = {model.initial_state_key(s): s for s in model.cell.states}

    def wrong(run, ex):
        return {k for k in ex.grads if k in run.grads and np.any(
            np.abs(np.asarray(run.grads[k], dtype=float) - ex.grads[k]) > ex.tol[k])}
    one = [wrong(run, ex) for problem, run, ex, _, _ in failing if problem.T == 1]
    longer = [wrong(run, ex) for problem, run, ex, _, _ in failing if problem.T > 1]
    if not one or not all(w and w <= set(starts) for w in one) or not any(w - set(starts) for w in longer):
        return loc
    keys = sorted(set().union(*one), key=list(starts).index)
    evidence = (f"in the one-step case only the initial states' gradients ({', '.join('d' + k for k in keys)}) are "
                f"wrong, and every gradient step 1 computes from its own values is right")
    if said is None:  # no probe spoke (loss mode): what the one-step case shows
        message = f"the backward message ({', '.join('dL/d' + starts[k] for k in keys)}) a step sends to the one " \
                  f"before is wrong, not a local derivative: {evidence}"
        return dict(loc, path=loc.get("path") or starts[keys[0]], message=message)
    step, message, before, inputs, rest = said.groups()
    return dict(loc, path=loc.get("path") or starts[keys[0]], message=(
        f"the first wrong thing is at step {step}: the backward message ({message}) from t={step} to t={before}, "
        f"not a local derivative ({inputs} is right for t > {before}; steps from 1{rest}): {evidence}"))


def _probe_localisation(messages, T_main):
    """The step, path, message (and gate blocks, when some are right) the message probe found."""
    out = {"step": messages["step"], "path": messages["path"], "message": messages["message"]}
    wrong, right = messages["blocks_wrong"], messages["blocks_right"]
    if right and wrong:
        at = messages["step"] if messages.get("local") else messages["step"] - 1  # the step the message reaches
        out["block"] = ",".join(wrong)
        out["message"] += (f"; at t={at} the gate block(s) {', '.join(wrong)} receive a wrong gradient, "
                           f"{', '.join(right)} a right one")
    return out


def _with_shortest_prefix(loc, T_min, cases):
    """The localisation with the shortest failing prefix, and what it says when no finer probe spoke."""
    T_ok = [c.T for c in cases if c.ok]
    out = dict(loc, shortest_failing_T=T_min)
    if T_min > 1 and all(t < T_min for t in T_ok) and not out.get("message"):
        out["step"] = T_min
        out["message"] = (f"right for sequences of up to {T_min - 1} step(s), wrong from T={T_min} on: the "
                          f"mistake is in what reaches step {T_min - 1} from step {T_min}, or in a term that "
                          f"only a sequence of {T_min} steps has")
    return out


def minimal_case(adapter, problem, declared, unexplained=True, evidence=None):
    """Shrink and save; a mistake that clipping does not explain stays unexplained in the smaller
    case (at T = 1 clipping inside the loop and after it give the same numbers).  ``evidence`` (a
    dict) receives ``shortest``, a function that gives ``(T, last step from 0 whose input gradient is
    wrong)`` of the shortest failing prefix of ``problem`` (the steps keep their indices), when the
    shrinking tries prefixes."""
    def still_fails(a, p):
        failure = judged_failure(a, p)
        return failure is not None and not (unexplained and explain_clipping(a.model, [failure]))

    rebuild = None if declared.make_model is None else rebuilder(adapter, declared.make_model)
    small_adapter, small = shrink(adapter, problem, still_fails, rebuild)
    if evidence is not None and shrinks_steps(adapter.model):
        evidence["shortest"] = lambda: _last_wrong_step(adapter, problem, small.T)
    model = small_adapter.model
    meta = dict(declared.meta, D=model.sizes["D"], H=model.sizes["H"])
    small = replace(small, label=f"minimal case T={small.T}, N={small.N}, D={model.sizes['D']}, "
                                 f"H={model.sizes['H']} (shrunk from {problem.label})")
    path = save_case(small, meta, declared.save_to)
    command = declared.command(path) if declared.command is not None else replay_command(declared, path)
    return {"path": path, "T": small.T, "N": small.N, "D": model.sizes["D"], "H": model.sizes["H"],
            "command": command}


def _last_wrong_step(adapter, problem, T):
    """``(T, last step from 0 whose input gradient is wrong)`` of the first ``T`` steps of ``problem``,
    judged at the case's own sizes and values (the minimal case's rounded values may zero an input
    weight), or None."""
    cut = problem if T == problem.T else prefix(adapter.model, problem, T)
    try:
        failure = judged_failure(adapter, cut)
    except (UserCodeError, ShapeError, ValueError, ArithmeticError):  # ran while shrinking; never trusted blindly
        return None
    bad = None if failure is None else wrong_input_steps(adapter.model, cut, failure[1], failure[2])
    return (T, max(bad)) if bad else None


# -- the declared cases, or a saved one again -------------------------------------------------
def declared_problems(problems, truncation=None, clip=None):
    """The problems with the declared truncated BPTT and clipping (see :mod:`symrnn.models.truncated`,
    :mod:`symrnn.models.clipping`): the exact gradients are those a trainer with them uses."""
    truncation, clip = (None if truncation is None else as_truncation(truncation)), as_clipping(clip)
    return [replace(p, truncation=truncation, clip=clip) for p in problems]


def replay_sizes(replay, D, H, K):
    """``(problem, D, H, K)``: a saved case and its sizes, or the given sizes."""
    if replay is None:
        return None, D, H, K
    meta, problem = load_case(replay)
    return (meta, problem), meta["D"], meta["H"], meta.get("K", K)


_DECLARED_KEYS = ("mode", "cell", "layout", "loss", "reduction", "architecture")


def _check_replay(replayed, declared, truncation, clip):
    """A saved case runs as it was declared: refuse another truncation, clipping or declaration."""
    meta, problem = replayed
    given = (None if truncation is None else as_truncation(truncation), as_clipping(clip))
    if (given[0] is not None and given[0] != problem.truncation) or (
            given[1] is not None and problem.clip not in given[1].conventions()):
        raise UnknownNameError(f"The case was saved with truncation={problem.truncation} and clip={problem.clip}; "
                               f"a replay runs it as saved: drop truncation=/clip= (or verify anew).")
    for key in _DECLARED_KEYS:
        if key in meta and meta[key] != declared.meta.get(key):
            raise UnknownNameError(
                f"The case was saved by a verification with {key}={meta[key]!r}, not {declared.meta.get(key)!r}: "
                f"replay it as it was declared (" + ", ".join(f"{k}={v!r}" for k, v in meta.items()
                                                           if k in _DECLARED_KEYS) + ").")


def run_declared(adapter, problems, declared, replayed=None, truncation=None, clip=None):
    """The verification of a declaration: its cases (``problems()``) and, with ``declared.search``, a
    failing case Hypothesis finds; or, ``replayed``, the saved case alone."""
    mode = "layer" if declared.meta["mode"] == "object" else declared.meta["mode"]
    if replayed is not None:
        _check_replay(replayed, declared, truncation, clip)
        return run_cases(adapter, [replayed[1]], mode, adapter.layout.name, replace(declared, replaying=True))
    cases = settle_clipping(adapter, declared_problems(problems(), truncation, clip))
    if declared.search:
        found = search_failure(adapter, declared, max(p.T for p in cases), cases[0].truncation, cases[0].clip)
        cases += [found] if found is not None else []
    return run_cases(adapter, cases, mode, adapter.layout.name, declared)

"""Mutants of the exact backward pass: the mistakes people make, for naming a wrong gradient.

:func:`backward` runs the exact reverse sweep of a cell (the one
:func:`symrnn.engine.bptt.assemble` builds from the local terms) with NumPy, step by step.
Without a mutation it gives the exact gradients of a layer (``loss="upstream"``); a
:class:`Mutation` changes one thing, the way a hand-written backward goes wrong.  What a
mistake changes in a step is a change of the sweep's terms (:func:`mutated_sweep`); the
rest is in the loop over the steps and the final sums:

* a local derivative rewritten (an activation's derivative missing, or taken
  at the pre-activation), for one function application of one equation;
* the message a state receives from the next step dropped (the recurrent term,
  or the LSTM's cell-state path);
* the parameter gradients assembled wrongly (the first or last step's term
  missing, ``h_t`` in place of ``h_{t-1}``, divided by ``T`` or ``N``, the bias
  not summed over the batch, a recurrent matrix used untransposed);
* two gates' pre-activation gradients swapped (two blocks of a stacked gradient);
* the running parameter gradients clipped after every step;
* truncation: each step's gradient sent back ``k`` steps, the sequence cut in chunks of
  ``k`` (min-char-rnn), and, for a declared truncation, the carried state reset or the
  truncation off by one step.

:data:`CATALOGUE` declares them; :func:`mutations_for` instantiates the ones
whose pattern exists in a cell (for user-defined cells too).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from .. import cache
from ..engine.bptt import assemble
from ..engine.functions import derivative, step, tie_step, to_vocabulary
from ..engine.jacobians import step_values, vector_function
from ..engine.stored import from_srepr, own_functions_only
from ..engine.symbols import MatVec, Param, bar, linear_maps, parse, tsym
from ..models.truncated import Truncation, truncated_loss_and_grads


@dataclass(frozen=True)
class Mutation:
    """One mistake, as a change to the exact reverse sweep."""

    name: str
    description: str  # in words a student understands
    where: str = ""  # the equation or quantity concerned
    rewrite: tuple = ()  # ((target, application, "missing" | "at-pre-activation" | "as-output" | a KINK_VALUES key),)
    rewrite_at: str = ""  # "first" | "last": the rewrite at that step only (empty: at every step)
    drop_carry: tuple = ()  # states whose message from step t+1 is not added
    skip_step: str = ""  # "first" | "last": that step's term missing from the parameter gradients
    skip_only: tuple = ()  # ... from these parameters' gradients only (empty: all)
    only_step: str = ""  # "first" | "last": the gradients of only_for hold that step's term alone (= for +=)
    only_for: tuple = ()
    first_step_skipped: bool = False  # the backward loop stops before step 1: dL/ds_0 is dL/ds_1
    current_for_previous: bool = False  # h_t where h_{t-1} belongs, in the parameter gradients
    divide_by: str = ""  # "T" | "N"
    multiply_by: str = ""  # "T" | "N": a sum where a mean was declared
    readout_too: bool = False  # with a readout, its gradients are scaled too (else only the recurrent layer's)
    bias_first_example: bool = False
    bias_mean: bool = False  # the bias gradients averaged over the batch (the other gradients summed)
    last_steps: int = 0  # the backward loop runs over the last k steps only (then returns its carry)
    untransposed: bool = False  # P used where P^T belongs, for square recurrent matrices
    swap: tuple = ()  # (A, B): the gradients of two gates' pre-activations exchanged
    clip_inside: float = 0.0  # the running parameter gradients clipped to [-c, c] after every step
    clip_inside_from_user: bool = False  # c is the largest |entry| the user's code returned
    truncation: tuple = ()  # (k1, k2): truncated BPTT's gradient (symrnn.models.truncated)
    reset_state: bool = False  # ... with every window started from the initial state
    scale_message: tuple = ()  # (state, t, factor): the message state[t] receives from step t+1 scaled (a probe)
    changes: str = ""  # the adjoint or gradient it changes (for the report)


#: a rewrite's mode for another value of ``step(0)`` (relu's derivative) than symrnn's 0
KINK_VALUES = {"kink-one": lambda u: 1 - step(-u), "kink-half": tie_step}

# -- a mistake as a change of the sweep's terms ------------------------------------------------
EXACT = Mutation("exact", "")


class _Transposed(Param):
    """``P`` standing where the sweep sends back through ``P^T``: a matrix used untransposed."""


_CACHE = weakref.WeakKeyDictionary()  # cell -> {"sweeps": {...}, "functions": {...}}: symbolic work once


def _cached(cell, kind):
    return _CACHE.setdefault(cell, {"sweeps": {}, "functions": {}})[kind]


def _exact_sweep(cell, out=None):
    """The cell's sweep; the upstream gradient enters at ``out`` (default: the output state)."""
    out = out or cell.output_state
    sweeps = _cached(cell, "sweeps")
    if out not in sweeps:
        sweeps[out] = assemble(cell.equations, cell.states, cell.input_symbol, list(cell.params), (out,))
    return sweeps[out]


def mutated_sweep(model, mutation):
    """The exact sweep of ``model``'s cell (:func:`symrnn.engine.bptt.assemble`) changed as ``mutation``
    says: derivatives rewritten, two gates' terms exchanged, ``h_t`` for ``h_{t-1}`` in the
    parameters' terms, ``P`` for ``P^T`` back to the previous state, a state's carry dropped.
    (The rest of a mistake is in the loop over steps and the sums: see :func:`backward`.)"""
    cell, m = model.cell, mutation
    square = tuple(p for p, shape in sorted(model.param_shapes.items())
                   if m.untransposed and p in cell.params and len(shape) == 2 and shape[0] == shape[1])
    key = (model.out, m.rewrite, m.swap, m.current_for_previous, square, m.drop_carry)
    sweeps = _cached(cell, "sweeps")
    if key not in sweeps:
        sweep = _exact_sweep(cell, model.out)
        if m.rewrite:
            sweep = sweep.map(lambda u, t: _rewritten(cell, u, t, m.rewrite))
        if m.swap:
            sweep = _swapped(cell, sweep, *m.swap)
        if m.current_for_previous:
            sweep = sweep.map(lambda u, t: replace(t, vector=tsym(parse(t.vector)[0]))
                              if t.vector is not None and parse(t.vector)[1] == -1 else t)
        if square:
            sweep = sweep.map(lambda u, t: replace(t, matrix=_Transposed(t.matrix.name))
                              if t.vector is None and t.matrix is not None and t.matrix.name in square
                              and parse(u) is not None and parse(u)[1] == -1 else t)
        for s in m.drop_carry:
            sweep = sweep.replace_adjoint(tsym(s), carried=False)
        sweeps[key] = sweep
    return sweeps[key]


def _rewritten(cell, u, term, rewrite):
    """``term`` with its coefficient re-derived under the rewritten derivatives of its equation."""
    if all(target != term.consumer for target, _, _ in rewrite):
        return term
    eq = next(e for e in cell.equations if e.target == term.consumer)
    wrt = u
    if term.matrix is not None:
        vector = term.vector if term.vector is not None else u
        wrt = next(m for m in linear_maps(eq.rhs) if m.args[0] == term.matrix and m.args[1] == vector)
    return replace(term, coef=_coef(eq, wrt, rewrite))


def _flat(rhs):
    """``rhs`` with each product ``P v`` a symbol (named so that no cell's symbol can be: the same
    product gets the same symbol every time, so derivatives taken again are remembered)."""
    atoms = {m: sp.Symbol(f"{m.args[0].name}@{m.args[1]}") for m in linear_maps(rhs)}
    return rhs.xreplace(atoms), {d: m for m, d in atoms.items()}, atoms


def _coef(eq, u, rewrite):
    """d rhs / d u (u a quantity, or a product ``P v``), with a rewritten derivative of one
    function application where ``rewrite`` says (kept in the disk cache, :mod:`symrnn.cache`, for
    equations of symrnn's own functions)."""
    if not own_functions_only(eq.rhs):
        return _derive_coef(eq, u, rewrite)
    key = sp.srepr((eq.target, eq.rhs, u, rewrite))
    return from_srepr(cache.get_or_build("mutant-coefficient", key, lambda: sp.srepr(_derive_coef(eq, u, rewrite))))


def _derive_coef(eq, u, rewrite):
    flat, restore, atoms = _flat(eq.rhs)
    u = atoms.get(u, u)
    exact = derivative(flat, u)
    for target, app, mode in rewrite:
        if target != eq.target:
            continue
        app_flat = app.xreplace(atoms)
        F = sp.Symbol(f"{type(app).__name__}({app_flat.args[0]})")  # the application as a symbol
        with_F = flat.xreplace({app_flat: F})
        inner = derivative(app_flat.args[0], u)
        if F not in with_F.free_symbols or inner == 0:
            continue
        fprime = to_vocabulary(app_flat.fdiff(1))  # the function's own rule, at its argument
        if mode == "missing":
            fprime = sp.Integer(1)
        elif mode == "as-output":  # sigma where sigma (1 - sigma) belongs
            fprime = app_flat
        elif mode in KINK_VALUES:  # another convention at the kink: step(0) = 1 or 1/2 (symrnn's is 0)
            fprime = fprime.replace(step, KINK_VALUES[mode])
        else:  # the derivative written in terms of the output, evaluated at the pre-activation
            fprime = fprime.xreplace({app_flat: app_flat.args[0]})
        exact = (derivative(with_F, u) + derivative(with_F, F) * fprime * inner).xreplace({F: app_flat})
    return exact.xreplace({flat: eq.target}).xreplace(restore)


def _gate_shape(eq):
    """``(function, {vector: matrix}, bias)`` of ``act(P1 v1 + ... + b)``, or None."""
    apps = [a for a in eq.rhs.atoms(sp.Function) if not isinstance(a, MatVec)]
    if len(apps) != 1 or eq.rhs != apps[0] or len(apps[0].args) != 1:
        return None
    maps, biases = {}, []
    for term in sp.Add.make_args(apps[0].args[0]):
        if isinstance(term, MatVec):
            maps[term.args[1]] = term.args[0]
        elif isinstance(term, Param):
            biases.append(term)
        else:
            return None
    return (type(apps[0]), maps, tuple(biases)) if maps and len(biases) <= 1 else None


def _swapped(cell, sweep, a, b):
    """The sweep with gate ``a``'s terms through its matrices and bias carrying gate ``b``'s
    adjoint and coefficient, and the other way round (the matrices they multiply stay)."""
    shapes = {eq.target: _gate_shape(eq) for eq in cell.equations}
    (_, maps_a, bias_a), (_, maps_b, bias_b) = shapes[a], shapes[b]
    partner = {}
    for pa, pb in [(maps_a[v], maps_b[v]) for v in maps_a] + list(zip(bias_a, bias_b)):
        partner[pa], partner[pb] = pb, pa
    other = {a: b, b: a}

    index = {(t.consumer, u, t.matrix): t for u, t in _all_terms(sweep)}

    def exchange(u, t):
        if t.consumer not in other or (u not in partner and t.matrix not in partner):
            return t
        mate = index.get((other[t.consumer], partner.get(u, u), partner.get(t.matrix, t.matrix)))
        return t if mate is None else replace(t, consumer=mate.consumer, coef=mate.coef)
    return sweep.map(exchange)


def _all_terms(sweep):
    return sweep.sent_to() + [(Param(p), t) for p, ts in sweep.params.items() for t in ts]


def input_terms(model):
    """The terms through which the input is read (``P x_t``), in the sweep's order."""
    return list(_exact_sweep(model.cell).inputs)


def recurrent_matrices(cell):
    """The parameters that multiply a previous state (``W`` in ``W h[t-1]``)."""
    sweep = _exact_sweep(cell)
    return [name for name, spec in cell.params.items() if spec.is_matrix
            and any(t.vector is not None and parse(t.vector)[1] == -1 for t in sweep.params[name])]


def swappable_gates(cell):
    """Pairs of gates of the same form (``act(U x + W h + b)``: LSTM i, f, g, o; GRU r, z)."""
    shapes = {eq.target: _gate_shape(eq) for eq in cell.equations if eq.kind == "let"}
    names = [t for t, s in shapes.items() if s is not None]
    return [(a, b) for k, a in enumerate(names) for b in names[k + 1:]
            if set(shapes[a][1]) == set(shapes[b][1]) and len(shapes[a][2]) == len(shapes[b][2])]


# -- the sweep run with NumPy ------------------------------------------------------------------
class _Numeric:
    """A sweep evaluated with NumPy: its coefficients at all steps at once, its sums step by step."""

    def __init__(self, cell, sweep, values, params):
        functions = _cached(cell, "functions")
        self.sweep, self.values, self.params = sweep, values, params
        self.coefs = {}
        for _, t in _all_terms(sweep):
            if t.coef not in self.coefs:
                if t.coef not in functions:
                    functions[t.coef] = vector_function(t.coef)
                self.coefs[t.coef] = functions[t.coef](values, params)

    def q(self, term, adj, t):
        """``coef * bar consumer`` at step ``t``."""
        c = self.coefs[term.coef]
        return adj[term.consumer] * (c[t] if np.ndim(c) == 3 else c)

    def sends(self, terms, adj, t, absolute=False):
        """What ``terms`` send back at step ``t`` (``absolute``: the sum of their |values|)."""
        total = 0
        for term in terms:
            q = self.q(term, adj, t)
            if term.matrix is not None:
                P = self.params[term.matrix.name]
                P = P.T if isinstance(term.matrix, _Transposed) else P
                q = np.abs(q) @ np.abs(P) if absolute else q @ P
            elif absolute:
                q = np.abs(q)
            total = total + q
        return total

    def adjoints(self, t, upstream, carry, absolute=False):
        """``{y[t]: bar y[t]}`` at step ``t``, in the sweep's order (``absolute``: each the sum of the
        |values| of its terms, the step's own sums never cancelling)."""
        adj = {}
        for a in self.sweep.adjoints:
            total = np.zeros_like(self.values[a.target][t])
            if a.external:
                total = total + (np.abs(upstream) if absolute else upstream)
            if a.carried:
                message = carry[parse(a.target)[0]]
                total = total + (np.abs(message) if absolute else message)
            adj[a.target] = total + self.sends(a.sends, adj, t, absolute)
        return adj


def backward(model, params, X, h0, upstream, final_grads=None, mutation=None, term_scales=False, record=None):
    """:func:`_backward` without warnings: a mistaken sweep (a derivative left out) may overflow where
    the user's code does not, and the user sees the warnings of their own code only."""
    with np.errstate(all="ignore"):
        return _backward(model, params, X, h0, upstream, final_grads, mutation, term_scales, record)


def _backward(model, params, X, h0, upstream, final_grads=None, mutation=None, term_scales=False, record=None):
    """Gradients of ``sum_t <upstream_t, h_t> (+ <final, s_T>)`` by the cell's sweep run with NumPy
    step by step (``mutation``: changed as :func:`mutated_sweep` says, and the loop and the sums as
    the mutation says); keys as ``Model.loss_and_grads``.

    With ``term_scales=True`` each returned entry is instead the sum of the absolute values of
    the terms that make it up, each step's adjoints summed with the absolute values of their own
    terms (the messages between steps propagate as usual): the scale of the rounding error of
    sums that cancel, in whatever order and grouping correct code evaluates one step's chain rule
    (a backward that leaves out a path that contributes exactly zero, as an sLSTM's detached
    stabiliser, sums larger terms that cancel).  ``record`` (a dict) receives, per
    step, what each product ``P x_t`` carries back (``{t: {P: (N, rows)}}``): the gate blocks."""
    m = mutation or EXACT
    if m.truncation:
        return truncated_loss_and_grads(model, params, X, upstream, Truncation(*m.truncation), h0,
                                        reset_state=m.reset_state)[1]
    cell = model.cell
    params, X, S0 = model._prepare_inputs(params, X, h0)
    values = step_values(model, params, X, model.cell_code.forward(params, X, S0, model.sizes))
    T, N = X.shape[0], X.shape[1]
    mutated = _Numeric(cell, mutated_sweep(model, m), values, params)
    exact = _Numeric(cell, mutated_sweep(model, replace(m, rewrite=())), values, params) if m.rewrite_at else mutated
    rewritten_step = {"first": 0, "last": T - 1}.get(m.rewrite_at)
    grads = {k: np.zeros(model.param_shapes[k]) for k in cell.params if not cell.params[k].fixed}  # no spreads
    dX = np.zeros_like(X)
    carry = {s: np.array((final_grads or {}).get(s, np.zeros((N, model.state_size(s)))), dtype=float)
             for s in cell.states}
    first = max(T - m.last_steps, 0) if m.last_steps else int(m.first_step_skipped)  # steps before it never run
    for t in range(T - 1, first - 1, -1):
        num = mutated if rewritten_step in (None, t) else exact
        if m.scale_message and m.scale_message[1] == t:
            carry[m.scale_message[0]] = carry[m.scale_message[0]] * m.scale_message[2]
        adj = num.adjoints(t, upstream[t], carry)
        scales = num.adjoints(t, upstream[t], carry, absolute=True) if term_scales else adj
        carry = {s: num.sends(ts, scales if t == 0 else adj, t, term_scales and t == 0)
                 for s, ts in num.sweep.carries.items()}
        dX[t] = num.sends(num.sweep.inputs, scales, t, term_scales)
        if record is not None:
            record[t] = {term.matrix.name: num.q(term, adj, t) for term in num.sweep.inputs if term.matrix is not None}
        skipped = (m.skip_step == "first" and t == 0) or (m.skip_step == "last" and t == T - 1)
        alone = {"first": 0, "last": T - 1}.get(m.only_step, t)  # the step whose term an assignment keeps
        for name in grads:
            if t != alone and name in m.only_for:
                continue
            if not (skipped and (not m.skip_only or name in m.skip_only)):
                _collect(grads[name], num, num.sweep.params[name], scales, t, m, term_scales)
    scale = {"T": 1.0 / T, "N": 1.0 / N}.get(m.divide_by, 1.0) * {"T": T, "N": N}.get(m.multiply_by, 1.0)
    out = {k: v * scale for k, v in grads.items()}
    out[model.input_name] = dX
    for s in cell.states:
        out[model.initial_state_key(s)] = carry[s]
    return out


def _collect(grad, num, terms, adj, t, m, absolute):
    """Adds step ``t``'s terms of one parameter to its running gradient (in place)."""
    for term in terms:
        q = num.q(term, adj, t)
        q = np.abs(q) if absolute else q
        if term.vector is not None:
            v = num.values[term.vector][t]
            grad += q.T @ (np.abs(v) if absolute else v)
        else:
            n = q.shape[0]
            q = q[:1] if m.bias_first_example else q
            grad += q.sum(axis=0) / (n if m.bias_mean else 1)
    if m.clip_inside:
        np.clip(grad, -m.clip_inside, m.clip_inside, out=grad)


def candidate(model, problem, mutation):
    """The gradients an implementation with ``mutation`` returns on ``problem`` (a verifier's
    :class:`~symrnn.verify.problems.Problem`): the layer's, or, with a readout and a loss, the
    readout's exact gradients and the recurrent part through the mutated sweep (without warnings)."""
    with np.errstate(all="ignore"):
        return _candidate(model, problem, mutation)


def _candidate(model, problem, mutation):
    if mutation.truncation:
        return truncated_loss_and_grads(model, problem.params, problem.x, problem.targets,
                                        Truncation(*mutation.truncation), problem.h0, problem.mask,
                                        reset_state=mutation.reset_state)[1]
    if model.readout is None:
        upstream = np.asarray(problem.targets, dtype=float)
        if problem.mask is not None:
            upstream = upstream * problem.mask[..., None]
        return backward(model, problem.params, problem.x, problem.h0, upstream, problem.final_grads, mutation)
    r = readout_upstream(model, problem)
    out = backward(model, r.params, r.X, r.S0, r.upstream, problem.final_grads, mutation)
    out[model.input_name] = out[model.input_name][r.input_steps]
    scale = ({"T": 1.0 / r.X.shape[0], "N": 1.0 / r.X.shape[1]}.get(mutation.divide_by, 1.0)
             * {"T": r.X.shape[0], "N": r.X.shape[1]}.get(mutation.multiply_by, 1.0)) if mutation.readout_too else 1.0
    out["V"] = scale * np.einsum("tnk,tnh->kh", r.dO, r.Hs)
    out["c"] = scale * r.dO.sum(axis=(0, 1))
    if mutation.clip_inside and mutation.readout_too:  # the readout's running sums clipped step by step too
        V, c, lim = np.zeros_like(out["V"]), np.zeros_like(out["c"]), mutation.clip_inside
        for t in range(r.dO.shape[0] - 1, -1, -1):
            V = np.clip(V + r.dO[t].T @ r.Hs[t], -lim, lim)
            c = np.clip(c + r.dO[t].sum(axis=0), -lim, lim)
        out["V"], out["c"] = V, c
    return out


@dataclass
class _Readout:
    params: dict
    X: np.ndarray
    S0: dict
    upstream: np.ndarray  # dL/dh_t from the readout, (T, N, H)
    dO: np.ndarray  # dL/do_t at the scored steps
    Hs: np.ndarray  # h_t at the scored steps
    input_steps: slice


def readout_upstream(model, problem) -> _Readout:
    """The exact readout's part of a loss: what reaches each ``h_t`` (the recurrent part's upstream)."""
    params, X, Y, S0, sched, mask = model._prepare(problem.params, problem.x, problem.targets, problem.h0,
                                                   problem.mask)
    _, cache, _, dO = model._run_forward(params, X, Y, S0, sched, mask)
    steps = slice(sched.output_steps.start, sched.output_steps.stop)
    Hs = cache[f"S_{model.out}"][1:][steps]
    upstream = np.zeros((X.shape[0],) + Hs.shape[1:])
    upstream[steps] = dO @ params["V"]
    return _Readout(params, X, S0, upstream, dO, Hs, slice(sched.input_steps.start, sched.input_steps.stop))


# -- the catalogue ---------------------------------------------------------------------------
def applications(cell):
    """``(equation, application)`` of every activation-like function in the step equations."""
    out = []
    for eq in cell.equations:
        for app in sorted(eq.rhs.atoms(sp.Function), key=sp.default_sort_key):
            if isinstance(app, MatVec) or len(app.args) != 1:
                continue
            if type(app).__name__ in ("tanh", "sigmoid", "relu", "exp", "log", "sin", "cos"):
                out.append((eq, app))
    return out


def mutations_for(model, T=8, truncation=None):
    """Every catalogued mistake whose pattern exists in ``model``'s cell (for a declared
    :class:`~symrnn.models.truncated.Truncation`: the mistakes of truncated BPTT)."""
    if truncation is not None:
        return _truncation_mistakes(truncation, T)
    out = _derivative_mistakes(model.cell) + _carry_mistakes(model) + _assembly_mistakes(model)
    out += [Mutation(f"backward-over-last-{k}-steps", f"the backward loop runs over the last {k} step"
                                                      f"{'s' if k > 1 else ''} only (for t in reversed(range(T - {k}, T))):"
                                                      f" the earlier steps add nothing to the gradients",
                     last_steps=k, changes="bar h[t]")
            for k in range(1, T - 1)]  # k = T - 1 is first-step-skipped
    if model.architecture.name != "many-to-many":  # truncation is defined for a loss at every step
        return out
    out += [Mutation(f"truncated-after-{k}", f"BPTT is truncated: each upstream gradient travels back {k} "
                                             f"step{'s' if k > 1 else ''} only", truncation=(1, k),
                     changes="bar h[t]")
            for k in range(1, T)]
    out += [Mutation(f"chunks-of-{k}", f"BPTT in chunks of {k} steps (min-char-rnn's truncation, TBPTT(k1=k2={k})): "
                                       f"the gradient does not cross the chunk boundaries; declare "
                                       f"truncation={k} if that is intended", truncation=(k, k), changes="bar h[t]")
            for k in range(2, T)]
    return out


def _derivative_mistakes(cell):
    """A local derivative wrong: missing (everywhere, or at the first or last step only), taken at
    the pre-activation, or the gate written for its derivative."""
    out = []
    for eq, app in applications(cell):
        fn = type(app).__name__
        base = parse(eq.target)[0]
        role = cell.roles.get(base, "")
        where = f"{base}[t]" + (f" (the {role})" if role else "")
        out.append(Mutation(f"{fn}-derivative-missing",
                            f"the derivative of {fn} in {where} is missing: the gradient passes through {fn} as "
                            f"if it were the identity", where=str(eq.target), rewrite=((eq.target, app, "missing"),),
                            changes=str(bar(eq.target))))
        for at, words in (("last", "the last step (t = T)"), ("first", "the first step (t = 1)")):
            out.append(Mutation(f"{fn}-derivative-missing-at-{at}-step",
                                f"the derivative of {fn} in {where} is missing at {words} only: that step is "
                                f"handled apart from the loop and passes the gradient through {fn} as if it were "
                                f"the identity", where=str(eq.target), rewrite=((eq.target, app, "missing"),),
                                rewrite_at=at, changes=str(bar(eq.target))))
        if fn in ("tanh", "sigmoid"):
            out.append(Mutation(f"{fn}-derivative-at-pre-activation",
                                f"the derivative of {fn} in {where} is computed from the pre-activation instead of "
                                f"the {fn} output (e.g. 1 - a**2 instead of 1 - tanh(a)**2)", where=str(eq.target),
                                rewrite=((eq.target, app, "at-pre-activation"),), changes=str(bar(eq.target))))
        if fn == "sigmoid":
            out.append(Mutation("sigmoid-derivative-as-output",
                                f"the derivative of sigmoid in {where} is written as the gate itself, s instead of "
                                f"s * (1 - s)", where=str(eq.target), rewrite=((eq.target, app, "as-output"),),
                                changes=str(bar(eq.target))))
    return out


def _carry_mistakes(model):
    """A state's message from the next step dropped, two gates' blocks swapped."""
    cell, out = model.cell, []
    for s in cell.states:
        role = "recurrent term" if s == model.out else f"{s} path"
        out.append(Mutation("recurrent-term-dropped" if s == model.out else f"{s}-path-dropped",
                            f"the {role} is dropped: dL/d{s}_t does not include what step t+1 sends back "
                            f"(the gradient does not flow across steps through {s})", where=s, drop_carry=(s,),
                            changes=f"bar {s}[t]"))
    for a, b in swappable_gates(cell):
        a_, b_ = parse(a)[0], parse(b)[0]
        out.append(Mutation(f"gate-blocks-{a_}-{b_}-swapped",
                            f"the gradients of the {a_} and {b_} gates' pre-activations are swapped: two blocks of "
                            f"the stacked gate gradient are in the wrong order (a slicing or gate-order mistake), "
                            f"so every gradient computed from them is wrong", where=f"{a}, {b}", swap=(a, b),
                            changes=f"the pre-activation adjoints of {a_} and {b_}"))
    return out


def _assembly_mistakes(model):
    """The parameter gradients put together wrongly: steps missing, scaled, the bias, a transpose,
    clipping inside the loop."""
    cell = model.cell
    out = [
        Mutation("first-term-missing", "the t = 1 term (the first step's, with h_0) is missing from the parameter "
                                       "gradients: the loop over time stops one step early", skip_step="first",
                 changes="dL/dW"),
        Mutation("h0-term-missing", "the t = 1 term of the recurrent weights' gradient (the outer product "
                                    "with h_0) is missing: the loop that adds the h_{t-1} products starts "
                                    "at t = 2", skip_step="first", skip_only=tuple(recurrent_matrices(cell)),
                 changes="dL/dW"),
        Mutation("first-step-skipped", "the backward loop stops before the first step (range(T - 1, 0, -1)): "
                                       "step 1 adds nothing to the gradients, and what step 2 sends back to h_1 is returned as "
                                       "dL/dh_0",
                 first_step_skipped=True, changes="bar h[t]"),
        Mutation("last-term-missing", "the t = T term (the last step's) is missing from the parameter gradients",
                 skip_step="last", changes="dL/dW"),
        Mutation("h-t-for-h-prev", "h_t is used where h_{t-1} belongs in the outer products of the "
                                   "recurrent weights' gradient", current_for_previous=True, changes="dL/dW"),
        Mutation("divided-by-T", "the parameter gradients are divided by T (a mean over time where a sum "
                                 "was declared)", divide_by="T", changes="dL/dW"),
        Mutation("divided-by-N", "the parameter gradients are divided by N (a mean over the batch where a sum "
                                 "was declared)", divide_by="N", changes="dL/dW"),
        Mutation("multiplied-by-T", "the parameter gradients are T times too large (a sum over time where a "
                                    "mean was declared)", multiply_by="T", changes="dL/dW"),
        Mutation("multiplied-by-N", "the parameter gradients are N times too large (a sum over the batch where "
                                    "a mean was declared)", multiply_by="N", changes="dL/dW"),
    ]
    if model.readout is not None:  # the same mistakes made in the whole backward, readout included
        out += [replace(m, readout_too=True) for m in out if m.divide_by or m.multiply_by]
    out += [
        Mutation("bias-not-summed", "the bias gradient is taken from the first example of the batch instead "
                                    "of summed over the batch", bias_first_example=True, changes="dL/db"),
        Mutation("bias-averaged-over-batch", "the bias gradient alone is averaged over the batch (a mean where "
                                             "every other gradient is a sum): it is N times too small",
                 bias_mean=True, changes="dL/db"),
        Mutation("matrix-not-transposed", "a recurrent matrix is used where its transpose belongs when the "
                                          "gradient is sent back to the previous state (dh @ W instead of "
                                          "dh @ W.T)", untransposed=True, changes="bar h[t-1]"),
        Mutation("clipped-inside-backward", "the running parameter gradients are clipped after every step, "
                                            "inside the backward loop (clipping belongs after the backward, on "
                                            "the finished gradients)", clip_inside_from_user=True, changes="dL/dW"),
    ]
    if model.readout is not None:  # min-char-rnn clips every gradient, the readout's too
        out.append(replace(out[-1], readout_too=True))
    from .assigned import assigned_mistakes

    return out + assigned_mistakes(cell)


def _truncation_mistakes(truncation, T):
    k1, k2 = truncation.k1, truncation.k2
    out = [Mutation("carried-state-reset", f"each window of {truncation} starts from the initial state instead of "
                                           f"the state carried over from the previous chunk (the forward must "
                                           f"carry the state; only the gradient stops)", reset_state=True,
                    truncation=(k1, k2), changes="h[t]")]
    for d in (-1, 1):
        j1, j2 = (k1 + d, k2 + d) if k1 == k2 else (k1, k2 + d)
        if 1 <= j1 <= j2 and (j1, j2) != (k1, k2):
            shown = f"k={j1}" if k1 == k2 else f"k2={j2}"
            out.append(Mutation(f"truncation-off-by-one-{'short' if d < 0 else 'long'}",
                                f"the truncation is off by one step: the code truncates at {shown} where "
                                f"{truncation} was declared", truncation=(j1, j2), changes="bar h[t]"))
    out.append(Mutation("not-truncated", f"the code computes the full BPTT gradient, not {truncation}'s",
                        truncation=(T, T), changes="bar h[t]"))
    return out

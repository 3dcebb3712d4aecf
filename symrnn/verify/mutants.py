"""Mutants of the exact backward pass: the mistakes people make, for naming a wrong gradient.

:func:`backward` is a second, plain reverse sweep over a cell's step equations
(the adjoint terms of :func:`symrnn.bptt.local_terms`, each local derivative
by ``sympy.diff``, evaluated step by step with NumPy).  Without a mutation it
gives the exact gradients of a layer (``loss="upstream"``); a :class:`Mutation`
changes one thing in it, the way a hand-written backward goes wrong:

* a local derivative rewritten (an activation's derivative missing, or taken
  at the pre-activation), for one function application of one equation;
* the message a state receives from the next step dropped (the recurrent term,
  or the LSTM's cell-state path);
* the parameter gradients assembled wrongly (the first or last step's term
  missing, ``h_t`` in place of ``h_{t-1}``, divided by ``T`` or ``N``, the bias
  not summed over the batch, a recurrent matrix used untransposed);
* truncation after ``k`` steps.

:data:`CATALOGUE` declares them; :func:`mutations_for` instantiates the ones
whose pattern exists in a cell (for user-defined cells too).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ..bptt import local_terms
from ..functions import absolute, derivative, lambdify_numpy, maximum, to_vocabulary
from ..symbols import MatVec, Param, bar, linear_maps, parse, tsym


@dataclass(frozen=True)
class Mutation:
    """One mistake, as a change to the exact reverse sweep."""

    name: str
    description: str  # in words a student understands
    where: str = ""  # the equation or quantity concerned
    rewrite: tuple = ()  # ((equation target, function application, "missing" | "at-pre-activation"),)
    drop_carry: tuple = ()  # states whose message from step t+1 is not added
    skip_step: str = ""  # "first" | "last": that step's term missing from the parameter gradients
    current_for_previous: bool = False  # h_t where h_{t-1} belongs, in the parameter gradients
    divide_by: str = ""  # "T" | "N"
    bias_first_example: bool = False
    untransposed: bool = False  # P used where P^T belongs, for square recurrent matrices
    truncate: int = 0  # each upstream gradient travels back at most this many steps
    changes: str = ""  # the adjoint or gradient it changes (for the report)


# -- the sweep ---------------------------------------------------------------------------------
@dataclass
class _Compiled:
    equations: list
    terms: dict
    coefs: dict = field(default_factory=dict)  # (target, u) -> (symbols, function)


def _flat(rhs):
    atoms = {m: sp.Dummy(f"m{k}") for k, m in enumerate(linear_maps(rhs))}
    return rhs.xreplace(atoms), {d: m for m, d in atoms.items()}, atoms


def _coef(eq, u, rewrite):
    """d rhs / d u (u a quantity, or the dummy of a product ``P v``), with a rewritten
    derivative of one function application when asked."""
    flat, restore, atoms = _flat(eq.rhs)
    u = atoms.get(u, u)
    exact = derivative(flat, u)
    for target, app, mode in rewrite:
        if target != eq.target:
            continue
        app_flat = app.xreplace(atoms)
        F = sp.Dummy("F")
        with_F = flat.xreplace({app_flat: F})
        if F not in with_F.free_symbols:
            continue
        inner = derivative(app_flat.args[0], u)
        if inner == 0:
            continue
        fprime = to_vocabulary(app_flat.fdiff(1))  # the function's own rule, at its argument
        if mode == "missing":
            fprime = sp.Integer(1)
        else:  # the derivative written in terms of the output, evaluated at the pre-activation
            fprime = fprime.xreplace({app_flat: app_flat.args[0]})
        exact = (derivative(with_F, u) + derivative(with_F, F) * fprime * inner).xreplace({F: app_flat})
    return exact.xreplace({flat: eq.target}).xreplace(restore)


def _conditioned(coef):
    """``|c| + sum_v |dc/dv| max(|v|, 1)``: a local derivative's size plus its sensitivity to the
    rounding of the forward values it reads, relative for large values and absolute (``u``) for
    small ones, as tanh and sigmoid round (``1 - h**2`` and ``o (1 - o)`` near saturation are tiny
    but not computed to a tiny absolute error).  Used for the term scales of :func:`backward`."""
    if coef.is_number:
        return abs(coef)
    atoms = {m: sp.Dummy() for m in coef.atoms(MatVec)}
    restore = {d: m for m, d in atoms.items()}
    flat = coef.xreplace(atoms)
    total = absolute(coef)
    for v in sorted(flat.free_symbols, key=sp.default_sort_key):
        d = derivative(flat, v)
        if d != 0:
            total = total + absolute(d.xreplace(restore)) * maximum(absolute(v.xreplace(restore)), 1)
    return total


_COMPILED = weakref.WeakKeyDictionary()  # cell -> {(mutation, conditioned): _Compiled}: symbolic work once


def _compile(cell, mutation, conditioned=False):
    per_cell = _COMPILED.setdefault(cell, {})
    key = (mutation, conditioned)
    if key not in per_cell:
        per_cell[key] = _compile_now(cell, mutation, conditioned)
    return per_cell[key]


def _compile_now(cell, mutation, conditioned):
    terms = local_terms(cell.equations)
    c = _Compiled(list(cell.equations), terms)
    for u, ts in terms.items():
        for t in ts:
            key = (t.consumer, u if t.matrix is None or t.vector is not None else ("mat", t.matrix, u))
            if key in c.coefs:
                continue
            eq = next(e for e in cell.equations if e.target == t.consumer)
            wrt = u
            if t.matrix is not None:
                wrt = next(m for m in linear_maps(eq.rhs) if m.args[0] == t.matrix
                           and (m.args[1] == (t.vector if t.vector is not None else u)))
            expr = _coef(eq, wrt, mutation.rewrite) if mutation else t.coef
            if conditioned:  # |c| + its sensitivity to the rounding of what it reads
                expr = _conditioned(expr)
            flat, restore, atoms = _flat(expr)
            symbols = sorted(flat.free_symbols, key=sp.default_sort_key)
            c.coefs[key] = (symbols, restore, lambdify_numpy(symbols, flat))
    return c


def _values(model, params, X, cache, t):
    cell = model.cell
    v = {cell.input_symbol: X[t]}
    for s in cell.states:
        v[tsym(s, -1)], v[tsym(s)] = cache[f"S_{s}"][t], cache[f"S_{s}"][t + 1]
    for eq in cell.equations:
        if eq.kind == "let":
            v[eq.target] = cache[f"C_{parse(eq.target)[0]}"][t]
    for name, spec in cell.params.items():
        if not spec.is_matrix:
            v[Param(name)] = params[name]
    return v


def _evaluate(entry, values, params):
    symbols, restore, fn = entry
    args = []
    for s in symbols:
        if s in restore:
            P, vec = restore[s].args
            args.append(values[vec] @ params[P.name].T)
        else:
            args.append(values[s])
    return fn(*args)


def backward(model, params, X, h0, upstream, final_grads=None, mutation=None, term_scales=False):
    """Gradients of ``sum_t <upstream_t, h_t> (+ <final, s_T>)`` by a plain reverse sweep
    (``mutation`` changes it); keys as ``Model.loss_and_grads``.

    With ``term_scales=True`` each returned entry is instead the sum of the absolute values of
    the terms that make it up (the adjoints themselves propagate as usual): the scale of the
    rounding error of the last sums, where cancellation shows."""
    if mutation is not None and mutation.truncate:
        return _truncated(model, params, X, h0, upstream, mutation)
    cell = model.cell
    params_c, X, S0 = model._prepare_inputs(params, X, h0)
    cache = model.cell_code.forward(params_c, X, S0, model.sizes)
    compiled = _compile(cell, mutation or Mutation("exact", ""))
    assembly = _compile(cell, mutation or Mutation("exact", ""), conditioned=True) if term_scales else compiled
    T, N = X.shape[0], X.shape[1]
    grads = {k: np.zeros(s) for k, s in ((k, model.param_shapes[k]) for k in cell.params)}
    dX = np.zeros_like(X)
    carry = {s: np.array((final_grads or {}).get(s, np.zeros((N, model.state_size(s)))), dtype=float)
             for s in cell.states}
    m = mutation or Mutation("exact", "")
    for t in range(T - 1, -1, -1):
        values = _values(model, params_c, X, cache, t)
        adj = {}
        for eq in reversed(compiled.equations):
            y = eq.target
            base = parse(y)[0]
            total = np.zeros_like(values[y])
            if base == model.out:
                total = total + upstream[t]
            if eq.kind == "state" and base not in m.drop_carry:
                total = total + carry[base]
            total = total + _sends(compiled, y, adj, values, params_c, m)
            adj[y] = total
        for s in cell.states:
            carry[s] = _sends(assembly if t == 0 else compiled, tsym(s, -1), adj, values, params_c, m,
                              term_scales and t == 0)
        dX[t] = _sends(assembly, cell.input_symbol, adj, values, params_c, m, term_scales)
        if (m.skip_step == "first" and t == 0) or (m.skip_step == "last" and t == T - 1):
            continue
        for name, spec in cell.params.items():
            for term in compiled.terms.get(Param(name), []):
                q = adj[term.consumer] * _evaluate(assembly.coefs[(term.consumer, Param(name))], values, params_c)
                q = np.abs(q) if term_scales else q
                if spec.is_matrix:
                    vec = term.vector
                    if m.current_for_previous and parse(vec)[1] == -1:
                        vec = tsym(parse(vec)[0])
                    grads[name] += q.T @ (np.abs(values[vec]) if term_scales else values[vec])
                else:
                    q = q[:1] if m.bias_first_example else q
                    grads[name] += q.sum(axis=0)
    scale = {"T": 1.0 / T, "N": 1.0 / N}.get(m.divide_by, 1.0)
    out = {k: v * scale for k, v in grads.items()}
    out[model.input_name] = dX
    for s in cell.states:
        out[model.initial_state_key(s)] = carry[s]
    return out


def _sends(compiled, u, adj, values, params, m, absolute=False):
    """What the consumers of ``u`` at this step send back to it (``absolute``: the sum of |terms|)."""
    total = 0
    for term in compiled.terms.get(u, []):
        if term.vector is not None:
            continue
        key = (term.consumer, u) if term.matrix is None else (term.consumer, ("mat", term.matrix, u))
        q = adj[term.consumer] * _evaluate(compiled.coefs[key], values, params)
        if term.matrix is not None:
            P = params[term.matrix.name]
            square_recurrent = m.untransposed and parse(u)[1] == -1 and P.shape[0] == P.shape[1]
            P = P.T if square_recurrent else P
            q = np.abs(q) @ np.abs(P) if absolute else q @ P
        elif absolute:
            q = np.abs(q)
        total = total + q
    return total


def _truncated(model, params, X, h0, upstream, mutation):
    """Each upstream gradient ``dh_t`` travels back ``k`` steps (steps t-k+1 .. t) only."""
    k = mutation.truncate
    params_c, Xc, S0 = model._prepare_inputs(params, X, h0)
    cache = model.cell_code.forward(params_c, Xc, S0, model.sizes)
    T = Xc.shape[0]
    exact = Mutation("exact", "")
    total = None
    for t in range(T):
        start = max(0, t - k + 1)
        states = {s: cache[f"S_{s}"][start] for s in model.state_names}
        dh = np.zeros((t - start + 1,) + upstream.shape[1:])
        dh[-1] = upstream[t]
        g = backward(model, params_c, Xc[start:t + 1], states, dh, mutation=exact)
        if total is None:
            total = {key: np.zeros_like(v) for key, v in g.items() if key != model.input_name}
            total[model.input_name] = np.zeros_like(Xc)
        for key, v in g.items():
            if key == model.input_name:
                total[key][start:t + 1] += v
            elif key in model.param_shapes:
                total[key] += v
            elif start == 0:
                total[key] += v
    return total


# -- the catalogue ---------------------------------------------------------------------------
def _applications(cell):
    """``(equation, application)`` of every activation-like function in the step equations."""
    out = []
    for eq in cell.equations:
        for app in sorted(eq.rhs.atoms(sp.Function), key=sp.default_sort_key):
            if isinstance(app, MatVec) or len(app.args) != 1:
                continue
            if type(app).__name__ in ("tanh", "sigmoid", "relu", "exp", "log", "sin", "cos"):
                out.append((eq, app))
    return out


def mutations_for(model, T=8):
    """Every catalogued mistake whose pattern exists in ``model``'s cell."""
    cell = model.cell
    out = []
    for eq, app in _applications(cell):
        fn = type(app).__name__
        out.append(Mutation(f"{fn}-derivative-missing",
                            f"the derivative of {fn} is missing where {eq.target} = {eq.rhs} is differentiated "
                            f"(the gradient passes through {fn} as if it were the identity)",
                            where=str(eq.target), rewrite=((eq.target, app, "missing"),), changes=str(bar(eq.target))))
        if fn in ("tanh", "sigmoid"):
            out.append(Mutation(f"{fn}-derivative-at-pre-activation",
                                f"the derivative of {fn} in {eq.target} = {eq.rhs} is computed from the "
                                f"pre-activation instead of the {fn} output (e.g. 1 - a**2 instead of "
                                f"1 - tanh(a)**2)", where=str(eq.target), rewrite=((eq.target, app, "at-pre-activation"),),
                                changes=str(bar(eq.target))))
    for s in cell.states:
        role = "recurrent term" if s == model.out else f"{s} path"
        out.append(Mutation("recurrent-term-dropped" if s == model.out else f"{s}-path-dropped",
                            f"the {role} is dropped: dL/d{s}_t does not include what step t+1 sends back "
                            f"(the gradient does not flow across steps through {s})", where=s, drop_carry=(s,),
                            changes=f"bar {s}[t]"))
    out += [
        Mutation("first-term-missing", "the t = 1 term (the first step's, with h_0) is missing from the parameter "
                                       "gradients: the loop over time stops one step early", skip_step="first",
                 changes="dL/dW"),
        Mutation("last-term-missing", "the t = T term (the last step's) is missing from the parameter gradients",
                 skip_step="last", changes="dL/dW"),
        Mutation("h-t-for-h-prev", "h_t is used where h_{t-1} belongs in the outer products of the "
                                   "recurrent weights' gradient", current_for_previous=True, changes="dL/dW"),
        Mutation("divided-by-T", "the parameter gradients are divided by T (a mean over time where a sum "
                                 "was declared)", divide_by="T", changes="dL/dW"),
        Mutation("divided-by-N", "the parameter gradients are divided by N (a mean over the batch where a sum "
                                 "was declared)", divide_by="N", changes="dL/dW"),
        Mutation("bias-not-summed", "the bias gradient is taken from the first example of the batch instead "
                                    "of summed over the batch", bias_first_example=True, changes="dL/db"),
        Mutation("matrix-not-transposed", "a recurrent matrix is used where its transpose belongs when the "
                                          "gradient is sent back to the previous state (dh @ W instead of "
                                          "dh @ W.T)", untransposed=True, changes="bar h[t-1]"),
    ]
    out += [Mutation(f"truncated-after-{k}", f"BPTT is truncated: each upstream gradient travels back {k} "
                                             f"step{'s' if k > 1 else ''} only", truncate=k, changes="bar h[t]")
            for k in range(1, T)]
    return out

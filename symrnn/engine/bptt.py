"""Symbolic BPTT: reverse accumulation over one step of the computation graph.

:func:`local_terms` reads each equation ``y = F(...)`` once and records, for
every quantity ``u`` that ``F`` reads, the term that ``bar y`` sends back to
``bar u``: ``coef * bar y`` for elementwise uses (``coef = dF/du`` from
``sympy.diff``, the diagonal of the Jacobian) and ``P^T (coef * bar y)`` for
a use inside ``P u``.  Parameters collect ``Outer(coef * bar y, u)`` (matrices)
or ``coef * bar y`` (vectors) at every step.

:func:`assemble` is the one place these terms are put together into the reverse
sweep of a step (a :class:`Sweep`: which terms make up each adjoint, what a
state carries to the step before, what the input and each parameter receive).
Everything that runs or shows a backward pass reads a sweep: the printed
:class:`Derivation` (``bar h[t] = V^T bar o[t] + W^T bar a[t+1]`` ..., the
gradients as sums over time, the step Jacobians ``dh_t/dh_{t-1}``), the
generated code (:mod:`symrnn.engine.codegen`), the unrolled graph
(:mod:`symrnn.engine.graph`) and the verifier's mutants (a mistake is a change of
the sweep's terms).  Nothing here depends on the sequence length.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import sympy as sp

from .. import cache
from .functions import derivative
from .stored import cache_key, from_srepr
from .symbols import MatTVec, Outer, Param, bar, linear_maps, parse, shift, tsym


@dataclass(frozen=True)
class Term:
    """What ``bar y`` sends back to one quantity it was computed from."""

    consumer: sp.Symbol  # y[t]
    coef: sp.Expr  # diagonal of dF/du, in forward quantities only
    matrix: Param | None = None  # set when u entered F as matrix @ u
    vector: sp.Symbol | None = None  # for a matrix parameter: the u of matrix @ u

    @property
    def weighted(self) -> sp.Expr:
        """``coef * bar y``: the adjoint of the linear map's output (or the term itself)."""
        return self.coef * bar(self.consumer)

    def jacobian(self, coef=None) -> sp.Expr:
        """The local Jacobian ``d consumer / d u`` in matrix form: ``Diag(coef)``, times ``P``
        for a use inside ``P u`` (``coef`` may be given moved to another step)."""
        coef = self.coef if coef is None else coef
        factor = Diag(coef) if coef != 1 else sp.Integer(1)
        if self.matrix is not None:
            factor = factor * sp.Symbol(self.matrix.name, commutative=False)
        return factor

    def expr(self) -> sp.Expr:
        """The term as an expression: ``coef bar y``, ``P^T(coef bar y)`` or ``(coef bar y) v^T``."""
        if self.vector is not None:
            return Outer(self.weighted, self.vector)
        if self.matrix is not None:
            return MatTVec(self.matrix, self.weighted)
        return self.weighted


def local_terms(equations):
    """``{u: [Term, ...]}`` for every quantity and parameter the equations read.

    Terms for a matrix parameter ``P`` carry ``vector=u`` (from ``P @ u``);
    terms for the vector ``u`` itself carry ``matrix=P``.  The derivatives are kept in the disk
    cache (:mod:`symrnn.cache`) for equations of symrnn's own functions.
    """
    key = cache_key([(e.target, e.rhs) for e in equations])
    if key is None:
        return _local_terms(equations)
    text = cache.get_or_build("local-terms", key, lambda: sp.srepr(tuple(
        (u, tuple((t.consumer, t.coef, t.matrix or "", t.vector or "") for t in ts))
        for u, ts in _local_terms(equations).items())))
    return {u: [Term(c, coef, m or None, v or None) for c, coef, m, v in ts] for u, ts in from_srepr(text)}


def _local_terms(equations):
    terms: dict[sp.Symbol, list[Term]] = {}
    for eq in equations:
        atoms = linear_maps(eq.rhs)
        dummies = {m: sp.Dummy(f"m{k}") for k, m in enumerate(atoms)}
        restore = {d: m for m, d in dummies.items()}
        flat = eq.rhs.xreplace(dummies)

        def coef(wrt, flat=flat, restore=restore, target=eq.target):
            return derivative(flat, wrt).xreplace({flat: target}).xreplace(restore)

        for u in sorted(flat.free_symbols - set(restore), key=sp.default_sort_key):
            terms.setdefault(u, []).append(Term(eq.target, coef(u)))
        for m in atoms:
            P, v = m.args
            c = coef(dummies[m])
            terms.setdefault(v, []).append(Term(eq.target, c, matrix=P))
            terms.setdefault(P, []).append(Term(eq.target, c, matrix=P, vector=v))
    return terms


def adjoint_sum(term_list) -> sp.Expr:
    return sp.Add(*[t.expr() for t in term_list])


class Diag(sp.Function):
    """``diag(v)``: a diagonal matrix, a non-commutative factor in Jacobians."""

    nargs = 1
    is_commutative = False

    def _latex(self, printer):
        return r"\operatorname{diag}\left(%s\right)" % printer._print(self.args[0])


# -- the reverse sweep -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Adjoint:
    """``bar y[t]``: the sum of what ``y``'s consumers send back at this step (``sends``), of an
    array fed in from outside (``external``: a readout's, an upstream loss) and, for a state
    (``carried``), of what step ``t + 1`` sent back to ``y[t-1]``."""

    target: sp.Symbol
    sends: tuple = ()
    external: bool = False
    carried: bool = False


@dataclass(frozen=True)
class Sweep:
    """One step of the reverse sweep, assembled from the local terms by :func:`assemble`.

    ``adjoints`` are in the order a backward pass evaluates them (the equations reversed);
    ``carries[s]`` is what ``s[t-1]`` receives at this step (the next step's carry, and
    ``dL/ds_0`` at the first step); ``inputs`` what ``x[t]`` receives; ``params[name]`` what
    the parameter collects at this step.  Every renderer of the sweep (the printed
    :class:`Derivation`, the generated code, the unrolled graph, the mutant catalogue's
    numeric sweep) reads these and nothing else; a mistake in a backward pass is a
    transformation of them (:meth:`map`, :meth:`replace_adjoint`).
    """

    adjoints: tuple
    carries: dict
    inputs: tuple
    params: dict
    input_symbol: sp.Symbol | None = None

    def sent_to(self):
        """Every ``(u, term)`` that sends an adjoint back to a quantity, in sweep order."""
        out = [(a.target, t) for a in self.adjoints for t in a.sends]
        out += [(tsym(s, -1), t) for s, ts in self.carries.items() for t in ts]
        return out + [(self.input_symbol, t) for t in self.inputs]

    def map(self, f) -> "Sweep":
        """The sweep with every term replaced by ``f(u, term)`` (``u``: what it is sent to)."""
        def over(u, ts):
            return tuple(f(u, t) for t in ts)

        return replace(self, adjoints=tuple(replace(a, sends=over(a.target, a.sends)) for a in self.adjoints),
                       carries={s: over(tsym(s, -1), ts) for s, ts in self.carries.items()},
                       inputs=over(self.input_symbol, self.inputs),
                       params={p: over(Param(p), ts) for p, ts in self.params.items()})

    def replace_adjoint(self, target, **changes) -> "Sweep":
        """The sweep with the adjoint of ``target`` changed (e.g. ``carried=False``)."""
        return replace(self, adjoints=tuple(replace(a, **changes) if a.target == target else a
                                            for a in self.adjoints))

    def step_jacobians(self, states):
        """``{(s, p): d s[t] / d p[t-1]}`` as sums of products of ``Diag`` and matrices,
        accumulated forward along the equations (the adjoints in reverse)."""
        sent = self.sent_to()
        out = {}
        for prev in states:
            jac = {tsym(s, -1): sp.Integer(1 if s == prev else 0) for s in states}
            for a in reversed(self.adjoints):
                jac[a.target] = sp.Add(*[t.jacobian() * jac[u] for u, t in sent
                                         if t.consumer == a.target and jac.get(u, 0) != 0])
            out.update({(s, prev): jac[tsym(s)] for s in states})
        return out


def assemble(equations, states=None, input_symbol=None, params=None, external=(), terms=None) -> Sweep:
    """The reverse sweep of one step of ``equations`` from their local terms (``terms``, by
    default :func:`local_terms`).

    ``states`` (default: the targets of the state equations) carry an adjoint from step to step;
    the bases in ``external`` receive an array from outside; ``params`` names the parameters in
    the order wanted (default: every parameter the terms read).
    """
    terms = local_terms(equations) if terms is None else terms
    if states is None:
        states = [parse(e.target)[0] for e in equations if e.kind == "state"]
    if params is None:
        params = [u.name for u in terms if isinstance(u, Param)]
    read = {e.target for e in equations} | {tsym(s, -1) for s in states} | {input_symbol}
    unread = [u for u in terms if u not in read and not isinstance(u, Param)]
    assert not unread, f"the sweep would drop the terms sent to {unread}"
    adjoints = tuple(Adjoint(e.target, tuple(terms.get(e.target, ())), parse(e.target)[0] in external,
                             e.kind == "state") for e in reversed(list(equations)))
    return Sweep(adjoints, {s: tuple(terms.get(tsym(s, -1), ())) for s in states},
                 tuple(terms.get(input_symbol, ())), {p: tuple(terms.get(Param(p), ())) for p in params},
                 input_symbol)


@dataclass
class AdjointEquation:
    """``bar y[t] = rhs``; ``steps`` says at which steps a term applies (``None``: all)."""

    lhs: sp.Symbol
    rhs: sp.Expr
    note: str = ""


class Derivation:
    """The symbolic BPTT derivation of a model: forward and adjoint equations.

    Attributes
    ----------
    forward : list of ``sympy.Eq``
        The step equations, then the readout, in order.
    loss : dict or None
        What the model's loss rule returns (:mod:`symrnn.engine.losses`): ``"per_step"`` (the loss
        ``L_t`` of one step, an Expr) and ``"gradient"`` (``bar o[t] = ...``, an Eq: the adjoint of
        the logits; None for the ``upstream`` loss); the cross-entropy adds ``"readout"``
        (``yhat[t] = softmax(o[t])``, an Eq), the ``upstream`` loss ``"external"`` (``{state: g[t]}``,
        the gradient fed in from above).
    adjoints : list of :class:`AdjointEquation`
        The adjoint recurrences in the order a backward pass evaluates them.
    gradients : dict ``name -> Expr``
        Each parameter's gradient as ``Sum(term, (t, 1, T))``.
    input_gradient : Expr
        ``dL/dx[t]``.
    initial_state_gradients : dict ``state -> Expr``
        ``dL/ds_0``: the adjoint sent back from step ``t = 1``.
    step_jacobians : dict ``(state, previous state) -> Expr``
        ``ds[t]/ds'[t-1]`` as sums of products of ``Diag`` and matrices.

    Notes
    -----
    :mod:`symrnn.report.display` gives a derivation two methods when :mod:`symrnn.report` is imported (in a
    notebook ``import symrnn`` imports it): ``show(*parts)`` displays the equations with the names of
    the model's report and ``latex(*parts)`` returns them as LaTeX; see :func:`symrnn.report.display.show`.
    """

    def __init__(self, cell, readout_equations=(), loss=None, external=()):
        self.cell = cell
        self.readout_equations = list(readout_equations)
        self.loss = loss
        self.external = dict(external)  # state/let base -> adjoint symbol fed in from outside
        equations = list(cell.equations) + self.readout_equations
        self.terms = local_terms(equations)
        self.forward = [sp.Eq(e.target, e.rhs, evaluate=False) for e in equations]
        self.t = sp.Symbol("t", integer=True, positive=True)
        self.T = sp.Symbol("T", integer=True, positive=True)
        params = [p for p, spec in cell.params.items() if not spec.fixed]  # declaration order, then the readout's
        for eq in self.readout_equations:
            params += [m.args[0].name for m in linear_maps(eq.rhs)]
            params += sorted(s.name for s in eq.rhs.free_symbols if isinstance(s, Param))
        self.sweep = assemble(equations, cell.states, cell.input_symbol, list(dict.fromkeys(params)),
                              self.external, self.terms)
        self._build_adjoints()
        self.gradients = {name: sp.Sum(adjoint_sum(ts), (self.t, 1, self.T)) for name, ts in self.sweep.params.items()}
        self.step_jacobians = self.sweep.step_jacobians(cell.states)

    def _build_adjoints(self):
        """The sweep's adjoints as equations: ``bar y[t] = sum of terms (+ outside) (+ carry)``."""
        self.adjoints = []
        loss_lhs = None
        if self.loss is not None and self.loss.get("gradient") is not None:
            g = self.loss["gradient"]
            loss_lhs = g.lhs
            self.adjoints.append(AdjointEquation(g.lhs, g.rhs, self.loss.get("steps_note", "")))
        for a in self.sweep.adjoints:
            if bar(a.target) == loss_lhs:
                continue  # the loss rule gives this adjoint
            rhs = adjoint_sum(a.sends)
            base = parse(a.target)[0]
            if a.external:
                rhs = rhs + self.external[base]
            if a.carried:
                rhs = rhs + shift(adjoint_sum(self.sweep.carries[base]), 1)
            self.adjoints.append(AdjointEquation(bar(a.target), rhs))
        self.input_gradient = adjoint_sum(self.sweep.inputs)
        self.initial_state_gradients = {s: adjoint_sum(ts) for s, ts in self.sweep.carries.items()}

    def with_term(self, target, new_rhs) -> "Derivation":
        """A copy with one adjoint equation replaced (for mutation testing)."""
        clone = object.__new__(Derivation)
        clone.__dict__.update(self.__dict__)
        clone.adjoints = [replace(a, rhs=new_rhs) if a.lhs == target else a for a in self.adjoints]
        return clone

    def __repr__(self):
        lines = ["Forward:"] + [f"  {e.lhs} = {e.rhs}" for e in self.forward]
        if self.loss is not None:
            lines.append(f"  L[t] = {self.loss['per_step']}")
        lines.append("Adjoints:")
        lines += [f"  {a.lhs} = {a.rhs}" + (f"   ({a.note})" if a.note else "") for a in self.adjoints]
        lines.append("Gradients:")
        lines += [f"  dL/d{k} = {v}" for k, v in self.gradients.items()]
        lines.append(f"  dL/d{self.cell.input_symbol} = {self.input_gradient}")
        for s, g in self.initial_state_gradients.items():
            lines.append(f"  dL/d{s}_0 = ({g}) at t = 1")
        lines.append("Step Jacobians:")
        lines += [f"  d{s}[t]/d{p}[t-1] = {j}" for (s, p), j in self.step_jacobians.items()]
        return "\n".join(lines)

"""Symbolic BPTT: reverse accumulation over one step of the computation graph.

:func:`local_terms` reads each equation ``y = F(...)`` once and records, for
every quantity ``u`` that ``F`` reads, the term that ``bar y`` sends back to
``bar u``: ``coef * bar y`` for elementwise uses (``coef = dF/du`` from
``sympy.diff``, the diagonal of the Jacobian) and ``P^T (coef * bar y)`` for
a use inside ``P u``.  Parameters collect ``Outer(coef * bar y, u)`` (matrices)
or ``coef * bar y`` (vectors) at every step.

:class:`Derivation` assembles these terms into the adjoint recurrences of a
model (``bar h[t] = V^T bar o[t] + W^T bar a[t+1]`` ...), the gradients of
every parameter as sums over time, and the step Jacobians ``dh_t/dh_{t-1}``.
Nothing here depends on the sequence length.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import sympy as sp

from .functions import derivative
from .symbols import MatTVec, MatVec, Outer, Param, bar, linear_maps, parse, shift, tsym


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
    terms for the vector ``u`` itself carry ``matrix=P``.
    """
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
    loss : dict
        ``{"per_step": Expr, "gradient": Eq}``: the per-step loss and its
        gradient with respect to the readout (``bar o[t] = yhat[t] - y[t]``).
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
        self._build_adjoints(equations)
        self._build_gradients()
        self._build_step_jacobians()

    # -- adjoint recurrences -------------------------------------------------
    def _build_adjoints(self, equations):
        self.adjoints = []
        loss_lhs = None
        if self.loss is not None and self.loss.get("gradient") is not None:
            g = self.loss["gradient"]
            loss_lhs = g.lhs
            self.adjoints.append(AdjointEquation(g.lhs, g.rhs, self.loss.get("steps_note", "")))
        for eq in reversed(equations):
            y = eq.target
            if bar(y) == loss_lhs:
                continue  # the loss rule gives this adjoint
            rhs = adjoint_sum(self.terms.get(y, []))
            base = parse(y)[0]
            if base in self.external:
                rhs = rhs + self.external[base]
            if eq.kind == "state":
                rhs = rhs + shift(adjoint_sum(self.terms.get(tsym(base, -1), [])), 1)
            self.adjoints.append(AdjointEquation(bar(y), rhs))
        self.input_gradient = adjoint_sum(self.terms.get(self.cell.input_symbol, []))
        self.initial_state_gradients = {
            s: adjoint_sum(self.terms.get(tsym(s, -1), [])) for s in self.cell.states
        }

    def _build_gradients(self):
        self.gradients = {}
        params = list(self.cell.params)  # declaration order, then the readout's V, c
        for eq in self.readout_equations:
            for m in linear_maps(eq.rhs):
                params.append(m.args[0].name)
            params += sorted(s.name for s in eq.rhs.free_symbols if isinstance(s, Param))
        for name in dict.fromkeys(params):
            symbol = Param(name)
            per_step = adjoint_sum(self.terms.get(symbol, []))
            self.gradients[name] = sp.Sum(per_step, (self.t, 1, self.T))

    # -- Jacobians ----------------------------------------------------------
    def _build_step_jacobians(self):
        """``d s[t] / d s'[t-1]`` for every pair of states, by forward accumulation."""
        cell = self.cell
        self.step_jacobians = {}
        for prev in cell.states:
            jac = {tsym(prev, -1): sp.Integer(1)}
            for other in cell.states:
                if other != prev:
                    jac[tsym(other, -1)] = sp.Integer(0)
            for eq in cell.equations:
                total = sp.Integer(0)
                for u, term_list in self.terms.items():
                    for term in term_list:
                        if term.consumer != eq.target or term.vector is not None or u not in jac:
                            continue
                        if jac[u] != 0:
                            total = total + term.jacobian() * jac[u]
                jac[eq.target] = total
            for s in cell.states:
                self.step_jacobians[(s, prev)] = jac[tsym(s)]

    # -- views --------------------------------------------------------------
    def _repr_latex_(self):
        """Jupyter renders a derivation as its LaTeX equations."""
        from .report import derivation_latex

        return derivation_latex(self)

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

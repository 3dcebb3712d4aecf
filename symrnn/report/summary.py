"""The backward pass of a report in the forms textbooks print: per architecture, and summarised.

A :class:`~symrnn.engine.bptt.Derivation` holds the general many-to-many recurrences:
every adjoint reads the loss's gradient at every step and the adjoints of step
``t + 1``.  :class:`BackwardSummary` rewrites the same objects, by substitution
only, into

* the **specialised** recurrences of an architecture, one set per kind of step
  (:func:`step_classes`): at the last step every adjoint of ``T + 1`` is zero,
  at a step that is not scored the loss's gradient is zero, so a many-to-one
  network has ``bar h_T = V^T (yhat_T - y_T)`` and ``bar h_t = W^T bar a_{t+1}``
  for ``t < T``;
* the **gradient sums** over the steps where their terms can be non-zero
  (``dL/dV`` over the scored steps, ``dL/dU`` over the steps with an input);
* the **combined** recurrence of the summary box: every adjoint that only one
  other adjoint reads, and that no gradient reads, is substituted into it, which
  turns the vanilla RNN's two recurrences into the textbook
  ``delta_t = (1 - h_t^2) (V^T (yhat_t - y_t) + W^T delta_{t+1})``.

Every expression here is the derivation's own, rewritten by ``xreplace``; the
tests evaluate them in numbers against the generated code.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..engine.symbols import MatTVec, MatVec, Outer, Param, parse, shift, tsym

T_IN = sp.Symbol("T_in", integer=True, positive=True)


def _base(symbol) -> str:
    return symbol.name.split("[")[0] if parse(symbol) is None else parse(symbol)[0]


def bar_sym(symbol):
    base, offset, _ = parse(symbol)
    return tsym(base, offset, bar=True)


def gate_adjoints(derivation) -> dict:
    """``{gate target g[t]: (bar a^g[t], its product)}`` for every equation ``g = act(P1 v1 + ... + b)``:
    the adjoint of the gate's pre-activation, ``bar g * act'``, which every gradient of the gate's
    weights and every message through them repeats.  The vanilla RNN names its own (``bar a``)."""
    out = {}
    for eq in derivation.cell.equations:
        apps = [a for a in eq.rhs.atoms(sp.Function) if not isinstance(a, (MatVec, MatTVec, Outer))]
        if eq.kind != "let" or len(apps) != 1 or eq.rhs != apps[0] or len(apps[0].args) != 1:
            continue
        parts = sp.Add.make_args(apps[0].args[0])
        if not all(isinstance(p, (MatVec, Param)) for p in parts) or not any(isinstance(p, MatVec) for p in parts):
            continue
        matrix = next(p.args[0] for p in parts if isinstance(p, MatVec))
        term = next(t for t in derivation.terms[matrix] if t.consumer == eq.target)
        out[eq.target] = (tsym(f"a__{_base(eq.target)}", bar=True), sp.Mul(bar_sym(eq.target), term.coef))
    return out


@dataclass(frozen=True)
class StepClass:
    """A kind of step: the steps ``first <= t <= last`` are all scored or all not, and only the
    class of the last step has no step ``t + 1``."""

    first: sp.Expr
    last: sp.Expr
    scored: bool
    final: bool  # the last step, t = T

    @property
    def single(self) -> bool:
        return sp.simplify(self.first - self.last) == 0


def step_classes(architecture, T) -> list:
    """The kinds of step of ``architecture`` over ``T`` steps, from the last step back."""
    (_, _), (s_first, s_last) = architecture.step_sets(T, T_IN)
    one = sp.Integer(1)
    if architecture.name == "one-to-one":
        return [StepClass(one, one, True, True)]
    assert s_last == T, "every architecture scores the last step"
    out = [StepClass(T, T, True, True)]
    if s_first == T:
        out.append(StepClass(one, T - 1, False, False))
    elif s_first == one:
        out.append(StepClass(one, T - 1, True, False))
    else:
        out += [StepClass(s_first, T - 1, True, False), StepClass(one, s_first - 1, False, False)]
    return out


def drop_zeros(expr):
    """``expr`` with the linear maps of zero (``W^T 0``) removed, after a substitution of zeros."""
    zero = lambda e: isinstance(e, (MatVec, MatTVec, Outer)) and any(a == 0 for a in e.args)  # noqa: E731
    while isinstance(expr, sp.Basic) and expr.has(MatVec, MatTVec, Outer):
        new = expr.replace(zero, lambda e: sp.Integer(0))
        if new == expr:
            break
        expr = new
    return expr


class BackwardSummary:
    """The specialised, summed and combined forms of ``model``'s backward pass (module docstring)."""

    def __init__(self, model, derivation=None):
        self.model = model
        self.d = d = derivation if derivation is not None else model.derive()
        self.gates = gate_adjoints(d)
        self.named = {shift(product, k): shift(symbol, k) for symbol, product in self.gates.values() for k in (0, 1)}
        self.T = sp.Integer(1) if model.architecture.name == "one-to-one" else d.T
        self.classes = step_classes(model.architecture, d.T)
        (self.input_first, self.input_last), (self.scored_first, self.scored_last) = \
            model.architecture.step_sets(d.T, T_IN)
        rule = d.loss.get("gradient") if d.loss else None
        self.loss_rule = rule  # bar o[t] = yhat[t] - y[t], or None in the layer view
        self.scored_symbols = [rule.lhs] if rule is not None else list(d.external.values())
        self.input_symbol = d.cell.input_symbol

    def name_gates(self, expr):
        return expr.xreplace(self.named) if self.named and isinstance(expr, sp.Basic) else expr

    # -- the system ----------------------------------------------------------------------
    def system(self) -> list:
        """``[(bar v[t], rhs)]``: the derivation's adjoints in backward order, the gates named, each
        gate's pre-activation adjoint defined right after the gate's own adjoint; the loss's rule
        not among them (it is substituted)."""
        rows = []
        by_gate = {bar_sym(g): (symbol, product) for g, (symbol, product) in self.gates.items()}
        for a in self.d.adjoints:
            if self.loss_rule is not None and a.lhs == self.loss_rule.lhs:
                continue
            rows.append((a.lhs, self.name_gates(a.rhs)))
            if a.lhs in by_gate:
                rows.append(by_gate[a.lhs])
        return rows

    def _zeros(self, cls) -> dict:
        zeros = {}
        if cls is None:  # the general form, with the loss's rule written out
            return zeros
        if not cls.scored:
            zeros.update({s: sp.Integer(0) for s in self.scored_symbols})
        if cls.final:
            for lhs, rhs in self.system():
                zeros[shift(lhs, 1)] = sp.Integer(0)
        return zeros

    def specialise(self, expr, cls, substitute_loss=True):
        """``expr`` at the steps of ``cls`` (``None``: at any step): zeros substituted, then the loss's rule."""
        expr = drop_zeros(sp.sympify(expr).xreplace(self._zeros(cls)))
        if self.loss_rule is not None and substitute_loss:
            expr = expr.xreplace({self.loss_rule.lhs: self.loss_rule.rhs})
        return expr

    def adjoints(self, cls, combined=False, substitute_loss=True) -> list:
        """``[(bar v[t], rhs)]`` at the steps of ``cls``; ``combined`` substitutes every adjoint that
        is read by one other adjoint only and by no gradient (the summary box)."""
        rows = [(lhs, self.specialise(rhs, cls, substitute_loss)) for lhs, rhs in self.system()]
        rows = [(lhs, rhs) for lhs, rhs in rows if lhs not in self.scored_symbols]
        if combined:
            rows = self._combine(rows)
        return rows

    def _kept(self, rows) -> set:
        """Adjoints the combined form keeps: those read one step later (the carriers of the
        recurrence), those read by several others and those a gradient reads."""
        kept = set()
        outputs = [g.function for g in self.d.gradients.values()] + [self.d.input_gradient]
        outputs += list(self.d.initial_state_gradients.values())
        read_by_outputs = set().union(*(self.name_gates(o).free_symbols for o in outputs))
        system = self.system()
        for lhs, rhs in system:
            if shift(lhs, 1) in set().union(*(r.free_symbols for _, r in system)):
                kept.add(lhs)
            readers = sum(1 for other, r in rows if other != lhs and lhs in r.free_symbols)
            if readers != 1 or lhs in read_by_outputs:
                kept.add(lhs)
        return kept

    def _combine(self, rows) -> list:
        kept = self._kept(rows)
        rows = list(rows)
        for lhs, _ in list(rows):
            if lhs in kept:
                continue
            rhs = dict(rows)[lhs]  # as it stands now: an adjoint substituted earlier may be in it
            rows = [(other, r.xreplace({lhs: rhs}) if other != lhs else r) for other, r in rows]
            rows = [(other, r) for other, r in rows if other != lhs]
        return rows

    # -- sums over the steps -------------------------------------------------------------
    def _range(self, term):
        """``(first, last)`` of the steps at which ``term`` (one step's term of a gradient) can be non-zero."""
        symbols = term.free_symbols
        if any(s in symbols for s in self.scored_symbols):
            return self.scored_first, self.scored_last
        if self.input_symbol in symbols:
            return self.input_first, self.input_last
        return sp.Integer(1), self.T

    @staticmethod
    def single(first, last) -> bool:
        return sp.simplify(first - last) == 0

    def gradient(self, name, substitute_loss=True) -> list:
        """``[((first, last), per-step term)]``: the gradient of parameter ``name`` as sums over the steps
        where their terms can be non-zero, the gate adjoints named, the loss's rule substituted."""
        return self._split(self.d.gradients[name].function, substitute_loss)

    def input_gradient(self, substitute_loss=True):
        """``((first, last), dL/dx_t)``: the steps that read an input and the gradient there."""
        term = self.name_gates(self.d.input_gradient)
        if self.loss_rule is not None and substitute_loss:
            term = term.xreplace({self.loss_rule.lhs: self.loss_rule.rhs})
        return (self.input_first, self.input_last), term

    def _split(self, per_step, substitute_loss) -> list:
        groups = {}
        for term in sp.Add.make_args(self.name_gates(per_step)):
            groups.setdefault(self._range(term), []).append(term)
        out = []
        for bounds, terms in groups.items():
            term = sp.Add(*terms)
            if self.loss_rule is not None and substitute_loss:
                term = term.xreplace({self.loss_rule.lhs: self.loss_rule.rhs})
            out.append((bounds, term))
        return out

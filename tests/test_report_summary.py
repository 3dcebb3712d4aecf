"""The specialised, summed and combined backward passes of the reports, checked in numbers.

:class:`symrnn.report.summary.BackwardSummary` rewrites the derivation into the forms the reports
print (per architecture, and the summary box).  Here a small interpreter, written for this test
from the meaning of the symbols alone (``MatVec`` is ``P @ v``, ``MatTVec`` is ``P.T @ q``, ``Outer``
an outer product, every other product elementwise), runs the forward equations and then exactly
the printed backward rows, step by step from ``T`` down to 1, each step by the rows of its class,
and sums the printed gradient terms over their printed ranges.  The result must equal the
generated code's gradients.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symrnn as sr
from symrnn.models.architectures import ARCHITECTURES
from symrnn.report.summary import T_IN, BackwardSummary
from symrnn.engine.symbols import MatTVec, MatVec, Outer, Param, parse

LENGTHS = {"many-to-many": (4, 4), "many-to-one": (4, 1), "one-to-many": (1, 4), "one-to-one": (1, 1),
           "many-to-many-delayed": (3, 2)}


def evaluate(expr, t, values, params, numeric_functions):
    """``expr`` at step ``t``; ``values[(base, step, bar)]`` holds the quantities computed so far."""
    if isinstance(expr, Param):
        return params[expr.name]
    if isinstance(expr, sp.Symbol):
        parsed = parse(expr)
        if parsed is None:
            raise KeyError(expr)
        base, offset, bar = parsed
        return values[(base, t + offset, bar)]
    if expr.is_Number:
        return float(expr)
    args = [evaluate(a, t, values, params, numeric_functions) for a in expr.args]
    if isinstance(expr, MatVec):
        return args[0] @ args[1]
    if isinstance(expr, MatTVec):
        return args[0].T @ args[1]
    if isinstance(expr, Outer):
        return np.outer(args[0], args[1])
    if isinstance(expr, sp.Add):
        return sum(args[1:], args[0])
    if isinstance(expr, sp.Mul):
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if isinstance(expr, sp.Pow):
        return args[0] ** args[1]
    return numeric_functions[type(expr).__name__](*args)


FUNCTIONS = {"tanh": np.tanh, "sigmoid": lambda u: 1 / (1 + np.exp(-u)), "exp": np.exp,
             "relu": lambda u: np.maximum(u, 0), "step": lambda u: (u > 0).astype(float)}


def run(model, summary, combined):
    T_in, T_out = LENGTHS[model.architecture.name]
    sched = model.architecture.schedule(T_in, T_out)
    T = sched.T
    rng = np.random.default_rng(3)
    params = model.init_params(seed=1)
    x = rng.normal(size=(T_in, 1, model.sizes["D"]))
    y = rng.integers(0, model.sizes["K"], size=(T_out, 1))
    loss, grads = model.loss_and_grads(params, x, y)
    d, cell = model.derive(), model.cell
    values = {}
    for s in cell.states:
        values[(s, 0, False)] = np.zeros(model.sizes["H"])
    xin = {step + 1: x[row, 0] for row, step in enumerate(sched.input_steps)}
    scored = {step + 1: row for row, step in enumerate(sched.output_steps)}
    inp = parse(cell.input_symbol)[0]
    for t in range(1, T + 1):
        values[(inp, t, False)] = xin.get(t, np.zeros(model.sizes["D"]))
        for eq in d.forward:
            values[(parse(eq.lhs)[0], t, False)] = evaluate(eq.rhs, t, values, params, FUNCTIONS)
        logits = values[(model.logits, t, False)]
        p = np.exp(logits - logits.max())
        values[("yhat", t, False)] = p / p.sum()
        values[("y", t, False)] = (np.eye(model.sizes["K"])[y[scored[t], 0]] if t in scored
                                   else np.zeros(model.sizes["K"]))
    # every adjoint of step T + 1 is zero: the printed rows of the last step must not read them
    subs = {summary.d.T: T, T_IN: T_in}
    for t in range(T, 0, -1):
        cls = next(c for c in summary.classes
                   if int(c.first.subs(subs)) <= t <= int(c.last.subs(subs)))
        assert cls.final == (t == T) and cls.scored == (t in scored)
        for lhs, rhs in summary.adjoints(cls, combined=combined):
            base = parse(lhs)[0]
            values[(base, t, True)] = evaluate(rhs, t, values, params, FUNCTIONS) + np.zeros(model.sizes["H"])
    for name in model.param_shapes:
        total = np.zeros(model.param_shapes[name])
        for (first, last), term in summary.gradient(name):
            for t in range(int(first.subs(subs)), int(last.subs(subs)) + 1):
                total = total + evaluate(term, t, values, params, FUNCTIONS)
        np.testing.assert_allclose(total, grads[name], rtol=1e-12, atol=1e-14, err_msg=name)
    (first, last), term = summary.input_gradient()
    steps = range(int(first.subs(subs)), int(last.subs(subs)) + 1)
    assert [s - 1 for s in steps] == list(sched.input_steps)
    for row, t in enumerate(steps):
        np.testing.assert_allclose(evaluate(term, t, values, params, FUNCTIONS), grads["x"][row, 0],
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru"])
@pytest.mark.parametrize("combined", [False, True])
def test_printed_backward_pass_gives_the_generated_gradients(cell, architecture, combined):
    model = sr.Model(cell, D=2, H=3, K=3, architecture=architecture)
    run(model, BackwardSummary(model), combined)


@pytest.mark.parametrize("architecture", ["many-to-one", "many-to-many-delayed"])
@pytest.mark.parametrize("cell", ["peephole_lstm", "minimal_gated_unit"])
def test_printed_backward_pass_of_user_cells(cell, architecture):
    from symrnn.engine import examples

    model = sr.Model(getattr(examples, cell)(), D=2, H=3, K=3, architecture=architecture)
    for combined in (False, True):
        run(model, BackwardSummary(model), combined)


def test_vanilla_rnn_combined_recurrence_is_the_textbook_delta():
    model = sr.Model("rnn-tanh", D=2, H=3, K=3)
    s = BackwardSummary(model)
    rows = s.adjoints(s.classes[1], combined=True)
    assert len(rows) == 1
    lhs, rhs = rows[0]
    a1, a, h = sp.Symbol("bar a[t+1]"), sp.Symbol("bar a[t]"), sp.Symbol("h[t]")
    o = sp.Symbol("yhat[t]") - sp.Symbol("y[t]")
    assert lhs == a
    assert sp.expand(rhs - (1 - h ** 2) * (MatTVec(Param("V"), o) + MatTVec(Param("W"), a1))) == 0


def test_many_to_one_specialises_to_the_last_step():
    model = sr.Model("rnn-tanh", D=2, H=3, K=3, architecture="many-to-one")
    s = BackwardSummary(model)
    last, before = s.classes
    h_T = dict(s.adjoints(last))[sp.Symbol("bar h[t]")]
    assert h_T == MatTVec(Param("V"), sp.Symbol("yhat[t]") - sp.Symbol("y[t]"))
    assert dict(s.adjoints(before))[sp.Symbol("bar h[t]")] == MatTVec(Param("W"), sp.Symbol("bar a[t+1]"))
    (bounds, _), = s.gradient("V")
    assert bounds == (s.d.T, s.d.T)

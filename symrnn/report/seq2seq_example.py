"""The worked example of a sequence-to-sequence report: one decoder step's attention (or the bridge) with
width-one states and two source positions, small enough to redo with a pencil.

The numbers come from the printed equations themselves: :func:`evaluate` reads the attention program's
forward equations and adjoints (the SymPy objects of the report) and evaluates each line at the example's
inputs, in the order printed, in exact arithmetic (SymPy numbers; printed
to six significant figures).  ``tests/test_seq2seq_report.py`` redoes the example with PyTorch autograd
on the paper's formulas.
"""
from __future__ import annotations

import re

import sympy as sp

from ..engine.sequence_rules import dot, softmax_s, sum_s, sum_t
from ..engine.symbols import MatTVec, MatVec, Outer, Param
from ..errors import ParameterError
from .blocks import Display, Math, Paragraph, Row, Section
from .seq2seq_notation import attention_lhs, printer

S = 2  # source positions of the example
#: The inputs of the example: decoder state (query), encoder states, adjoint of the context, parameters.
INPUTS = {"h[t]": sp.Rational(1, 2), "h[t-1]": sp.Rational(1, 2), "hbar[1]": sp.Rational(1, 1),
          "hbar[2]": sp.Rational(-1, 2), "bar ctx[t]": sp.Rational(1, 1),
          "W_a": sp.Rational(2, 1), "U_a": sp.Rational(1, 2), "v_a": sp.Rational(3, 2)}
_INDEXED = re.compile(r"^(bar )?([A-Za-z_]\w*)\[(.+)\]$")


def _key(symbol, s):
    """The name under which the example stores ``symbol`` at source position ``s``: ``a[t,s]`` -> ``a[t,1]``."""
    match = _INDEXED.match(symbol.name)
    if match is None:
        return symbol.name
    bar, base, index = match.groups()
    return f"{bar or ''}{base}[{re.sub(r'(?<![A-Za-z])s(?![A-Za-z])', str(s), index)}]"


def _value(expr, s, env):
    """``expr`` at source position ``s`` (one decoder step: a sum over t has one term)."""
    if isinstance(expr, (sp.Symbol, Param)):
        key = _key(expr, s)
        if key not in env:
            raise ParameterError(f"the worked example has no value for {key}")
        return env[key]
    if expr.is_Number:
        return expr
    if isinstance(expr, sum_s):
        return sum(_product([_value(a, k, env) for a in expr.args]) for k in range(1, S + 1))
    if isinstance(expr, sum_t):
        return _value(expr.args[0], s, env)
    if isinstance(expr, softmax_s):
        scores = [_value(expr.args[0], k, env) for k in range(1, S + 1)]
        return sp.exp(_value(expr.args[0], s, env)) / sum(sp.exp(e) for e in scores)
    if isinstance(expr, (dot, MatVec, MatTVec, Outer)):  # width one: every product is a product of numbers
        return _product([_value(a, s, env) for a in expr.args])
    if isinstance(expr, sp.Add):
        return sum(_value(a, s, env) for a in expr.args)
    if isinstance(expr, sp.Mul):
        return _product([_value(a, s, env) for a in expr.args])
    if isinstance(expr, sp.Pow):
        return _value(expr.args[0], s, env) ** expr.args[1]
    if isinstance(expr, sp.Function) and len(expr.args) == 1:
        return type(expr)(_value(expr.args[0], s, env))
    raise ParameterError(f"the worked example cannot evaluate {expr}")


def _product(values):
    out = sp.Integer(1)
    for v in values:
        out = out * v
    return out


def _positions(symbol):
    """Source positions at which ``symbol`` has a value (every one if it carries ``s``)."""
    match = _INDEXED.match(symbol.name)
    return range(1, S + 1) if match and re.search(r"(?<![A-Za-z])s(?![A-Za-z])", match.group(3)) else (1,)


def evaluate(model):
    """``(lines, env)``: each printed line of ``model``'s attention as ``(lhs symbol, rhs, {s: value})`` in
    the order printed, and every value by name (``a[t,1]``, ``bar hbar[2]``, ``bar W_a``)."""
    equations, adjoints = model.attention.derivation("h[t-1]" if model.bahdanau else "h[t]")
    env = dict(INPUTS)
    lines = []
    for lhs, rhs in [(e.lhs, e.rhs) for e in equations] + list(adjoints):
        values = {}
        for s in _positions(lhs):
            values[s] = _value(rhs, s, env)
            env[_key(lhs, s)] = values[s]
        lines.append((lhs, rhs, values))
    return lines, env


def _number(value):
    return f"{float(sp.N(value, 30)):.6g}"


#: The inputs of the bridge's example (a model without attention): the summary, the adjoint of h_0, the weights.
BRIDGE_INPUTS = {"z[t]": sp.Rational(1, 2), "bar h_init[t]": sp.Integer(1), "W_h": sp.Integer(2), "b_h": sp.Rational(-1, 2)}


def evaluate_bridge(model):
    """``(lines, env)`` of the bridge's printed equations at :data:`BRIDGE_INPUTS` (width one): its forward line,
    the adjoint of the summary and its gradients, in the order printed."""
    d = model.derive()
    env = dict(BRIDGE_INPUTS)
    rows = [(e.lhs, e.rhs) for e in d.bridge.forward]
    rows.append((sp.Symbol("bar z[t]"), d.bridge.input_gradient))
    rows += [(sp.Symbol(f"bar {n}"), g.function if isinstance(g, sp.Sum) else g)
             for n, g in sorted(d.bridge.gradients.items())]
    lines = []
    for lhs, rhs in rows:
        value = _value(rhs, 1, env)
        env[lhs.name] = value
        lines.append((lhs, rhs, {1: value}))
    return lines, env


def _bridge_section(model):
    lines, _ = evaluate_bridge(model)
    p = printer("bridge")
    given = ", ".join(f"{p.doprint(Param(k) if k in ('W_h', 'b_h') else sp.Symbol(k))} = {_number(v)}"
                      for k, v in BRIDGE_INPUTS.items())
    rows = []
    for lhs, rhs, values in lines:
        name = lhs.name
        left = (r"\frac{\partial L}{\partial %s}" % p.doprint(Param(name[4:]))) if name in ("bar W_h", "bar b_h") \
            else p.doprint(lhs)
        rows.append(Row(left, [p.doprint(rhs) + " = " + _number(values[1])]))
    return Section("A worked example", "sec:example", [
        Paragraph(["The bridge with a summary and a decoder state of width one, so that every product is a product "
                   "of numbers. Given ", Math(given), " (the adjoint of the decoder's initial state, as the "
                   "decoder's backward pass hands it over), each line of the bridge section evaluates, in the "
                   "order printed, to (six significant figures; the test suite redoes it with PyTorch "
                   "autograd):"]),
        Display(rows)])


def example_section(model):
    """The worked example's :class:`Section`: one attention step, or the bridge of a model without attention
    (None for a model with neither: a copied summary has nothing to work out)."""
    if model.attention is None:
        return _bridge_section(model) if model.derive().bridge is not None and model.bridge_mode == "tanh" else None
    lines, _ = evaluate(model)
    p = printer("attn")
    given = ", ".join(f"{p.doprint(Param(k) if k in PARAMS else sp.Symbol(k))} = {_number(v)}"
                      for k, v in INPUTS.items() if k != ("h[t]" if model.bahdanau else "h[t-1]") and _used(model, k))
    rows = []
    for lhs, rhs, values in lines:
        for s, value in values.items():
            symbol = sp.Symbol(_key(lhs, s))
            left = attention_lhs(symbol, p) if symbol.name.startswith("bar ") else p.doprint(symbol)
            rows.append(Row(left, [p.doprint(_at(rhs, s)) + " = " + _number(value)]))
    return Section("A worked example", "sec:example", [
        Paragraph(["One decoder step (", Math("t = 1"), ") over two source positions, with states and "
                   "parameters of width one so that every product is a product of numbers. Given ",
                   Math(given), ", each line of the attention section evaluates, in the order printed, to "
                   "(six significant figures; the test suite redoes it with PyTorch autograd on the paper's "
                   "formulas):"]),
        Display(rows)])


PARAMS = ("W_a", "U_a", "v_a")


def _used(model, key):
    if key in PARAMS:
        return f"attn.{key}" in model.param_shapes
    return True




def _at(expr, s):
    """``expr`` at source position ``s``: the free ``s`` replaced, a sum over ``s`` left as it is."""
    if isinstance(expr, sum_s):
        return expr
    if isinstance(expr, sp.Symbol) and not isinstance(expr, Param):
        return sp.Symbol(_key(expr, s))
    if not expr.args:
        return expr
    return expr.func(*[_at(a, s) for a in expr.args], evaluate=False) if isinstance(expr, (sp.Add, sp.Mul)) \
        else expr.func(*[_at(a, s) for a in expr.args])

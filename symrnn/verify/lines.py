"""The line of the exact derivation a catalogued mistake differs from: as SymPy text, as LaTeX,
and as the lines of symrnn's generated backward (shown with ``symrnn verify --show-code``)."""
from __future__ import annotations

import re

import sympy as sp

from ..engine.symbols import Param, bar, linear_maps, parse, tsym
from .mutants import recurrent_matrices


def exact_line(model, mutation) -> dict:
    """``{"equation", "latex", "code"}``: the one line of ``model``'s exact derivation that
    ``mutation`` changes, as SymPy text, LaTeX, and the generated backward's lines for it."""
    from ..report.latex import latex

    d = model.derive()
    cell = model.cell
    lhs = _line_for(model, cell, mutation)
    if lhs is None:
        return {}
    if isinstance(lhs, str):  # a parameter's gradient
        rhs = d.gradients[lhs]
        eq = sp.Eq(sp.Symbol(f"dL/d{lhs}"), rhs, evaluate=False)
        tex = r"\frac{\partial L}{\partial " + latex(Param(lhs)) + "} = " + latex(rhs)
        code = _code_lines(model, rf"grads\[{lhs!r}\] = (\w+)")
    else:
        adjoint = next((a for a in d.adjoints if a.lhs == lhs), None)
        if adjoint is None:
            return {}
        eq = sp.Eq(adjoint.lhs, adjoint.rhs, evaluate=False)
        tex = latex(adjoint.lhs) + " = " + latex(adjoint.rhs)
        code = _code_lines(model, rf"{re.escape(parse(lhs.args[0] if hasattr(lhs, 'args') and lhs.args else lhs)[0])}__bar_t = ")
    return {"equation": f"{eq.lhs} = {eq.rhs}", "latex": tex, "code": code}


def _line_for(model, cell, m):
    """The adjoint symbol (``bar y[t]``) or parameter name whose line ``m`` changes."""
    recurrent = next(iter(recurrent_matrices(cell)), None)
    if m.rewrite:
        target, app, _ = m.rewrite[0]
        arg = app.args[0]
        if isinstance(arg, sp.Symbol) and not isinstance(arg, Param):
            return bar(arg)
        maps = linear_maps(arg)
        return maps[0].args[0].name if maps else None
    if m.drop_carry or m.truncation or m.untransposed or m.last_steps:
        return bar(tsym(m.drop_carry[0] if m.drop_carry else model.out))
    if m.swap:
        eq = next(e for e in cell.equations if e.target == m.swap[0])
        maps = linear_maps(eq.rhs)
        return maps[0].args[0].name if maps else None
    if m.bias_first_example or m.bias_mean:
        return next((name for name, spec in cell.params.items() if not spec.is_matrix), None)
    if m.only_for:  # a gradient assigned where it is accumulated: the first of them
        return m.only_for[0]
    return recurrent


def _code_lines(model, pattern):
    """The generated backward's line matching ``pattern`` and the line defining what it reads."""
    source = (model.cell_code.backward.__doc__ or "").splitlines()
    lines = []
    for k, line in enumerate(source):
        found = re.search(pattern, line)
        if found:
            lines.append(line.strip())
            if found.groups():  # grads['W'] = dG1: show how dG1 is computed
                lines = [s.strip() for s in source if re.match(rf"\s*{found.group(1)} = ", s)] + lines
            else:  # a__bar_t = q1: show the common subexpressions it reads, defined in the loop above it
                for name in re.findall(r"\b(q\d+)\b", line.split("=", 1)[1]):
                    lines = [s.strip() for s in source[:k] if re.match(rf"\s*{name} = ", s)][-1:] + lines
            break
    return lines

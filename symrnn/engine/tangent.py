"""Forward mode over one step of a block: the tangent-linear equations, derived and generated.

Every equation ``y = F(u, ..., P v, ...)`` of a block has the local terms of
:func:`symrnn.engine.bptt.local_terms`: ``coef = dF/du`` (the diagonal of the local Jacobian)
for every quantity and parameter it reads.  The same terms, read forwards, give the
directional derivative of the step along a tangent (a perturbation ``dot theta`` of the
parameters and ``dot s[t-1]`` of the states)::

    dot y[t] = sum_u coef_u * dot u          (u used elementwise)
             + sum_(P u) coef * (P dot u)     (u used inside P u)
             + sum_(P v) coef * (dot P v)     (a matrix parameter: the source term)
             + sum_b coef_b * dot b           (a vector parameter: the source term)

Real-time recurrent learning is this sweep carried with one tangent per parameter entry
(``P_t = J_t P_{t-1} + dF/dtheta``, :mod:`symrnn.engine.rtrl`); the Hessian-vector product is this
sweep with one tangent followed by the directional derivative of the adjoint sweep
(:mod:`symrnn.engine.second_order`).  :class:`TangentCode` writes the sweep of one step as a NumPy
function whose tangents carry a leading axis of ``R`` directions: an array ``(R, N, size)`` per
quantity, so a product ``P dot u`` is one matrix product for all directions at once.
"""
from __future__ import annotations

import linecache
import re
import weakref
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from ..errors import ShapeError
from .bptt import local_terms
from .codegen import StepPrinter, code_name
from .functions import RULES
from .symbols import MatVec, Param, parse, tsym


class Tangent(sp.Function):
    """``dot u``: the tangent (directional derivative) of a quantity or a parameter."""

    nargs = 1

    def _latex(self, printer):
        text = printer._print(self.args[0])
        match = re.match(r"^([^_{}]+)(_\{.*\})$", text)  # h_{t-1} -> \dot{h}_{t-1}
        return r"\dot{%s}%s" % match.groups() if match else r"\dot{%s}" % text

    def _sympystr(self, printer):
        return f"dot {printer._print(self.args[0])}"


@dataclass(frozen=True)
class TangentTerm:
    """One term of ``dot y``: ``kind`` is ``elementwise`` (``coef * dot u``), ``through`` (``coef * (P dot
    u)``), ``matrix`` (the source ``coef * (dot P v)``) or ``vector`` (the source ``coef * dot b``)."""

    target: sp.Symbol
    coef: sp.Expr
    kind: str
    source: sp.Symbol  # u, or the parameter
    matrix: Param | None = None
    vector: sp.Symbol | None = None

    def expr(self) -> sp.Expr:
        """The term as a printable expression."""
        if self.kind == "through":
            inner = MatVec(self.matrix, Tangent(self.source))
        elif self.kind == "matrix":
            inner = MatVec(Tangent(self.matrix), self.vector)
        else:  # elementwise, or a vector parameter's source
            inner = Tangent(self.source)
        return inner if self.coef == 1 else self.coef * inner


def tangent_terms(equations, terms=None, constants=()) -> dict:
    """``{y: [TangentTerm, ...]}`` for the target of every equation, in equation order.

    The terms are those of :func:`symrnn.engine.bptt.local_terms` (by default computed here), read
    from the consumer's side: what reverse mode sends back from ``bar y`` to ``bar u``, forward mode
    sends from ``dot u`` to ``dot y``.  The parameters named in ``constants`` (a matrix cell's fixed
    spreads and folds, :func:`constants_of`) have no tangent: they give no source term.
    """
    terms = local_terms(equations) if terms is None else terms
    out = {e.target: [] for e in equations}
    for u in sorted(terms, key=sp.default_sort_key):
        if isinstance(u, Param) and u.name in constants:
            continue
        for t in terms[u]:
            if isinstance(u, Param):
                kind = "matrix" if t.vector is not None else "vector"
            else:  # a quantity's terms have no vector
                kind = "through" if t.matrix is not None else "elementwise"
            out[t.consumer].append(TangentTerm(t.consumer, t.coef, kind, u, t.matrix, t.vector))
    return out


def tangent_equations(equations, terms=None, constants=()) -> list:
    """The tangent-linear equations ``Eq(dot y[t], ...)`` of ``equations``, in order; the terms with the
    same coefficient are written as one product ``coef * (sum)``; ``constants`` as in :func:`tangent_terms`."""
    by_target = tangent_terms(equations, terms, constants)
    out = []
    for e in equations:
        groups = {}
        for t in by_target[e.target]:
            groups.setdefault(t.coef, []).append(replace(t, coef=sp.Integer(1)).expr())
        rhs = sp.Add(*[sp.Add(*inner) if c == 1 else sp.Mul(c, sp.Add(*inner), evaluate=False)
                       for c, inner in groups.items()])
        out.append(sp.Eq(Tangent(e.target), rhs, evaluate=False))
    return out


def constants_of(block) -> frozenset:
    """The names of the parameters of ``block`` (a cell or a generated block) that are not trained: a
    matrix cell's fixed spreads and folds (:mod:`symrnn.engine.structure`).  Their tangent is zero, so the
    tangent and adjoint-tangent code read them as constants and no direction or product has them."""
    return frozenset(name for name, spec in block.params.items() if getattr(spec, "fixed", ()))


def dot_name(symbol) -> str:
    """The generated code's name of a tangent: ``h[t-1]`` -> ``h__prev_dot``, ``W`` -> ``W__p_dot``."""
    return code_name(symbol) + "_dot"


def coefficient_printer(coefs):
    """A printer for coefficients, and the code computing the ``MatVec`` atoms they read: the atom
    ``P v`` is ``mv<k> = v @ P.T`` (forward values only)."""
    atoms = sorted({m for c in coefs for m in c.atoms(MatVec)}, key=sp.default_sort_key)
    names = {m: f"mv{k}" for k, m in enumerate(atoms)}
    printer = StepPrinter(names)
    lines = [f"{names[m]} = {code_name(m.args[1])} @ {code_name(m.args[0])}.T" for m in atoms]
    return printer, names, lines


def compile_source(source: str, name: str, what: str):
    """Compile generated source under ``<symrnn-<what>-<name>>`` (kept in ``linecache`` for tracebacks)."""
    filename = f"<symrnn-{what}-{re.sub(r'[^A-Za-z0-9_.+-]', '_', name)}>"
    namespace = {"np": np, **{f"{n}__fn": rule.numpy for n, rule in RULES.items()}}
    exec(compile(source, filename, "exec"), namespace)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    function = namespace[what]
    function.__doc__ = f"Generated {what} step of the block {name!r}.\n\nGenerated source:\n\n{source}"
    return function


class TangentCode:
    """The generated tangent step of a block (a :class:`symrnn.engine.codegen.BlockCode`).

    ``function(params, V, dV, source, R, N, sizes, dtype)`` takes the forward values of one step
    ``V`` (code name -> ``(N, size)``: the input ``x__t``, the previous states ``h__prev``, the lets
    ``a__t`` and the new states ``h__t``), the tangents ``dV`` of the input (``x__t``; missing or None:
    zero) and of the previous states (``(R, N, size)``), and ``source``, which adds the source terms of
    the parameters (``source.matrix(out, name, coef, v, v's code name)``, ``source.vector(out, name, coef)``).  It
    returns the tangents of the lets and the new states by code name.
    """

    def __init__(self, block):
        self.block = block
        self.terms = tangent_terms(block.equations, block.terms, constants_of(block))
        self.source = self._source()
        self.function = compile_source(self.source, block.name, "tangent")

    def _source(self):
        b = self.block
        printer, names, mv_lines = coefficient_printer([t.coef for ts in self.terms.values() for t in ts])
        lines = ["def tangent(params, V, dV, source, R, N, sizes, dtype):"]
        lines += [f"    {s} = sizes[{s!r}]" for s in sorted(set(b.sizes.values()))]
        lines += [f"    {code_name(Param(p))} = params[{p!r}]" for p in b.params]
        values = [b.input_symbol] + [tsym(s, -1) for s in b.states] + [e.target for e in b.equations]
        lines += [f"    {code_name(v)} = V[{code_name(v)!r}]" for v in values]
        x = b.input_symbol
        lines.append(f"    {dot_name(x)} = dV.get({code_name(x)!r})")
        lines += [f"    {dot_name(tsym(s, -1))} = dV[{code_name(tsym(s, -1))!r}]" for s in b.states]
        lines += [f"    {line}" for line in mv_lines]
        out = []
        for e in b.equations:
            y = dot_name(e.target)
            lines.append(f"    # {sp.sstr(Tangent(e.target))} = {sp.sstr(sp.Add(*[t.expr() for t in self.terms[e.target]]))}")
            lines.append(f"    {y} = np.zeros((R, N, {b.sizes[e.target]}), dtype=dtype)")
            for t in self.terms[e.target]:
                coef = printer.doprint(t.coef)
                scaled = (lambda a: a) if t.coef == 1 else (lambda a, c=coef: f"({c}) * {a}")
                if t.kind == "elementwise":
                    add = f"{y} += {scaled(dot_name(t.source))}"
                elif t.kind == "through":
                    add = f"{y} += {scaled(f'({dot_name(t.source)} @ {code_name(t.matrix)}.T)')}"
                elif t.kind == "matrix":
                    v = code_name(t.vector)
                    add = f"source.matrix({y}, {t.source.name!r}, {coef}, {v}, {v!r})"
                else:
                    add = f"source.vector({y}, {t.source.name!r}, {coef})"
                if t.source == x:
                    lines += [f"    if {dot_name(x)} is not None:", f"        {add}"]
                else:
                    lines.append(f"    {add}")
            out.append(f"{code_name(e.target)!r}: {y}")
        lines.append("    return {" + ", ".join(out) + "}")
        return "\n".join(lines) + "\n"


_TANGENTS = weakref.WeakKeyDictionary()


def tangent_code(block) -> TangentCode:
    """The :class:`TangentCode` of a block, made once per block object."""
    code = _TANGENTS.get(block)
    if code is None:
        code = _TANGENTS[block] = TangentCode(block)
    return code


def step_reader(block):
    """``read(X, cache, t)``: the forward values of step ``t`` by code name, from a block's forward
    ``cache`` (the names worked out once)."""
    x = code_name(block.input_symbol)
    states = [(code_name(tsym(s, -1)), code_name(tsym(s)), f"S_{s}") for s in block.states]
    lets = [(code_name(e.target), f"C_{parse(e.target)[0]}") for e in block.equations if e.kind == "let"]

    def read(X, cache, t):
        values = {x: X[t]}
        for prev, now, key in states:
            values[prev] = cache[key][t]
            values[now] = cache[key][t + 1]
        for name, key in lets:
            values[name] = cache[key][t]
        return values
    return read


def unidirectional_layers(model, what):
    """``[(keys: cell name -> model key, sizes, residual, initial-state row or None)]`` of a one-cell
    model or of a stack of unidirectional layers (:class:`symrnn.StackedModel`); a backward direction
    is refused (``what`` names the algorithm in the message).  The keys name every parameter of the cell,
    a matrix cell's fixed spreads and folds included (the forward reads them; they have no direction)."""
    parts = model.parts()  # read from the model's parts, as every use does (not from its type)
    cells, residual = [p for p in parts if p.kind == "cell"], {p.layer for p in parts if p.kind == "residual"}
    if any(p.reverse for p in cells) or any(p.kind not in ("cell", "residual", "readout", "loss") for p in parts):
        raise ShapeError(f"{what} runs one cell or a stack of unidirectional layers; {model!r} has a backward "
                         f"direction or is not a stack of cells.")
    if [p.row for p in cells] == [None]:
        return [({n: n for n in model.cell.params}, model.sizes, False, None)]
    sizes = {"H": model.sizes["H"], "K": model.sizes["K"]}
    return [({n: p.prefix + n for n in model.cell.params}, {"D": p.width, **sizes}, p.layer in residual, p.row)
            for p in cells]

"""The tangent of a block's forward pass over a whole sequence along one direction, generated for speed.

This is the forward half of the exact Hessian-vector product (:mod:`symrnn.engine.second_order`): the
tangent-linear equations of :mod:`symrnn.engine.tangent` (the same terms), run along one direction
``dot theta`` with the forward values of every step already known.  Everything that does not wait for the
previous step's tangent is made for all steps at once, before the loop over time:

* the source terms' products ``v dot P^T`` (``v`` a forward value) and, for a layer above the first, the
  products ``dot x P^T`` of the input's tangent, each one matrix product over ``(T, N, size)``;
* the forward products ``P v`` that coefficients read (taken from the forward's cache when it keeps them).

What is left for each step: one stacked product ``dot u [P_1; P_2; ...]^T`` per tangent ``dot u`` that goes
through matrices (as the forward stacks ``P_k v``), the coefficients (common subexpressions once) and one
assignment per equation, written straight into the arrays over all steps.
"""
from __future__ import annotations

import itertools
import weakref

import numpy as np
import sympy as sp

from .codegen import EngineSymbol, code_name
from .symbols import Param, parse, tsym
from .tangent import (
    coefficient_printer,
    compile_source,
    constants_of,
    dot_name,
    step_reader,
    tangent_terms,
)


class SequenceTangentCode:
    """The generated tangent step of a block for one direction over a known sequence.

    ``function(params, dparams, V, dV, SRC, XD, MV, TS, OUT, sizes)``: the forward values ``V`` of the step and the
    tangents ``dV`` of the previous states (and of the input, ``x__t``, when :attr:`with_input`) by code
    name, ``(N, size)``; the step's slices of the all-steps products: ``SRC[k]`` of :attr:`sources`,
    ``XD[k]`` of :attr:`inputs`, ``MV[k]`` of :attr:`atoms`; ``TS[g]`` the stacked transposed matrices of
    :attr:`groups`; ``OUT``: the arrays the tangents of the lets and new states are written into; ``sizes``
    the size names' values.
    """

    def __init__(self, block, with_input):
        self.block, self.with_input = block, with_input
        self.constants = constants_of(block)  # fixed spreads and folds: no tangent
        self.terms = tangent_terms(block.equations, block.terms, self.constants)
        every = [t for ts in self.terms.values() for t in ts]
        x = block.input_symbol
        self.sources = list(dict.fromkeys((t.source.name, t.vector) for t in every if t.kind == "matrix"))
        self.inputs = list(dict.fromkeys(t.matrix.name for t in every if t.kind == "through" and t.source == x
                                         and with_input))
        self.groups = {}  # tangent -> matrices it goes through, stacked in one product per step
        for t in every:
            if t.kind == "through" and t.source != x:
                self.groups.setdefault(t.source, [])
                if t.matrix.name not in self.groups[t.source]:
                    self.groups[t.source].append(t.matrix.name)
        printer, names, _ = coefficient_printer([t.coef for t in every])
        self.atoms = list(names)  # MatVec atoms the coefficients read, as mv<k>
        self.source = _SequenceTangentWriter(self, printer, names).write()
        self.function = compile_source(self.source, block.name, "tangent_step")

    def stacked(self, params):
        """``TS``: for each group, its matrices stacked along the rows and transposed (contiguous)."""
        return [np.ascontiguousarray((params[mats[0]] if len(mats) == 1 else
                                      np.concatenate([params[p] for p in mats], axis=0)).T)
                for mats in self.groups.values()]


class _SequenceTangentWriter:
    """Writes the source of :class:`SequenceTangentCode`."""

    def __init__(self, code, printer, names):
        self.c, self.b, self.printer, self.names = code, code.block, printer, names

    def write(self) -> str:
        b, c = self.b, self.c
        lines = ["def tangent_step(params, dparams, V, dV, SRC, XD, MV, TS, OUT, sizes):"]
        lines += [f"    {s} = sizes[{s!r}]" for s in sorted(set(b.sizes.values()))]
        lines += [f"    {code_name(Param(p))} = params[{p!r}]" for p in b.params]
        lines += [f"    {dot_name(Param(p))} = dparams[{p!r}]" for p in b.params if p not in c.constants]
        values = [b.input_symbol] + [tsym(s, -1) for s in b.states] + [e.target for e in b.equations]
        lines += [f"    {code_name(v)} = V[{code_name(v)!r}]" for v in values]
        lines += [f"    {dot_name(tsym(s, -1))} = dV[{code_name(tsym(s, -1))!r}]" for s in b.states]
        if c.with_input:
            lines.append(f"    {dot_name(b.input_symbol)} = dV[{code_name(b.input_symbol)!r}]")
        lines += [f"    {name} = MV[{k}]" for k, name in enumerate(self.names.values())]
        lines += self._coefficients()
        self.done = set()
        for e in b.equations:
            lines += self._equation(e)
        return "\n".join(lines) + "\n"

    def _coefficients(self):
        """The coefficients, their common subexpressions computed once; fills :attr:`printed`."""
        coefs = list(dict.fromkeys(t.coef for ts in self.c.terms.values() for t in ts if t.coef != 1))
        reps, reduced = sp.cse(coefs, symbols=(EngineSymbol(f"w{i}") for i in itertools.count()))
        doprint = self.printer.doprint
        self.printed = {coef: doprint(r) for coef, r in zip(coefs, reduced)}
        return [f"    {doprint(w)} = {doprint(e)}" for w, e in reps]

    def _piece(self, t):
        """The code of one term's tangent factor (without its coefficient), or None when it is zero."""
        c, x = self.c, self.b.input_symbol
        if t.kind == "matrix":
            return f"SRC[{c.sources.index((t.source.name, t.vector))}]"
        if t.kind == "vector":
            return dot_name(t.source)
        if t.source == x and not c.with_input:
            return None
        if t.kind == "elementwise":
            return dot_name(t.source)
        if t.source == x:
            return f"XD[{c.inputs.index(t.matrix.name)}]"
        mats = c.groups[t.source]
        g = list(c.groups).index(t.source)
        if len(mats) == 1:
            return f"thr{g}"
        k = mats.index(t.matrix.name)
        rows = [self.b.params[m].shape[0] for m in mats]
        start = sp.Add(*[sp.Symbol(r) for r in rows[:k]])
        return f"thr{g}[:, {start}:{start + sp.Symbol(rows[k])}]"

    def _equation(self, e):
        """``dot y`` into ``OUT``: the sum over coefficients of ``coef * (sum of the terms' factors)``; the
        stacked products of the tangents it reads first made."""
        lines, groups = [], {}
        for t in self.c.terms[e.target]:
            if t.kind == "through" and t.source in self.c.groups and t.source not in self.done:
                g = list(self.c.groups).index(t.source)
                lines.append(f"    thr{g} = {dot_name(t.source)} @ TS[{g}]")
                self.done.add(t.source)
            piece = self._piece(t)
            if piece is not None:
                groups.setdefault(t.coef, []).append(piece)
        parts = [" + ".join(p) if coef == 1 else f"({self.printed[coef]}) * ({' + '.join(p)})"
                 for coef, p in groups.items()]
        y = dot_name(e.target)
        return lines + [f"    {y} = OUT[{code_name(e.target)!r}]", f"    {y}[...] = {' + '.join(parts) or '0.0'}"]


_CODES = weakref.WeakKeyDictionary()


def sequence_tangent_code(block, with_input) -> SequenceTangentCode:
    """The :class:`SequenceTangentCode` of a block, made once per block object (``with_input``: the input
    has a tangent, as in every layer above the first)."""
    codes = _CODES.setdefault(block, {})
    if with_input not in codes:
        codes[with_input] = SequenceTangentCode(block, with_input)
    return codes[with_input]


def all_steps(block, X, cache, symbol):
    """The forward values of ``symbol`` at every step, ``(T, N, size)``, from a block's forward cache."""
    if symbol == block.input_symbol:
        return X
    base, offset, _ = parse(symbol)
    if base in block.states:
        return cache[f"S_{base}"][:-1] if offset == -1 else cache[f"S_{base}"][1:]
    return cache[f"C_{base}"]


def matvec_steps(block, X, cache, params, atom, sizes, empty):
    """The forward product ``P v`` of ``atom`` at every step: the forward's own (its cache keeps the stacked
    products ``P<g>`` of each vector), else made here in one matrix product."""
    P, v = atom.args
    group = getattr(block, "groups", {}).get(v)
    stored = cache.get(f"P{group.index}") if group is not None and atom in group.atoms else None
    if stored is not None:
        k = group.atoms.index(atom)
        start = sum(sizes[r] for r in group.rows[:k])
        stop = start + sizes[group.rows[k]]
        if stored.shape[-1] == sum(sizes[r] for r in group.rows):
            return stored[..., start:stop]
    steps, m = all_steps(block, X, cache, v), params[P.name]
    return np.matmul(steps, m.T, out=empty(f"~mv_{P.name}_{code_name(v)}", steps.shape[:-1] + m.shape[:1],
                                            np.result_type(steps, m)))


def tangent_sweep(block, p, dp, x, dx, S, sizes, empty):
    """The forward pass of one block over a sequence and its tangent along ``dp`` (``dx``: the input's
    tangent, None for the data): ``(cache, dots, d_initial, products)``; ``dots`` the tangents of every let
    and new state at every step by code name, ``products`` the all-steps products (``SRC``: the sources'
    by ``(matrix, vector)``, ``MV``: the coefficients' ``P v`` by atom) for the reverse sweep."""
    T, N, dtype = x.shape[0], x.shape[1], x.dtype
    code = sequence_tangent_code(block, with_input=dx is not None)
    cache = block.forward(p, x, S, sizes, empty)

    def product(name, a, m):
        return np.matmul(a, m.T, out=empty(name, a.shape[:-1] + m.shape[:1], np.result_type(a, m)))

    src = [product(f"~src_{P}_{code_name(v)}", all_steps(block, x, cache, v), dp[P]) for P, v in code.sources]
    xd = [product(f"~xd_{P}", dx, p[P]) for P in code.inputs]
    mv = [matvec_steps(block, x, cache, p, m, sizes, empty) for m in code.atoms]
    ts = code.stacked(p)
    names = {code_name(e.target): block.sizes[e.target] for e in block.equations}
    dots = {n: empty(f"~dot_{n}", (T, N, sizes[s]), dtype) for n, s in names.items()}
    d_initial = {s: np.zeros((N, S[s].shape[-1]), dtype=dtype) for s in block.states}
    prev = {s: (code_name(tsym(s, -1)), code_name(tsym(s))) for s in block.states}
    x_name, read = code_name(block.input_symbol), step_reader(block)
    dV = {prev[s][0]: d_initial[s] for s in block.states}
    for t in range(T):
        if dx is not None:
            dV[x_name] = dx[t]
        out = {n: d[t] for n, d in dots.items()}
        code.function(p, dp, read(x, cache, t), dV, [a[t] for a in src], [a[t] for a in xd], [a[t] for a in mv], ts,
                      out, sizes)
        dV = {prev[s][0]: out[prev[s][1]] for s in block.states}
    products = {"SRC": dict(zip(code.sources, src)), "MV": dict(zip(code.atoms, mv))}
    return cache, dots, d_initial, products

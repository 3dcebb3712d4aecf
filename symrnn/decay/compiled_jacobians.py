"""The step Jacobians of a chunk, written as one compiled loop over its steps (the fused backend).

The symbolic step Jacobians of a cell (sums of ordered products of ``Diag(v)`` and weight
matrices, :attr:`symrnn.engine.bptt.Derivation.step_jacobians`) are distributed into terms
``c Diag(l) W Diag(r)`` (``W`` a weight matrix or none); the elementwise vectors ``l`` and ``r``
are printed as scalar code by the fused backend's printer (:mod:`symrnn.engine.fused_print`),
reading the arrays the whole-loop forward (:func:`symrnn.engine.fused.fuse` with
``whole_loop=True``) leaves, and one Numba function fills, step by step, the buffers a
:class:`~symrnn.decay.jacobian_stream.ChunkJacobians` reads: the dense columns, the diagonal
blocks and the direct paths.  A cell whose Jacobian has a term with two weight matrices (or a
power of one) is not handled here: its decay runs on NumPy (:func:`compile_chunk` returns None).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..engine.bptt import Diag
from ..engine.codegen import EngineSymbol, code_name
from ..engine.fused import fuse
from ..engine.fused_cache import kernel_module
from ..engine.fused_print import (
    FusedWriter,
    KernelPrinter,
    Unfusable,
    element,
    functions_called,
    module_text,
)
from ..engine.symbols import Param, parse


class Unsupported(Exception):
    """The Jacobian has a term the compiled loop does not evaluate."""


@dataclass
class Term:
    """``c Diag(V[left]) W Diag(V[right])``: vector indices (-1: none), ``matrix`` a parameter or None."""

    c: float
    left: int
    matrix: str | None
    right: int


def _distribute(expr):
    """``expr`` as a list of ``(scalars, factors)`` products (commutative scalars; the
    noncommutative factors in order), without expanding inside any ``Diag``."""
    if expr == 0:
        return []
    if isinstance(expr, sp.Add):
        return [t for a in expr.args for t in _distribute(a)]
    if isinstance(expr, sp.Mul):
        scalars, factors = expr.args_cnc()
        out = [(list(scalars), [])]
        for f in factors:
            out = [(s1 + s2, f1 + f2) for s1, f1 in out for s2, f2 in _distribute(f)]
        return out
    if isinstance(expr, sp.Pow) and not expr.is_commutative:
        raise Unsupported(f"a power of a matrix: {expr}")
    return [([expr], [])] if expr.is_commutative else [([], [expr])]


class _Vectors:
    """The distinct elementwise vectors of the terms, each with its size."""

    def __init__(self):
        self.index, self.items = {}, []

    def of(self, factors, size):
        if not factors:
            return -1
        expr = sp.Mul(*factors)
        key = (expr, size)
        if key not in self.index:
            self.index[key] = len(self.items)
            self.items.append(key)
        return self.index[key]


def terms_of(expr, vectors, rows, cols):
    """The :class:`Term` list of one block ``ds/dp`` (``rows``, ``cols``: the sizes of ``s`` and ``p``)."""
    out = []
    for scalars, factors in _distribute(expr):
        c, left, right, matrix = 1.0, [], [], None
        for x in scalars:
            if x.is_number:
                c *= float(x)
            else:
                left.append(x)  # an elementwise factor outside every Diag
        for f in factors:
            if isinstance(f, Diag):
                (right if matrix is not None else left).append(f.args[0])
            elif isinstance(f, sp.Symbol) and not f.is_commutative and matrix is None:
                matrix = f.name
            else:
                raise Unsupported(f"the factor {f} of a step Jacobian")
        if matrix is None and rows != cols:
            raise Unsupported("a diagonal block between states of different sizes")
        out.append(Term(c, vectors.of(left, rows), matrix, vectors.of(right, rows if matrix is None else cols)))
    return out


def _loop(name, args, body):
    """The text of a generated loop over the steps ``t`` and the batch ``n__``."""
    return "\n".join([f"def {name}({', '.join(args)}):", "    for t in range(T):", "        BAD[t] = False",
                      "        for n__ in range(N):"] + ["            " + b for b in body]) + "\n"


def _product(term, i, j):
    """The scalar code of ``c l[i] (W[i, j]) r[j]``."""
    parts = [] if term.c == 1.0 else [repr(term.c)]
    if term.left >= 0:
        parts.append(f"V[{term.left}, {i}]")
    if term.matrix is not None:
        parts.append(f"{term.matrix}__m[{i}, {j}]")
    if term.right >= 0:
        parts.append(f"V[{term.right}, {j}]")
    return " * ".join(parts) or "1.0"


class ChunkKernel:
    """The generated loop of one stream (see the module docstring) and how to call it.

    ``layout``: the stream's :class:`~symrnn.decay.jacobian_stream.StateLayout`; ``dense_prev``,
    ``diag_prev``: the previous states whose blocks have a weight matrix, and the others;
    ``direct``: the states whose own block has terms without a matrix.
    """

    def __init__(self, model, block, layout, dense_prev, diag_prev, jacobians):
        self.layout, self.dense_prev, self.diag_prev = layout, dense_prev, diag_prev
        writer = FusedWriter(block)
        self.reads, self.atom_names, self.sizes_used = writer.element_reads(), writer.atom_names, writer.sizes_used
        self.vectors = _Vectors()
        self.blocks = self._blocks(jacobians)
        self.used, self.locals = set(), set()
        self._text()

    def _size(self, name):
        return self.layout.sizes[self.layout.names.index(name)]

    def _blocks(self, jacobians):
        """``{(s, p): terms}`` of every block, and the direct terms of each state."""
        out = {}
        for (s, p), expr in jacobians.items():
            out[(s, p)] = terms_of(expr, self.vectors, self._size(s), self._size(p))
        self.direct = {s: [t for t in out[(s, s)] if t.matrix is None] for s in self.layout.names}
        self.direct = {s: ts for s, ts in self.direct.items() if ts}
        self.diag_slices, o = {}, 0
        for p in self.diag_prev:
            for s in self.layout.names:
                if out[(s, p)]:
                    self.diag_slices[(s, p)] = slice(o, o + self._size(p))
                    o += self._size(p)
        self.diag_total = o
        self.direct_slices, o = {}, 0
        for s in self.direct:
            self.direct_slices[s] = slice(o, o + self._size(s))
            o += self._size(s)
        self.direct_total = o
        return out

    def _resolve(self, name):
        if name in self.locals:
            return name
        template = self.reads.get(name)
        if template is None:
            raise Unsupported(f"nothing holds {name}")
        self.used.add(template.split("[")[0])
        return element(template)

    def _text(self):
        printer = KernelPrinter(self.atom_names, self._resolve)
        body = []
        body.append("z__ = 0.0  # x * 0.0 is 0 for every finite x: z__ is nan when an entry is not finite")
        body += self._vector_lines(printer)
        self.matrices = sorted({t.matrix for ts in self.blocks.values() for t in ts if t.matrix is not None})
        col = 0
        for p in self.dense_prev:
            for s in self.layout.names:
                body += self._dense_block(self.blocks[(s, p)], self.layout.slice(s).start, col, self._size(s),
                                          self._size(p))
            col += self._size(p)
        for key, sl in self.diag_slices.items():
            body += self._sum("DV", sl.start, self.blocks[key], self._size(key[1]))
        for s, sl in self.direct_slices.items():
            body += self._sum("DR", sl.start, self.direct[s], self._size(s))
        matrices = self.matrices
        self.arrays = sorted(self.used)
        body.append("BAD[t] = BAD[t] or z__ != z__")
        head = ["T", "N"] + self.sizes_used + self.arrays + [f"{m}__m" for m in matrices]
        self.source = _loop("jacobian_loop", head + ["V", "X", "MX", "dense", "DV", "DR", "BAD"], body)
        self.source += _loop("vector_loop", head + ["VS", "X", "MX", "DD", "DV", "DR", "BAD"],
                             ["V = VS[t, n__]"] + self._implicit_body(printer))

    def _implicit_body(self, printer):
        """The body of ``vector_loop``: the vectors of every step kept (``VS``), no dense Jacobian; the
        dense blocks' diagonal terms summed into ``DD``; the same finiteness check as ``jacobian_loop``."""
        body = ["z__ = 0.0"] + self._vector_lines(printer)
        self.dd_slices, o = {}, 0
        for p in self.dense_prev:
            for s in self.layout.names:
                terms = self.blocks[(s, p)]
                body += self._bound_rows([t for t in terms if t.matrix is not None], self._size(s), self._size(p))
                if any(t.matrix is None for t in terms):
                    self.dd_slices[(s, p)] = slice(o, o + self._size(s))
                    body += self._sum("DD", o, [t for t in terms if t.matrix is None], self._size(s))
                    o += self._size(s)
        self.dd_total = o
        for key, sl in self.diag_slices.items():
            body += self._sum("DV", sl.start, self.blocks[key], self._size(key[1]))
        for s, sl in self.direct_slices.items():
            body += self._sum("DR", sl.start, self.direct[s], self._size(s))
        return body + ["BAD[t] = BAD[t] or z__ != z__"]

    def _bound_rows(self, terms, rows, cols):
        """The finiteness of a dense block's rows without writing them: each row's exact bound, and
        its entries (computed, not kept) only where the bound reaches 1e300."""
        if not terms:
            return []
        out = [f"for i__ in range({rows}):", "    b__ = 0.0"]
        entry = []
        for k, term in enumerate(terms):
            scale = f"{term.c!r}" + (f" * V[{term.left}, i__]" if term.left >= 0 else "")
            right = f" * V[{term.right}, j__]" if term.right >= 0 else ""
            out.append(f"    b__ += abs({scale}) * MX[{self.matrices.index(term.matrix)}]"
                       + (f" * X[{term.right}]" if term.right >= 0 else ""))
            entry.append(f"        e__ {'=' if k == 0 else '+='} {scale} * {term.matrix}__m[i__, j__]{right}")
        return out + ["    if not b__ < 1e300:", f"        for j__ in range({cols}):"] + ["    " + e for e in entry] + [
            "            z__ += e__ * 0.0"]

    def _vector_lines(self, printer):
        """The vectors ``V[k]`` of a step, one loop per size, their shared factors computed once
        (``cse``); ``X[k]``: each vector's largest ``|entry|`` (nan if one is nan)."""
        lines, by_size = [], {}
        for k, (expr, size) in enumerate(self.vectors.items):
            by_size.setdefault(size, []).append((k, expr))
        names = sp.numbered_symbols("u", cls=EngineSymbol)
        for size, group in by_size.items():
            shared, exprs = sp.cse([e for _, e in group], symbols=names, order="none")
            self.locals.update(str(sym) for sym, _ in shared)
            lines.append(f"for j__ in range({size}):")
            lines += [f"    {sym} = {printer.doprint(e)}" for sym, e in shared]
            lines += [f"    V[{k}, j__] = {printer.doprint(e)}" for (k, _), e in zip(group, exprs)]
        for k, (_, size) in enumerate(self.vectors.items):
            lines += ["m__ = 0.0", f"for j__ in range({size}):", f"    x__ = abs(V[{k}, j__])",
                      "    if x__ != x__ or x__ > m__:", "        m__ = x__", f"X[{k}] = m__"]
        return lines

    def _dense_block(self, terms, row, col, rows, cols):
        """Rows ``row ..`` and columns ``col ..`` of the dense buffer: the first term with a matrix
        assigns each row (zeros when none has one), the others add; loops over plain rows."""
        with_matrix = [t for t in terms if t.matrix is not None]
        out = [f"for i__ in range({rows}):", f"    d__ = dense[t, n__, {row} + i__, {col}:{col + cols}]"]
        if not with_matrix:
            out.append("    d__[:] = 0.0")
        out.append("    b__ = 0.0")
        for k, term in enumerate(with_matrix):
            left = term.c if term.left < 0 else None
            scale = repr(left) if left is not None else (f"V[{term.left}, i__]" if term.c == 1.0
                                                         else f"{term.c!r} * V[{term.left}, i__]")
            right = " * v__[j__]" if term.right >= 0 else ""
            out += [f"    a__ = {scale}", f"    w__ = {term.matrix}__m[i__]"]
            if term.right >= 0:
                out.append(f"    v__ = V[{term.right}]")
            out += [f"    for j__ in range({cols}):", f"        d__[j__] {'=' if k == 0 else '+='} a__ * w__[j__]{right}",
                    f"    b__ += abs(a__) * MX[{self.matrices.index(term.matrix)}]"
                    + (f" * X[{term.right}]" if term.right >= 0 else "")]
        # every entry of the row is at most b__: finite when b__ is; else each entry is checked
        out += ["    if not b__ < 1e300:", f"        for j__ in range({cols}):", "            z__ += d__[j__] * 0.0"]
        for term in terms:
            if term.matrix is None:
                out += [f"    d__[i__] += {_product(term, 'i__', 'i__')}", "    z__ += d__[i__] * 0.0"]
        return out

    def _sum(self, array, offset, terms, size):
        value = " + ".join(_product(t, "i__", "i__") for t in terms)
        return [f"for i__ in range({size}):", f"    {array}[t, n__, {offset} + i__] = {value}",
                f"    z__ += {array}[t, n__, {offset} + i__] * 0.0"]

    def bind(self, model):
        """Where each array argument comes from: ``(kind, key)`` for :meth:`arguments`."""
        cell, where = model.cell, {}
        for s in cell.states:
            where[code_name(s, "S")] = ("cache", f"S_{s}")
        for eq in cell.equations:
            if eq.kind == "let":
                base = parse(eq.target)[0]
                where[code_name(base, "C")] = ("cache", f"C_{base}")
        for name, spec in cell.params.items():
            if not spec.is_matrix:
                where[code_name(Param(name))] = ("param", name)
        where["X"] = ("X", None)
        self.where = where
        missing = [a for a in self.arrays if a not in where and not a.startswith("P")]
        if missing:
            raise Unsupported(f"no array for {missing}")

    def arguments(self, params, X, cache, sizes):
        out = []
        for a in self.arrays:
            kind, key = self.where.get(a, ("cache", a))
            out.append(cache[key] if kind == "cache" else params[key] if kind == "param" else X)
        return [sizes[s] for s in self.sizes_used] + out + [np.ascontiguousarray(params[m]) for m in self.matrices]


class CompiledChunk:
    """The whole-loop forward and the Jacobian loops of a :class:`JacobianStream` (None: not compiled).

    ``function`` fills a chunk's dense Jacobian columns; ``vector_loop`` keeps only the vectors of
    each step's terms, for :meth:`operator`: ``J_t M`` applied term by term (one BLAS product per
    group of weight matrices that read the same columns), never forming ``J_t``."""

    def __init__(self, model, forward, kernel, function, vector_loop=None):
        self.model, self.forward, self.kernel, self.function = model, forward, kernel, function
        self.vector_loop = vector_loop
        self.packed = self.DV = self.DR = None  # set by the stream at its first chunk
        self.V = np.empty((max(1, len(kernel.vectors.items)), max([1] + [n for _, n in kernel.vectors.items])))
        self.X = np.empty(self.V.shape[0])
        self._tables = None

    def _bound(self, params):
        return np.array([np.max(np.abs(params[m])) if params[m].size else 0.0 for m in self.kernel.matrices] or [0.0])

    def jacobians(self, params, X, cache, dense, DV, DR):
        """Fills the buffers; returns, per step, whether an entry is not finite."""
        T, N = X.shape[:2]
        args = self.kernel.arguments(params, X, cache, self.model.sizes)
        bad = np.empty(T, dtype=np.bool_)
        dense = dense if dense is not None else np.zeros((T, N, 1, 1))
        self.function(T, N, *args, self.V, self.X, self._bound(params), dense, DV, DR, bad)
        return bad

    def vectors(self, params, X, cache, VS, DD, DV, DR):
        """Fills the step vectors ``VS`` (C, N, vectors, size) and the diagonal buffers; returns,
        per step, whether an entry of the step Jacobian is not finite."""
        T, N = X.shape[:2]
        args = self.kernel.arguments(params, X, cache, self.model.sizes)
        bad = np.empty(T, dtype=np.bool_)
        self.vector_loop(T, N, *args, VS, self.X, self._bound(params), DD, DV, DR, bad)
        return bad

    def tables(self, params):
        """``(groups, weights, terms, coefficients, diagonals)`` of :func:`symrnn.decay.compiled_steps.
        apply_terms` for ``params`` (kept while the same arrays are given)."""
        if self._tables is not None and self._tables[0] is params:
            return self._tables[1]
        self._tables = (params, operator_tables(self.kernel, params))
        return self._tables[1]


def operator_tables(kernel, params):
    """The term tables of ``J_t M`` (see :func:`symrnn.decay.compiled_steps.apply_terms`); raises
    :class:`Unsupported` when a weight matrix's shape is not the block's."""
    lay, groups, stacks, rows_of, sizes = kernel.layout, {}, [], {}, {}
    terms, coefficients = [], []
    for (s, p), ts in kernel.blocks.items():
        for t in ts:
            if t.matrix is None:
                continue
            W = np.asarray(params[t.matrix], dtype=np.float64)
            if W.shape != (kernel._size(s), kernel._size(p)):
                raise Unsupported(f"{t.matrix} of shape {W.shape} in the block d{s}/d{p}")
            g = groups.setdefault((p, t.right), len(groups))
            if (g, t.matrix) not in rows_of:  # the matrix's first row in its group's stack
                rows_of[(g, t.matrix)] = sum(kernel._size(s_) for (gg, _), s_ in sizes.items() if gg == g)
                sizes[(g, t.matrix)] = s
            terms.append([lay.slice(s).start, g, rows_of[(g, t.matrix)], kernel._size(s), t.left])
            coefficients.append(t.c)
    table, offset = [], 0
    for (p, right), g in sorted(groups.items(), key=lambda x: x[1]):
        mats = [m for gg, m in rows_of if gg == g]
        W = np.concatenate([np.asarray(params[m], dtype=np.float64) for m in mats])
        stacks.append(W.ravel())
        table.append([lay.slice(p).start, kernel._size(p), right, offset, W.shape[0]])
        offset += W.size
    diagonals = [[lay.slice(s).start, lay.slice(p).start, sl.stop - sl.start, sl.start]
                 for (s, p), sl in kernel.dd_slices.items()]
    return (np.array(table, dtype=np.int64).reshape(-1, 5),
            np.concatenate(stacks) if stacks else np.zeros(0),
            np.array(terms, dtype=np.int64).reshape(-1, 5), np.array(coefficients, dtype=np.float64),
            np.array(diagonals, dtype=np.int64).reshape(-1, 4))


def compile_chunk(model, block, layout, dense_prev, diag_prev, jacobians):
    """The compiled chunk of a stream, or None (the backend in force is NumPy, or the cell's
    forward or Jacobian has a shape the compiled loops do not handle)."""
    forward = fuse(block, whole_loop=True)
    if forward is None:
        return None
    try:
        kernel = ChunkKernel(model, block, layout, dense_prev, diag_prev, jacobians)
        kernel.bind(model)
    except (Unsupported, Unfusable):
        return None
    import numba
    import scipy.linalg  # noqa: F401  (Numba's BLAS, loaded now: the study's one-thread limit then covers it)
    texts = {"kernels": module_text([kernel.source]), "functions": functions_called([kernel.source])}
    key = block._cache_key()
    functions, _ = kernel_module(texts, None if key is None else f"decay-jacobians\0{key}", numba)
    return CompiledChunk(model, forward.forward, kernel, functions["jacobian_loop"], functions["vector_loop"])

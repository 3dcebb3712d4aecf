"""Generated NumPy code for the forward and backward passes of one block.

A *block* is a cell (or a stateless readout) run over time.  From its
equations and the adjoint terms of :func:`symrnn.engine.bptt.local_terms` this
module writes two Python functions, prints every expression with a SymPy
code printer (after ``cse`` of the backward coefficients), and compiles them under a file name
like ``<symrnn-bptt-lstm>`` registered in ``linecache`` (tracebacks show the generated lines).

Speed comes from the layout, not from tricks in the expressions: every
product ``P v`` with the same ``v`` is done as one product with the stacked
matrices; products of the input, and of lets made of them
(:mod:`symrnn.engine.hoist`), are done for all steps at once outside the loops
(as cuDNN does), and the gradients of the matrices and of the inputs are one
product each after the backward loop.
"""
from __future__ import annotations

import copy
import functools
import linecache
import re
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from .. import cache
from .bptt import assemble, local_terms
from .functions import BUILTIN_FUNCTIONS, IN_PLACE, RULES, rule_of
from .hoist import forward_lines, hoisted_groups
from .memory import keep_freed_memory
from .stored import own_functions_only
from .structure import contraction_code, fixed_code, fold_values, spread_values
from .symbols import MatVec, Param, linear_maps, parse, tsym
from .transient import (ForwardCache, contracted_lets, once_lines, parameter_lets, step_buffers, transient_groups,
                        transient_product)


class EngineSymbol(sp.Symbol):
    """A name the generated code makes for itself (``k0``, ``w3``): printed as it is."""


class StepPrinter(PythonCodePrinter):
    """Prints step expressions as NumPy code: symbols by their code names
    (:func:`code_name`), functions as ``<name>__fn`` from the rules of
    :data:`symrnn.engine.functions.RULES`, constants as float literals."""

    def __init__(self, names, settings=None):
        super().__init__(settings or {})
        self.names = names

    def _print(self, expr, **kwargs):
        # every applied function goes through the rule table, whatever method
        # PythonCodePrinter has for it (its _print_sin would print math.sin)
        if isinstance(expr, sp.Function) and not isinstance(expr, MatVec):
            return self._print_Function(expr)
        return super()._print(expr, **kwargs)

    def _print_Symbol(self, expr):
        if isinstance(expr, EngineSymbol):
            return expr.name
        return self.names.get(expr, None) or code_name(expr)

    def _print_Function(self, expr):
        return f"{function_name(expr)}({', '.join(self._print(a) for a in expr.args)})"

    def _print_NumberSymbol(self, expr):
        return repr(float(expr))

    _print_Pi = _print_Exp1 = _print_EulerGamma = _print_GoldenRatio = _print_Catalan = _print_NumberSymbol
    _print_TribonacciConstant = _print_NumberSymbol

    def _print_Pow(self, expr, rational=False):
        return self._hprint_Pow(expr, rational=rational, sqrt="np.sqrt")

    def _print_MatVec(self, expr):
        return self.names[expr]

    def into(self, target, expr) -> list:
        """Lines that compute ``expr`` into the existing array ``target`` with few temporaries: a sum's first
        term, a product's first factors and the argument of a function that works in place
        (:data:`~symrnn.engine.functions.IN_PLACE`) are computed in ``target`` itself, the rest is added,
        multiplied or applied there.  (``target`` is a fresh slot of this step: ``expr`` never reads it.)"""
        if isinstance(expr, sp.Add):  # compound terms first, into target; atoms are added to it
            first, *rest = sorted(expr.args, key=_named)
            if _named(first):  # two names: one np.add
                lines = [f"np.add({self.doprint(first)}, {self.doprint(rest[0])}, out={target})"]
                rest = rest[1:]
            else:
                lines = self.into(target, first)
            for term in rest:
                negated = -term
                if term.could_extract_minus_sign() and not isinstance(negated, sp.Add):
                    lines.append(f"np.subtract({target}, {self.doprint(negated)}, out={target})")
                else:
                    lines.append(f"np.add({target}, {self.doprint(term)}, out={target})")
            return lines
        if isinstance(expr, sp.Mul):
            *head, last = expr.args
            if len(head) == 1:
                return [f"np.multiply({self.doprint(head[0])}, {self.doprint(last)}, out={target})"]
            return self.into(target, sp.Mul(*head, evaluate=False)) + [
                f"np.multiply({target}, {self.doprint(last)}, out={target})"]
        if isinstance(expr, sp.Function) and not isinstance(expr, MatVec) and rule_of(expr).writes_into:
            name = function_name(expr)
            if (len(expr.args) == 1 and rule_of(expr).name in IN_PLACE and type(expr) in BUILTIN_FUNCTIONS
                    and not _named(expr.args[0])):
                return self.into(target, expr.args[0]) + [f"{name}({target}, out={target})"]
            return [f"{name}({', '.join(self.doprint(a) for a in expr.args)}, out={target})"]
        return [f"{target}[...] = {self.doprint(expr)}"]


def _named(expr) -> bool:
    """Whether generated code reads ``expr`` by a name or a literal (no arithmetic to do)."""
    return expr.is_Atom or isinstance(expr, MatVec)


def fresh(name, shape, dtype):
    """The default allocator of generated code: a new array every call."""
    return np.empty(shape, dtype=dtype)


class Workspace:
    """Arrays reused from one call to the next, per allocation site, shape and dtype.

    A fresh multi-megabyte array costs a page fault per 4 KiB page on first
    write, every call (the allocator hands large blocks back to the system);
    at N=32, T=100, H=128 that was a third of a gradient evaluation.  PyTorch
    avoids it with a caching allocator; this is ours.  One workspace serves
    one thread (see :class:`symrnn.models.model.Model`), and nothing allocated from
    it may be returned to a caller: :meth:`owns` tells.
    """

    def __init__(self):
        self.arrays = {}
        keep_freed_memory()  # and NumPy's temporaries reuse freed memory too (symrnn.engine.memory)

    def __call__(self, name, shape, dtype):
        key = (name, tuple(shape), np.dtype(dtype))
        array = self.arrays.get(key)
        if array is None:
            array = self.arrays[key] = np.empty(shape, dtype=dtype)
        return array

    def owns(self, array) -> bool:
        return any(np.may_share_memory(array, a) for a in self.arrays.values())


def code_name(symbol, role=None) -> str:
    """The variable of generated code that holds a user's quantity.

    ``h[t-1]`` -> ``h__prev``, ``a[t]`` -> ``a__t``, ``bar a[t]`` -> ``a__bar_t``,
    the parameter ``U`` -> ``U__p``; ``role`` names the arrays over all steps
    (``h__S`` for a state, ``a__C`` for a let) and the carried adjoint
    (``h__carry``).  Every such name is the user's identifier, ``__`` and a tag,
    and no name of the code's own (``T``, ``X``, ``q3``, ``np`` ...) contains
    ``__``: a user's name can be anything, keywords and builtins included,
    without meeting another variable.
    """
    if role is not None:
        return f"{symbol}__{role}"
    parsed = parse(symbol)
    if parsed is None:
        return f"{symbol.name}__p"
    base, offset, is_bar = parsed
    return f"{base}__{'bar_' if is_bar else ''}{ {0: 't', -1: 'prev', 1: 'next'}[offset] }"


def function_name(function) -> str:
    """``tanh(a)`` -> ``tanh__fn``: the generated code's name for a function's NumPy rule."""
    return f"{rule_of(function).name}__fn"


@dataclass
class Group:
    """The products ``P_k v`` of one vector ``v``, done as one stacked product."""

    index: int
    vector: sp.Symbol
    atoms: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # size names

    @property
    def matrices(self):
        return [m.args[0].name for m in self.atoms]


class BlockCode:
    """Generated forward and backward functions of one block.

    Parameters
    ----------
    name : str
        Used in the file name of the generated code.
    equations : list of :class:`symrnn.engine.cell.Equation`
    input_symbol : Symbol
        The block's input ``x[t]`` (for a readout: the cell's ``h[t]``).
    states : dict
        State name -> size name.
    params : dict
        Parameter name -> :class:`symrnn.engine.cell.ParamSpec`.
    sizes : dict
        Vector symbol -> size name.
    external : iterable of str
        Quantities whose adjoint also receives an array from outside
        (the readout's ``o``, or the cell's ``h`` under an upstream loss).
    """

    def __init__(self, name, equations, input_symbol, states, params, sizes, external=()):
        self.name = name
        self.equations = list(equations)
        self.input_symbol = input_symbol
        self.states = dict(states)
        self.params = dict(params)
        self.sizes = dict(sizes)
        self.external = list(external)
        self.forward_source, self.backward_source = self._sources()
        self.forward = self._compile(self.forward_source, "forward")
        self.backward = self._compile(self.backward_source, "backward")
        from .fused import fuse  # the backend in force (symrnn.set_backend); Numba is optional
        self.fused = fuse(self)
        self.backend = "numpy" if self.fused is None else "numba"
        if self.fused is not None:
            self.forward, self.backward = self.fused.forward, self.fused.backward

    @functools.cached_property
    def terms(self):
        return local_terms(self.equations)

    @functools.cached_property
    def sweep(self):
        """The block's assembled reverse sweep (:func:`symrnn.engine.bptt.assemble`)."""
        return assemble(self.equations, self.states, self.input_symbol, self.params, self.external, self.terms)

    @functools.cached_property
    def groups(self):
        return self._groups()

    @functools.cached_property
    def let_hoisted(self):  # groups of products of lets that read only the input (symrnn.engine.hoist)
        return hoisted_groups(self)

    @functools.cached_property
    def parameter_lets(self):  # lets of vector parameters only, computed once (symrnn.engine.transient)
        return parameter_lets(self)

    @functools.cached_property
    def transient(self):  # groups of spreads and folds made per step, never stored (symrnn.engine.transient)
        return transient_groups(self)

    @functools.cached_property
    def contracted_lets(self):  # lets read only through a fold, never made (symrnn.engine.transient)
        return contracted_lets(self, self._writer.needed()[0])

    @functools.cached_property
    def _writer(self):  # the NumPy backward's writer: what its loop reads, then its source (once)
        from .backward_code import BackwardWriter  # the module that reads this one's printer
        return BackwardWriter(self, lean=True)

    @functools.cached_property
    def lets(self):
        return [parse(e.target)[0] for e in self.equations if e.kind == "let"]

    def _sources(self):
        """The forward's and the backward's source, from the disk cache (:mod:`symrnn.cache`) when
        another process generated them for the same block."""
        key = self._cache_key()
        if key is None:
            return self._forward_source(), self._backward_source()
        return tuple(cache.get_or_build("block", key, lambda: [self._forward_source(), self._backward_source()]))

    def _cache_key(self):
        """The block in full, as text; None when a function of the user's appears (its rules are
        the user's code, which the key cannot hold)."""
        params = {name: spec.shape + spec.fixed for name, spec in self.params.items()}  # a spread's repeat, block
        if not own_functions_only([e.rhs for e in self.equations]):
            return None
        return sp.srepr(
            [[(e.target, e.rhs, e.kind) for e in self.equations], self.input_symbol, sorted(self.states.items()),
             sorted(params.items()), sorted((str(k), v) for k, v in self.sizes.items()), self.external])

    # -- structure ----------------------------------------------------------
    def _groups(self):
        groups: dict = {}
        for eq in self.equations:
            for m in linear_maps(eq.rhs):
                v = m.args[1]
                if v not in groups:
                    groups[v] = Group(len(groups), v)
                if m not in groups[v].atoms:
                    groups[v].atoms.append(m)
                    groups[v].rows.append(self.params[m.args[0].name].shape[0])
        return groups

    def _hoisted(self, group):
        return group.vector == self.input_symbol or group.index in self.let_hoisted

    def _slices(self, group):
        """``(start, stop)`` code of each matrix's rows inside the stacked product."""
        out, start = [], sp.Integer(0)
        for rows in group.rows:
            stop = start + sp.Symbol(rows)
            out.append((str(start), str(stop)))
            start = stop
        return out

    def _stack(self, group, transpose):
        mats = [code_name(Param(m)) for m in group.matrices]
        if len(mats) == 1:
            return f"{mats[0]}.T" if transpose else mats[0]
        joined = f"np.concatenate([{', '.join(mats)}], axis=0)"
        return f"np.ascontiguousarray({joined}.T)" if transpose else joined

    def _stacked_values(self, v):
        """Code for the values of vector ``v`` at all steps, shape (T, N, size)."""
        base, offset, _ = parse(v)
        if v == self.input_symbol:
            return "X"
        if base in self.states:
            return f"{code_name(base, 'S')}[:-1]" if offset == -1 else f"{code_name(base, 'S')}[1:]"
        return code_name(base, "C")

    def _atom_names(self):
        names = {}
        for g in self.groups.values():
            for k, m in enumerate(g.atoms):
                names[m] = f"m{g.index}_{k}" if len(g.atoms) > 1 else f"m{g.index}"
        return names

    # -- forward ------------------------------------------------------------
    def _forward_source(self, lean=True):
        """The forward's source; ``lean``: the NumPy code's (:mod:`symrnn.engine.transient`), else every
        let and product stored at every step (the fused writer's layout)."""
        atom_names = self._atom_names()
        once, transient = (self.parameter_lets, self.transient) if lean else (set(), set())
        contracted = self.contracted_lets if lean else {}
        printer = StepPrinter(atom_names)
        lines = ["def forward(params, X, S0, sizes, empty=fresh):",
                 "    T, N = X.shape[0], X.shape[1]",
                 "    dtype = X.dtype"]
        lines += self._size_lines()
        lines += [f"    {code_name(Param(p))} = params[{p!r}]" for p in self.params]
        for g in self.groups.values():
            lines.append(f"    G{g.index} = {self._stack(g, transpose=True)}")
            if g.vector == self.input_symbol:
                lines.append(f"    P{g.index} = (X.reshape(T * N, -1) @ G{g.index}).reshape(T, N, -1)")
        for s, size in self.states.items():
            lines.append(f"    {code_name(s, 'S')} = empty({'S_' + s!r}, (T + 1, N, {size}), dtype)")
            lines.append(f"    {code_name(s, 'S')}[0] = S0[{s!r}]")
        for e in self.equations:
            if e.kind == "let" and e.target not in once and e.target not in contracted:
                b = parse(e.target)[0]
                lines.append(f"    {code_name(b, 'C')} = empty({'C_' + b!r}, (T, N, {self.sizes[e.target]}), dtype)")
        stored = [g for g in self.groups.values() if not self._hoisted(g) and g.index not in transient]
        for g in stored:
            lines.append(f"    P{g.index} = empty('P{g.index}', (T, N, {self._total_rows(g)}), dtype)")
        lines += (once_lines(self, printer) if lean else []) + step_buffers(self, lean)
        lines += forward_lines(self) + ["    for t in range(T):"]
        body = []
        if any(t.matrix is None for t in self.terms.get(self.input_symbol, [])):  # x[t] read elementwise
            body.append(f"{code_name(self.input_symbol)} = X[t]")
        for s in self.states:
            body.append(f"{code_name(tsym(s, -1))} = {code_name(s, 'S')}[t]")
        for e, first_read in self.first_products(skip=contracted):
            for g in first_read:
                if self._hoisted(g):
                    body.append(f"p{g.index} = P{g.index}[t]")
                elif g.vector in contracted:  # F (X * (E' w)) as one batched product: y is never made
                    _g, X, w, specs = contracted[g.vector]
                    body.append(f"p{g.index} = {contraction_code(*specs, printer.doprint(X), printer._print(w))}")
                elif g.index in transient:
                    body += transient_product(self, g, printer._print(g.vector))
                elif self._fixed_group(g):  # a matrix cell's spreads and folds: copies and sums, no product
                    body.append(f"p{g.index} = P{g.index}[t]")
                    body += self._fixed_lines(g, printer._print(g.vector), f"p{g.index}", transpose=False)
                else:
                    body.append(f"p{g.index} = np.matmul({printer._print(g.vector)}, G{g.index}, out=P{g.index}[t])")
                body += self._unpack(g, atom_names)
            base = parse(e.target)[0]
            if e.target in contracted:
                continue
            if e.target in once:
                body.append(f"{code_name(e.target)} = {code_name(base, 'once')}")
                continue
            body.append(f"{code_name(e.target)} = " + (f"{code_name(base, 'S')}[t + 1]" if e.kind == "state"
                                                       else f"{code_name(base, 'C')}[t]"))
            body += printer.into(code_name(e.target), e.rhs)
        lines += ["        " + b for b in body] + [self._return_line(transient, contracted)]
        return "\n".join(lines) + "\n"

    def _return_line(self, transient, contracted):
        """The forward's last line: its cache (a :class:`ForwardCache` when some let is not stored)."""
        cache = [f"{'S_' + s!r}: {code_name(s, 'S')}" for s in self.states]
        cache += [f"{'C_' + b!r}: {code_name(b, 'C')}" for b in self.lets if tsym(b) not in contracted]
        cache += [f"'P{g.index}': P{g.index}" for g in self.groups.values() if g.index not in transient]
        cache = "{" + ", ".join(cache) + "}"
        return f"    return {f'cache__fn({cache}, params, X, sizes)' if contracted else cache}"

    def first_products(self, skip=()):
        """``[(equation, [product groups it reads first]), ...]``: where the forward computes each ``G v``
        (the equations of ``skip`` are not computed and read none)."""
        first = {}
        for e, m in ((e, m) for e in self.equations if e.target not in skip for m in linear_maps(e.rhs)):
            first.setdefault(self.groups[m.args[1]].index, (e, self.groups[m.args[1]]))
        return [(e, [g for e_first, g in first.values() if e_first is e]) for e in self.equations]

    def _fixed_group(self, g):  # every matrix of group g a spread or fold (symrnn.engine.structure)
        return all(self.params[m].fixed for m in g.matrices)

    def _fixed_lines(self, g, source, target, transpose, bind=False):  # symrnn.engine.structure.fixed_code
        slices = self._slices(g) if len(g.atoms) > 1 else [(None, None)]
        return fixed_code([self.params[m].fixed for m in g.matrices], slices, source, target, transpose, bind)

    def _total_rows(self, g):
        return str(sp.Add(*[sp.Symbol(r) for r in g.rows]))

    def _size_lines(self):
        used = set(self.sizes.values()) | {s for p in self.params.values() for s in p.shape}
        used = sorted(used | {s for p in self.params.values() for s in p.fixed[1:3] if isinstance(s, str)})
        return [f"    {s} = sizes['{s}']" for s in used]

    def _unpack(self, g, atom_names, source=None):
        source = source or f"p{g.index}"
        if len(g.atoms) == 1:
            return [f"{atom_names[g.atoms[0]]} = {source}"]
        return [f"{atom_names[m]} = {source}[:, {a}:{b}]"
                for m, (a, b) in zip(g.atoms, self._slices(g))]

    # -- backward -----------------------------------------------------------
    def _backward_source(self):
        self.contracted_lets  # read by the writer's header: worked out before the writer is taken
        writer = self._writer
        del self._writer  # a writer writes once; another source gets a new one
        return writer.source()

    def _term(self, v, atom):
        for t in self.terms[v]:
            if t.matrix is not None and t.vector is None and t.matrix == atom.args[0] and any(
                    m == atom for m in linear_maps(self._rhs(t.consumer))):
                return t
        raise AssertionError(f"no term for {atom}")

    def _rhs(self, target):
        return next(e.rhs for e in self.equations if e.target == target)

    # -- compile ------------------------------------------------------------
    def with_functions(self, implementations: dict) -> "BlockCode":
        """A copy of this block whose generated code calls ``implementations[name]`` in place of the NumPy rule of
        the function ``name`` (same source and signature; others keep their rules): the verifier's error model
        perturbs every function value by a rounding error with it (:mod:`symrnn.verify.judge`)."""
        other = copy.copy(self)
        other.forward = self._compile(self.forward_source, "forward", implementations)
        other.backward = self._compile(self.backward_source, "backward", implementations)
        return other

    def _compile(self, source, what, implementations=None):
        # the source holds no text of the user's but identifiers (checked by Cell) and
        # repr()-quoted keys; the cell's name goes only into the file name, sanitized
        filename = f"<symrnn-bptt-{re.sub(r'[^A-Za-z0-9_.+-]', '_', self.name)}-{what}>"
        namespace = {"np": np, "fresh": fresh, "spread__fn": spread_values, "fold__fn": fold_values,
                     "cache__fn": functools.partial(ForwardCache, block=self),
                     **{f"{n}__fn": rule.numpy for n, rule in RULES.items()}}
        namespace.update({f"{n}__fn": f for n, f in (implementations or {}).items()})
        exec(compile(source, filename, "exec"), namespace)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        function = namespace[what]
        kind = "Forward pass over all steps (returns the cache)" if what == "forward" else \
            "Backward pass: (parameter gradients, dX, dS0)"
        function.__doc__ = f"{kind} of the block {self.name!r}.\n\nGenerated source:\n\n{source}"
        return function

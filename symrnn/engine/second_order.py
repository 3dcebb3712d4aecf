"""Exact Hessian-vector and Gauss-Newton-vector products, forward over reverse, derived.

For a direction ``v`` in parameter space, ``H v = d/de grad L(theta + e v)`` at ``e = 0``.  The
forward pass gets its tangent ``dot y`` (:mod:`symrnn.engine.tangent`), and every adjoint equation
of the reverse sweep (:func:`symrnn.engine.bptt.assemble`) gets its directional derivative, written
here ``tilde u`` (the tangent of ``bar u``).  For a term ``coef * bar y`` sent to ``bar u``::

    tilde u  +=  dot(coef) * bar y + coef * tilde y                 (u used elementwise)
    tilde u  +=  dot P^T (coef bar y) + P^T (dot(coef) bar y + coef tilde y)   (u inside P u)
    (H v)_P  +=  (dot(coef) bar y + coef tilde y) v^T + (coef bar y) dot v^T  (P a matrix)

where ``dot(coef) = sum_w d coef / d w * dot w`` is differentiated by SymPy over the forward
quantities ``w`` it reads (products ``P w`` included: ``dot(P w) = dot P w + P dot w``).  The
loss contributes ``tilde o = d^2 L / do^2 dot o`` (each loss's ``hessian_vector``).

The generalized Gauss-Newton product ``G v = J^T H_L J v`` (``J = do/dtheta``, Martens and
Sutskever 2011) is the same sweep with every first-order adjoint ``bar y`` set to zero: what is
left is the reverse pass of ``H_L J v``.
"""
from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..validation import as_float_array, check_param_names, check_shape
from .bptt import bar
from .codegen import EngineSymbol, code_name
from .functions import derivative
from .symbols import MatVec, Param, parse, tsym
from .tangent import (DirectionSource, StepsSource, coefficient_printer, compile_source, dot_name, step_reader,
                      step_values, tangent_code, unidirectional_layers)


def dot_of(coef, mv_names) -> sp.Expr:
    """``dot(coef)``: the directional derivative of a coefficient along the tangent of every forward
    quantity it reads (``dot_name`` symbols; a product ``P v`` named ``mv<k>`` has the tangent
    ``mv<k>_dot``)."""
    atoms = sorted(coef.atoms(MatVec), key=sp.default_sort_key)
    dummies = {m: sp.Dummy() for m in atoms}
    flat = coef.xreplace(dummies)
    restore = {d: m for m, d in dummies.items()}
    out = sp.Integer(0)
    for s in sorted(flat.free_symbols, key=sp.default_sort_key):
        d = derivative(flat, s)
        if d == 0:
            continue
        tangent = EngineSymbol(f"{mv_names[restore[s]]}_dot") if s in restore else EngineSymbol(dot_name(s))
        out += d.xreplace(restore) * tangent
    return out


class AdjointTangentCode:
    """The generated reverse step of a block and its directional derivative, in two passes.

    ``first(params, V, EXT, carry, BAR, THR, Q, STACK, N, sizes, dtype)`` is the reverse step of the
    gradient: forward values ``V`` of one step by code name (``(N, size)``; the products ``P v`` that
    the coefficients read, ``mv<k>``, made beforehand for every step by :meth:`atoms`), the adjoints
    fed in from outside (``EXT[base]``) and carried from the next step (``carry[state]``).  It writes
    in place (``(N, size)`` slices of one step) every adjoint ``BAR[i]``, the operand ``THR[j]`` of
    every group of products through the parameters (``q``, or several side by side, multiplied by
    ``STACK[j]``, :meth:`stacked`), and ``Q[k]``, ``coef * bar y`` of the k-th parameter term
    (:attr:`param_terms`); returns ``(carry, xbar)``.

    ``tangent(params, dparams, V, dV, BAR, PRE, EXTd, carryd, QD, STACK, N, sizes, dtype)`` is its
    directional derivative, run after the whole first pass: it reads the adjoints ``BAR``, the tangents
    ``dV`` of the forward values, and ``PRE[j] = THR[j] dot STACK[j]`` (the products of the first pass's
    operands with the direction's matrices, made for every step at once), writes ``QD[k]`` and returns
    ``(carryd, xtilde)``.  :func:`parameter_products` makes the gradients and the product from
    ``Q``, ``QD`` after the loops, in one matrix product over all steps (as the generated backward does).
    """

    def __init__(self, block, with_input=True):
        self.block = block
        self.with_input = with_input
        self.sweep = block.sweep
        writer = _ReverseTangentWriter(block, block.sweep)
        self.first_source, self.tangent_source = writer.write(with_input)
        self.source = self.first_source + "\n" + self.tangent_source
        self.groups = writer.groups  # (matrices, operand size names): STACK[j] stacks the matrices
        self.bars = writer.bars  # the size name of each adjoint (BAR[i])
        self.param_terms = writer.param_terms  # (parameter, vector or None, buffer)
        self.buffers = writer.buffers  # the size name of each buffer (one per distinct q)
        self.atom_terms = writer.atom_terms  # (name, matrix, vector): mv<k> = v P^T
        self.first = compile_source(self.first_source, block.name, "adjoint_first")
        self.tangent = compile_source(self.tangent_source, block.name, "adjoint_tangent")

    def stacked(self, matrices):
        """``STACK``: for each group of products, its matrices (of ``matrices``: the parameters, or the
        direction) stacked along the rows."""
        return [np.concatenate([matrices[m] for m in mats], axis=0) if len(mats) > 1 else matrices[mats[0]]
                for mats, _ in self.groups]

    def atoms(self, params, direction, values, tangents):
        """The products ``mv<k> = v P^T`` the coefficients read, and their tangents ``mv<k>_dot = v dot P^T
        + dot v P^T``, at every step at once: ``(values, tangents)`` by name, ``(T, N, size)``;
        ``values(symbol)``, ``tangents(symbol)`` give a forward quantity and its tangent at every step
        (None: zero)."""
        out, dout = {}, {}
        for name, P, v in self.atom_terms:
            vv = values(v)
            out[name] = vv @ params[P].T
            dout[name + "_dot"] = vv @ direction[P].T
            dv = tangents(v)
            if dv is not None:
                dout[name + "_dot"] = dout[name + "_dot"] + dv @ params[P].T
        return out, dout


class _ReverseTangentWriter:
    """Writes the two passes of :class:`AdjointTangentCode`: every adjoint of the reverse sweep (the first)
    and its tangent (the second), term by term, the common subexpressions of the coefficients (and, in
    the second, of their tangents) computed once."""

    def __init__(self, block, sweep):
        self.b, self.sw = block, sweep
        self.every = [t for a in sweep.adjoints for t in a.sends] + [t for ts in sweep.carries.values() for t in ts]
        self.every += list(sweep.inputs) + [t for ts in sweep.params.values() for t in ts]
        self.printer, self.names, _ = coefficient_printer([t.coef for t in self.every])
        self.atom_terms = [(name, m.args[0].name, m.args[1]) for m, name in self.names.items()]
        self.memo, self.counter = {}, itertools.count()
        self.groups, self.bars, self.param_terms, self.buffers = [], [], [], []

    def write(self, with_input):
        """``(first source, tangent source)``."""
        first, second = self._headers()
        for one, two in (self._coefficients(), self._adjoints(), self._carries(),
                         self._input() if with_input else (["    xbar = None"], ["    xtil = None"]),
                         self._parameter_buffers()):
            first += one
            second += two
        first.append("    return {" + ", ".join(f"{s!r}: k_{i}" for i, s in enumerate(self.sw.carries)) + "}, xbar")
        second.append("    return {" + ", ".join(f"{s!r}: kd_{i}" for i, s in enumerate(self.sw.carries))
                      + "}, xtil")
        return "\n".join(first) + "\n", "\n".join(second) + "\n"

    def _headers(self):
        """The signatures and the unpacking of the parameters, the direction and the step's values."""
        b = self.b
        first = ["def adjoint_first(params, V, EXT, carry, BAR, THR, Q, STACK, N, sizes, dtype):"]
        second = ["def adjoint_tangent(params, dparams, V, dV, BAR, PRE, EXTd, carryd, QD, STACK, N, sizes, dtype):"]
        sizes = [f"    {s} = sizes[{s!r}]" for s in sorted(set(b.sizes.values()))]
        first, second = first + sizes, second + sizes
        for p in b.params:
            first.append(f"    {code_name(Param(p))} = params[{p!r}]")
            second += [f"    {code_name(Param(p))} = params[{p!r}]", f"    {dot_name(Param(p))} = dparams[{p!r}]"]
        values = [b.input_symbol] + [tsym(s, -1) for s in b.states] + [e.target for e in b.equations]
        for v in values:
            first.append(f"    {code_name(v)} = V[{code_name(v)!r}]")
            second += [f"    {code_name(v)} = V[{code_name(v)!r}]", f"    {dot_name(v)} = dV[{code_name(v)!r}]"]
        for name in self.names.values():
            first.append(f"    {name} = V[{name!r}]")
            second += [f"    {name} = V[{name!r}]", f"    {name}_dot = dV[{name + '_dot'!r}]"]
        return first, second

    def _coefficients(self):
        """Every coefficient (first pass) and with its tangent (second pass, differentiated by SymPy),
        common subexpressions once; fills :attr:`printed` (coefficient -> its code in the first pass, its
        code and its tangent's in the second, whether the tangent is zero)."""
        coefs = list(dict.fromkeys(t.coef for t in self.every if t.coef != 1))
        dcoefs = [dot_of(c, self.names) for c in coefs]
        doprint = self.printer.doprint
        reps1, reduced1 = sp.cse(coefs, symbols=(EngineSymbol(f"w{i}") for i in itertools.count()))
        reps2, reduced2 = sp.cse(coefs + dcoefs, symbols=(EngineSymbol(f"w{i}") for i in itertools.count()))
        self.printed = {c: (doprint(r1), doprint(r2), doprint(rd), d == 0) for c, r1, r2, rd, d in
                        zip(coefs, reduced1, reduced2[:len(coefs)], reduced2[len(coefs):], dcoefs)}
        return ([f"    {doprint(w)} = {doprint(e)}" for w, e in reps1],
                [f"    {doprint(w)} = {doprint(e)}" for w, e in reps2])

    def q_of(self, term):
        """Lines computing ``q = coef bar y`` (first pass) and its tangent ``qd`` (second), once per
        consumer and coefficient; returns them and the names."""
        key = (term.consumer, term.coef)
        if key in self.memo:
            return [], [], *self.memo[key]
        ybar = code_name(bar(term.consumer))
        ytil = ybar + "_dot"
        if term.coef == 1:
            self.memo[key] = (ybar, ytil)
            return [], [], ybar, ytil
        k = next(self.counter)
        coef1, coef2, dcoef, constant = self.printed[term.coef]
        qd = f"({coef2}) * {ytil}" if constant else f"({dcoef}) * {ybar} + ({coef2}) * {ytil}"
        self.memo[key] = (f"q{k}", f"qd{k}")
        return [f"    q{k} = ({coef1}) * {ybar}"], [f"    qd{k} = {qd}"], f"q{k}", f"qd{k}"

    def received(self, terms):
        """Lines and the summed expressions of what ``terms`` send back, in each pass.  The products
        through parameters are one group (``THR[j] @ STACK[j]``, its operands side by side); the second
        pass adds ``PRE[j]`` (the operands times the direction's matrices) and its operands' tangents
        times the same matrices."""
        one, two, parts, dparts, through = [], [], [], [], []
        for term in terms:
            l1, l2, q, qd = self.q_of(term)
            one += l1
            two += l2
            if term.matrix is not None:
                through.append((q, qd, term.matrix.name, self.b.sizes[term.consumer]))
            else:
                parts.append(q)
                dparts.append(qd)
        if through:
            j = len(self.groups)
            self.groups.append(([P for _, _, P, _ in through], [size for _, _, _, size in through]))
            if len(through) == 1:
                one.append(f"    THR[{j}][...] = {through[0][0]}")
                qds = through[0][1]
            else:
                one.append(f"    np.concatenate([{', '.join(q for q, _, _, _ in through)}], axis=1, out=THR[{j}])")
                qds = f"np.concatenate([{', '.join(qd for _, qd, _, _ in through)}], axis=1)"
            parts.append(f"THR[{j}] @ STACK[{j}]")
            dparts += [f"PRE[{j}]", f"{qds} @ STACK[{j}]"]
        return one, two, parts, dparts

    def _assign(self, name, dname, terms, size, extra=(), dextra=()):
        """``name = sum of what terms send + extra`` (first pass) and its tangent ``dname`` (second)."""
        one, two, parts, dparts = self.received(terms)
        zero = f"np.zeros((N, {size}), dtype=dtype)"
        return (one + [f"    {name} = {' + '.join(parts + list(extra)) or zero}"],
                two + [f"    {dname} = {' + '.join(dparts + list(dextra)) or zero}"])

    def _adjoints(self):
        """Every adjoint: computed and stored (``BAR[i]``) in the first pass, read and differentiated in the
        second."""
        first, second = [], []
        for a in self.sw.adjoints:
            base = a.target.name.split("[")[0]
            extra = ([f"EXT[{base!r}]"] if a.external else []) + ([f"carry[{base!r}]"] if a.carried else [])
            dextra = ([f"EXTd[{base!r}]"] if a.external else []) + ([f"carryd[{base!r}]"] if a.carried else [])
            ybar = code_name(bar(a.target))
            one, two = self._assign(ybar, f"{ybar}_dot", a.sends, self.b.sizes[a.target], extra, dextra)
            i = len(self.bars)
            self.bars.append(self.b.sizes[a.target])
            first += one + [f"    BAR[{i}][...] = {ybar}"]
            second += [f"    {ybar} = BAR[{i}]"] + two
        return first, second

    def _carries(self):
        """What the previous step's states receive (``k_<i>``) and its tangent (``kd_<i>``)."""
        first, second = [], []
        for i, (s, terms) in enumerate(self.sw.carries.items()):
            one, two = self._assign(f"k_{i}", f"kd_{i}", terms, self.b.states[s])
            first += one
            second += two
        return first, second

    def _input(self):
        return self._assign("xbar", "xtil", self.sw.inputs, self.b.sizes[self.b.input_symbol])

    def _parameter_buffers(self):
        """``Q[k][...] = q`` (first pass), ``QD[k][...] = qd`` (second) for each distinct ``q`` of a
        parameter term; fills :attr:`param_terms` (parameter, vector or None, buffer) and
        :attr:`buffers` (their size names)."""
        first, second, stored = [], [], {}
        for p, terms in self.sw.params.items():
            for term in terms:
                one, two, q, qd = self.q_of(term)
                first += one
                second += two
                if q not in stored:
                    stored[q] = len(self.buffers)
                    self.buffers.append(self.b.sizes[term.consumer])
                    first.append(f"    Q[{stored[q]}][...] = {q}")
                    second.append(f"    QD[{stored[q]}][...] = {qd}")
                self.param_terms.append((p, term.vector, stored[q]))
        return first, second


_CODES = weakref.WeakKeyDictionary()


def adjoint_tangent_code(block, with_input=True) -> AdjointTangentCode:
    """The :class:`AdjointTangentCode` of a block, made once per block object (``with_input``: the
    function also returns what the input receives, else None)."""
    codes = _CODES.setdefault(block, {})
    if with_input not in codes:
        codes[with_input] = AdjointTangentCode(block, with_input)
    return codes[with_input]


def all_steps(block, X, cache, symbol):
    """The forward values of ``symbol`` at every step, ``(T, N, size)``, from a block's forward cache."""
    if symbol == block.input_symbol:
        return X
    base, offset, _ = parse(symbol)
    if base in block.states:
        return cache[f"S_{base}"][:-1] if offset == -1 else cache[f"S_{base}"][1:]
    return cache[f"C_{base}"]


def parameter_products(code, Q, QD, values, tangents, G, Gd):
    """Add the gradients (to ``G``) and the product (to ``Gd``) of every parameter term from the
    buffers ``Q``, ``QD`` (``(T, N, size)``) and the terms' vectors at every step (``values(symbol)``)
    and their tangents (``tangents(symbol)``, None when zero)."""
    for p, vector, k in code.param_terms:
        q2, qd2 = Q[k].reshape(-1, Q[k].shape[-1]), QD[k].reshape(-1, QD[k].shape[-1])
        if vector is None:
            G[p] += q2.sum(axis=0)
            Gd[p] += qd2.sum(axis=0)
            continue
        v = values(vector)
        v2 = v.reshape(-1, v.shape[-1])
        G[p] += q2.T @ v2
        Gd[p] += qd2.T @ v2
        dv = tangents(vector)
        if dv is not None:
            Gd[p] += q2.T @ dv.reshape(-1, dv.shape[-1])


def _buffers(names, T, N, sizes, dtype):
    return [np.empty((T, N, sizes[s]), dtype=dtype) for s in names]


@dataclass
class _Sweep:
    """What one reverse sweep with its tangent reads: the block's parameters ``p`` and direction ``dp``,
    the forward values and tangents of step ``t`` (``values(t)``, ``dots(t)``: dicts by code name) and
    of every step (``all_values(symbol)``, ``all_dots(symbol)``: ``(T, N, size)``, None when zero), the
    adjoint fed in from outside, by base name, and its tangent (``(T, N, size)`` each)."""

    p: dict
    dp: dict
    values: object
    dots: object
    all_values: object
    all_dots: object
    ext: dict
    extd: dict


def _reverse_sweep(code, sw, T, N, sizes, dtype):
    """The two passes of ``code`` (:class:`AdjointTangentCode`) over ``T`` steps from the last: the first
    (the gradient's reverse sweep) stores every adjoint; the products of its operands with the
    direction's matrices are then made for all steps at once; the second pass differentiates it.
    Returns ``(g, gd, x_bar, x_til)``: the gradients and the product by the block's parameter names and
    what the input receives at every step (None without)."""
    Q, QD = _buffers(code.buffers, T, N, sizes, dtype), _buffers(code.buffers, T, N, sizes, dtype)
    BAR = _buffers(code.bars, T, N, sizes, dtype)
    THR = [np.empty((T, N, sum(sizes[s] for s in widths)), dtype=dtype) for _, widths in code.groups]
    stack = code.stacked(sw.p)
    mv, dmv = code.atoms(sw.p, sw.dp, sw.all_values, sw.all_dots)
    x_bar = x_til = None
    carry = {s: np.zeros((N, sizes[n]), dtype=dtype) for s, n in code.block.states.items()}
    for t in range(T - 1, -1, -1):
        V = sw.values(t)
        V.update({k: a[t] for k, a in mv.items()})
        carry, xb = code.first(sw.p, V, {k: e[t] for k, e in sw.ext.items()}, carry, [a[t] for a in BAR],
                               [a[t] for a in THR], [a[t] for a in Q], stack, N, sizes, dtype)
        if xb is not None:
            x_bar = np.empty((T,) + xb.shape, dtype=dtype) if x_bar is None else x_bar
            x_bar[t] = xb
    PRE = [a @ m for a, m in zip(THR, code.stacked(sw.dp))]
    carryd = {s: np.zeros((N, sizes[n]), dtype=dtype) for s, n in code.block.states.items()}
    for t in range(T - 1, -1, -1):
        V, dV = sw.values(t), sw.dots(t)
        V.update({k: a[t] for k, a in mv.items()})
        dV.update({k: a[t] for k, a in dmv.items()})
        carryd, xt = code.tangent(sw.p, sw.dp, V, dV, [a[t] for a in BAR], [a[t] for a in PRE],
                                  {k: e[t] for k, e in sw.extd.items()}, carryd, [a[t] for a in QD], stack, N,
                                  sizes, dtype)
        if xt is not None:
            x_til = np.empty((T,) + xt.shape, dtype=dtype) if x_til is None else x_til
            x_til[t] = xt
    g, gd = {n: np.zeros_like(a) for n, a in sw.p.items()}, {n: np.zeros_like(a) for n, a in sw.p.items()}
    parameter_products(code, Q, QD, sw.all_values, sw.all_dots, g, gd)
    return g, gd, x_bar, x_til


def _checked_direction(model, vector, dtype):
    check_param_names(vector, model.param_shapes)
    out = {}
    for k, shape in model.param_shapes.items():
        out[k] = as_float_array(vector[k], f"vector[{k!r}]").astype(dtype, copy=False)
        check_shape(out[k], shape, f"vector[{k!r}]", "the direction has the parameters' shapes")
    return out


def _stateless(block, code, params, direction, X, dX, sizes):
    """A stateless block (the readout) at every step at once: ``(cache, values, tangents)`` with the
    steps and the batch flattened into one batch."""
    T, N = X.shape[:2]
    flat = X.reshape(1, T * N, -1)
    cache = block.forward(params, flat, {}, sizes)
    values = step_values(block, flat, cache, 0)
    tangents = code.function(params, values, {code_name(block.input_symbol): dX.reshape(1, T * N, -1)},
                             DirectionSource(direction), 1, T * N, sizes, X.dtype)
    dvalues = {k: v[0] for k, v in tangents.items()}
    dvalues[code_name(block.input_symbol)] = dX.reshape(T * N, -1)
    return cache, values, dvalues


@dataclass
class _LayerRun:
    """One layer's forward pass and its tangent: its parameters ``p`` and direction ``dp`` by the cell's
    names (``keys``: cell name -> model key), its input ``x`` and the input's tangent ``dx`` (None: the
    data), the forward ``cache``, the tangents ``dots`` of every quantity at every step ``(T, N, size)``
    and of the initial states."""

    keys: dict
    p: dict
    dp: dict
    sizes: dict
    residual: bool
    x: np.ndarray
    dx: np.ndarray | None
    cache: dict
    dots: dict
    d_initial: dict


def _tangent_forward(model, p, dp, x, dx, S, sizes):
    """The forward pass of one layer and its tangent along ``dp``: ``(cache, dots, d_initial)``.

    The tangent of step ``t`` reads the tangents of step ``t - 1``; the source terms ``coef (dot P v)``
    read forward values only, so their products ``v dot P^T`` are made for all steps at once first."""
    block, dtype = model.cell_code, x.dtype
    T, N = x.shape[:2]
    tcode = tangent_code(block)
    cache = block.forward(p, x, S, sizes)
    names = [code_name(e.target) for e in block.equations]
    prev_names = {s: code_name(tsym(s, -1)) for s in model.state_names}
    now_names = {s: code_name(tsym(s)) for s in model.state_names}
    x_name = code_name(block.input_symbol)
    dots = {n: np.empty((T, N, sizes[block.sizes[e.target]]), dtype=dtype) for n, e in zip(names, block.equations)}
    d_initial = {s: np.zeros((N, S[s].shape[-1]), dtype=dtype) for s in model.state_names}
    source = StepsSource(dp, tcode.matrix_sources(), lambda v: all_steps(block, x, cache, v))
    read = step_reader(block)
    d_prev = d_initial
    for t in range(T):
        dV = {prev_names[s]: d_prev[s][None] for s in model.state_names}
        dV[x_name] = None if dx is None else dx[t][None]
        source.t = t
        out = tcode.function(p, read(x, cache, t), dV, source, 1, N, sizes, dtype)
        for n in names:
            dots[n][t] = out[n][0]
        d_prev = {s: dots[now_names[s]][t] for s in model.state_names}
    return cache, dots, d_initial


def _forward_runs(model, layers, params, direction, X, S0):
    """Every layer's :class:`_LayerRun`, from the bottom up, and the top layer's output and its tangent."""
    runs, x, dx = [], X, None
    for keys, sizes, residual, row in layers:
        p = {n: params[k] for n, k in keys.items()}
        dp = {n: direction[k] for n, k in keys.items()}
        cache, dots, d_initial = _tangent_forward(model, p, dp, x, dx, S0 if row is None else S0[(row, "fwd")],
                                                  sizes)
        runs.append(_LayerRun(keys, p, dp, sizes, residual, x, dx, cache, dots, d_initial))
        out, d_out = cache[f"S_{model.out}"][1:], dots[code_name(tsym(model.out))]
        if residual:
            out, d_out = out + x, d_out + dx
        x, dx = out, d_out
    return runs, x, dx


def _loss_second_order(model, params, direction, Hs, dHs, Y, mask, gauss_newton, G, Gd):
    """The loss of the scored steps' outputs ``Hs`` (tangent ``dHs``) through the readout, if any:
    ``(loss, h_bar, h_tilde)``, the adjoint of ``Hs`` and its tangent; the readout's gradients and
    product are added to ``G`` and ``Gd``.  With ``gauss_newton`` every first-order adjoint is zero."""
    if model.readout is None:
        value, h_bar = model.loss_rule.value_and_grad(Hs, Y, model.reduction, mask)
        h_til = model.loss_rule.hessian_vector(Hs, Y, dHs, model.reduction, mask)
        return value, (np.zeros_like(h_bar) if gauss_newton else h_bar), h_til
    readout, dtype = model.readout_code, Hs.dtype
    rcache, rvalues, rdots = _stateless(readout, tangent_code(readout), params, direction, Hs, dHs, model.sizes)
    O = rcache[f"C_{model.logits}"].reshape(Hs.shape[:2] + (-1,))
    dO = rdots[code_name(tsym(model.logits))].reshape(O.shape)
    value, d_o = model.loss_rule.value_and_grad(O, Y, model.reduction, mask)
    t_o = model.loss_rule.hessian_vector(O, Y, dO, model.reduction, mask)
    if gauss_newton:
        d_o = np.zeros_like(d_o)
    M = Hs.shape[0] * Hs.shape[1]
    sw = _Sweep(params, direction, lambda t: dict(rvalues), lambda t: dict(rdots),
                lambda s: rvalues[code_name(s)][None], lambda s: rdots[code_name(s)][None],
                {model.logits: d_o.reshape(1, M, -1)}, {model.logits: t_o.reshape(1, M, -1)})
    g, gd, h_bar, h_til = _reverse_sweep(adjoint_tangent_code(readout), sw, 1, M, model.sizes, dtype)
    for k in g:
        G[k] += g[k]
        Gd[k] += gd[k]
    return value, h_bar.reshape(Hs.shape), h_til.reshape(Hs.shape)


def _reverse_layer(model, run, ext, extd):
    """The reverse sweep of one layer and its tangent, from the adjoint ``ext`` of its output at every step
    (tangent ``extd``): ``(g, gd, x_bar, x_til)``, the layer's gradients and product by the cell's names
    and what its input receives (None for the data)."""
    block, x = model.cell_code, run.x
    T, N = x.shape[:2]
    code = adjoint_tangent_code(block, with_input=run.dx is not None)  # the data's adjoint goes nowhere
    names = [code_name(e.target) for e in block.equations]
    prev_names = {s: code_name(tsym(s, -1)) for s in model.state_names}
    now_names = {s: code_name(tsym(s)) for s in model.state_names}
    x_name, read = code_name(block.input_symbol), step_reader(block)
    zero_x = np.zeros((N, x.shape[2]), dtype=x.dtype)

    def dots(t):
        dV = {n: run.dots[n][t] for n in names}
        dV[x_name] = zero_x if run.dx is None else run.dx[t]
        for s in model.state_names:
            dV[prev_names[s]] = run.dots[now_names[s]][t - 1] if t > 0 else run.d_initial[s]
        return dV

    def all_dots(symbol):
        if symbol == block.input_symbol:
            return run.dx
        base, offset, _ = parse(symbol)
        if offset == -1:
            return np.concatenate([run.d_initial[base][None], run.dots[now_names[base]][:-1]])
        return run.dots[code_name(symbol)]

    sw = _Sweep(run.p, run.dp, lambda t: read(x, run.cache, t), dots, lambda s: all_steps(block, x, run.cache, s),
                all_dots, {model.out: ext}, {model.out: extd})
    return _reverse_sweep(code, sw, T, N, run.sizes, x.dtype)


def hessian_vector_product(model, params, vector, inputs, targets, h0=None, mask=None, gauss_newton=False):
    """``(loss, grads, H v)``: the loss, its gradient and the exact Hessian-vector product.

    Parameters
    ----------
    model : Model or StackedModel
        A one-cell model (any cell, architecture, loss and reduction) or a stack of unidirectional
        layers.
    params : dict
        The parameters.
    vector : dict
        The direction ``v``, one array per parameter (shaped like it).
    inputs, targets, h0, mask
        As :meth:`symrnn.Model.loss_and_grads`.
    gauss_newton : bool
        Return the generalized Gauss-Newton product ``G v = J^T H_L J v`` in place of ``H v``
        (``J = do/dtheta`` the Jacobian of the readout's outputs; zero for the upstream loss,
        which is linear).

    Returns
    -------
    loss : float
    grads : dict
        The parameters' gradients (as :meth:`symrnn.Model.loss_and_grads`).
    product : dict
        ``H v`` (or ``G v``), one array per parameter.
    """
    layers = unidirectional_layers(model, "The Hessian-vector product")
    params, X, Y, S0, sched, mask = model._prepare(params, inputs, targets, h0, mask)
    direction = _checked_direction(model, vector, X.dtype)
    T, N = X.shape[:2]
    G = {k: np.zeros(s, dtype=X.dtype) for k, s in model.param_shapes.items()}
    Gd = {k: np.zeros(s, dtype=X.dtype) for k, s in model.param_shapes.items()}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        runs, top, dtop = _forward_runs(model, layers, params, direction, X, S0)
        steps = slice(sched.output_steps.start, sched.output_steps.stop)
        value, h_bar, h_til = _loss_second_order(model, params, direction, top[steps], dtop[steps], Y, mask,
                                                 gauss_newton, G, Gd)
        ext = np.zeros((T, N, h_bar.shape[-1]), dtype=X.dtype)
        extd = np.zeros_like(ext)
        ext[steps], extd[steps] = h_bar, h_til
        for run in reversed(runs):
            g, gd, x_bar, x_til = _reverse_layer(model, run, ext, extd)
            for n, k in run.keys.items():
                G[k] += g[n]
                Gd[k] += gd[n]
            if run.residual and x_bar is not None:
                x_bar, x_til = x_bar + ext, x_til + extd
            ext, extd = x_bar, x_til
    return float(value), {k: G[k] for k in model.param_shapes}, {k: Gd[k] for k in model.param_shapes}


def gauss_newton_vector_product(model, params, vector, inputs, targets, h0=None, mask=None):
    """``G v = J^T H_L J v``: :func:`hessian_vector_product` with ``gauss_newton=True``; returns the product."""
    return hessian_vector_product(model, params, vector, inputs, targets, h0, mask, gauss_newton=True)[2]

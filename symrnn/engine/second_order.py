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

import functools
import itertools
import weakref
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..errors import ParameterError
from ..validation import as_float_array, check_param_names, check_shape
from .bptt import bar
from .codegen import EngineSymbol, Workspace, code_name, fresh
from .functions import derivative
from .sequence_tangent import all_steps, tangent_sweep
from .symbols import MatVec, Param, parse, tsym
from .tangent import (
    coefficient_printer,
    compile_source,
    constants_of,
    dot_name,
    step_reader,
    unidirectional_layers,
)


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
    """The generated reverse step of a block with its directional derivative.

    ``function(params, dparams, V, dV, EXT, EXTd, carry, carryd, Q, QD, STACK, MV, MVD, N, sizes, dtype)``: forward
    values ``V`` and tangents ``dV`` of one step by code name (``(N, size)``), the adjoints fed in from
    outside (``EXT[base]``) and carried from the next step (``carry[state]``) with their tangents, and
    ``Q[k]``, ``QD[k]`` (``(N, size)`` arrays written in place): ``coef * bar y`` of the k-th
    parameter term (:attr:`param_terms`) and its tangent, from which :func:`parameter_products`
    makes the gradients and the product after the loop, in one matrix product over all steps (as the
    generated backward does); ``STACK`` is :meth:`stacked` (the matrices of a product group stacked
    once per call); ``MV[k]``, ``MVD[k]``: the forward product ``P v`` of the k-th of :attr:`atoms` (the
    products the coefficients read) and its tangent ``dot P v + P dot v``, made for all steps at once
    (:func:`atom_products`).  Returns ``(carry, carryd, xbar, xtilde)``: what the previous step's
    states and the input receive.
    """

    def __init__(self, block, with_input=True):
        self.block = block
        self.with_input = with_input
        self.sweep = block.sweep
        writer = _ReverseTangentWriter(block, block.sweep)
        self.source = writer.write(with_input)
        self.stacks = writer.stacks  # (matrices, those with a direction): STACK[k] stacks them along the rows
        self.param_terms = writer.param_terms  # (parameter, vector or None, buffer)
        self.buffers = writer.buffers  # the size name of each buffer (one per distinct q)
        self.atoms = list(writer.names)  # the products P v the coefficients read, as MV[k]
        self.function = compile_source(self.source, block.name, "adjoint_tangent")

    def stacked(self, params, direction):
        """``STACK``: for each group of products, the matrices stacked along the rows (the tangent's:
        the direction's matrices, but for the fixed spreads and folds, then the parameters')."""
        return [np.concatenate([direction[m] for m in moving] + [params[m] for m in mats], axis=0)
                for mats, moving in self.stacks]


class _ReverseTangentWriter:
    """Writes the source of :class:`AdjointTangentCode`: every adjoint of the reverse sweep and its tangent,
    term by term, the common subexpressions of the coefficients and their tangents computed once."""

    def __init__(self, block, sweep):
        self.b, self.sw = block, sweep
        self.constants = constants_of(block)  # a matrix cell's fixed spreads and folds: no tangent
        self.every = [t for a in sweep.adjoints for t in a.sends] + [t for ts in sweep.carries.values() for t in ts]
        self.every += list(sweep.inputs) + [t for ts in sweep.params.values() for t in ts]
        self.printer, self.names, self.mv_lines = coefficient_printer([t.coef for t in self.every])
        self.memo, self.counter = {}, itertools.count()
        self.stacks, self.param_terms, self.buffers = [], [], []

    def write(self, with_input) -> str:
        lines = self._header() + self._coefficients()
        lines += self._adjoints() + self._carries()
        lines += self._input() if with_input else ["    xbar = xtil = None"]
        lines += self._parameter_buffers()
        lines.append("    return {" + ", ".join(self.new) + "}, {" + ", ".join(self.newd) + "}, xbar, xtil")
        return "\n".join(lines) + "\n"

    def _header(self):
        """The signature and the unpacking of the parameters, the direction and the step's values."""
        b = self.b
        signature = "params, dparams, V, dV, EXT, EXTd, carry, carryd, Q, QD, STACK, MV, MVD, N, sizes, dtype"
        lines = [f"def adjoint_tangent({signature}):"]
        lines += [f"    {s} = sizes[{s!r}]" for s in sorted(set(b.sizes.values()))]
        for p in b.params:
            lines.append(f"    {code_name(Param(p))} = params[{p!r}]")
            if p not in self.constants:
                lines.append(f"    {dot_name(Param(p))} = dparams[{p!r}]")
        values = [b.input_symbol] + [tsym(s, -1) for s in b.states] + [e.target for e in b.equations]
        for v in values:
            lines += [f"    {code_name(v)} = V[{code_name(v)!r}]", f"    {dot_name(v)} = dV[{code_name(v)!r}]"]
        for k, name in enumerate(self.names.values()):
            lines += [f"    {name} = MV[{k}]", f"    {name}_dot = MVD[{k}]"]
        return lines

    def _coefficients(self):
        """Every coefficient and its tangent (differentiated by SymPy), common subexpressions once; fills
        :attr:`printed` (coefficient -> its code, its tangent's code, whether the tangent is zero)."""
        coefs = list(dict.fromkeys(t.coef for t in self.every if t.coef != 1))
        dcoefs = [dot_of(c, self.names) for c in coefs]
        reps, reduced = sp.cse(coefs + dcoefs, symbols=(EngineSymbol(f"w{i}") for i in itertools.count()))
        doprint = self.printer.doprint
        self.printed = {c: (doprint(r), doprint(rd), d == 0)
                        for c, r, rd, d in zip(coefs, reduced[:len(coefs)], reduced[len(coefs):], dcoefs)}
        return [f"    {doprint(w)} = {doprint(e)}" for w, e in reps]

    def q_of(self, term):
        """Lines computing ``q = coef bar y`` and its tangent ``qd`` (once per consumer and coefficient);
        returns them and their names."""
        key = (term.consumer, term.coef)
        if key in self.memo:
            return [], *self.memo[key]
        ybar = code_name(bar(term.consumer))
        ytil = ybar + "_dot"
        if term.coef == 1:
            self.memo[key] = (ybar, ytil)
            return [], ybar, ytil
        k = next(self.counter)
        coef, dcoef, constant = self.printed[term.coef]
        qd = f"({coef}) * {ytil}" if constant else f"({dcoef}) * {ybar} + ({coef}) * {ytil}"
        self.memo[key] = (f"q{k}", f"qd{k}")
        return [f"    q{k} = ({coef}) * {ybar}", f"    qd{k} = {qd}"], f"q{k}", f"qd{k}"

    def received(self, terms):
        """Lines and the summed expressions of what ``terms`` send back (and its tangent); the
        products of several matrices are done as one product with the stacked matrices."""
        out, parts, dparts, through = [], [], [], []
        for term in terms:
            more, q, qd = self.q_of(term)
            out += more
            if term.matrix is not None:
                through.append((q, qd, term.matrix.name))
            else:
                parts.append(q)
                dparts.append(qd)
        if len(through) == 1 and through[0][2] in self.constants:  # dot P = 0: qd @ P
            q, qd, P = through[0]
            parts.append(f"{q} @ {code_name(Param(P))}")
            dparts.append(f"{qd} @ {code_name(Param(P))}")
        elif len(through) == 1:  # the tangent's two products as one, [q, qd] @ [dot P; P]
            q, qd, P = through[0]
            k = len(self.stacks)
            self.stacks.append(([P], [P]))
            parts.append(f"{q} @ {code_name(Param(P))}")
            dparts.append(f"np.concatenate([{q}, {qd}], axis=1) @ STACK[{k}]")
        elif through:
            k = len(self.stacks)
            mats = [P for _, _, P in through]
            moving = [P for P in mats if P not in self.constants]
            self.stacks += [(mats, []), (mats, moving)]
            qs = ", ".join(q for q, _, _ in through)
            qds = ", ".join([q for q, _, P in through if P in moving] + [qd for _, qd, _ in through])
            parts.append(f"np.concatenate([{qs}], axis=1) @ STACK[{k}]")
            dparts.append(f"np.concatenate([{qds}], axis=1) @ STACK[{k + 1}]")
        return out, parts, dparts

    def _assign(self, name, dname, terms, size, extra=(), dextra=()):
        """``name = sum of what terms send + extra`` and its tangent ``dname`` (zeros when nothing)."""
        more, parts, dparts = self.received(terms)
        zero = f"np.zeros((N, {size}), dtype=dtype)"
        return more + [f"    {name} = {' + '.join(parts + list(extra)) or zero}",
                       f"    {dname} = {' + '.join(dparts + list(dextra)) or zero}"]

    def _adjoints(self):
        lines = []
        for a in self.sw.adjoints:
            base = a.target.name.split("[")[0]
            fed = [name for name, on in (("EXT", a.external), ("carry", a.carried)) if on]  # from outside, from t+1
            extra, dextra = [f"{n}[{base!r}]" for n in fed], [f"{n}d[{base!r}]" for n in fed]
            ybar = code_name(bar(a.target))
            lines += self._assign(ybar, f"{ybar}_dot", a.sends, self.b.sizes[a.target], extra, dextra)
        return lines

    def _carries(self):
        """What the previous step's states receive (and its tangent): ``k_<i>``, ``kd_<i>``."""
        lines, self.new, self.newd = [], [], []
        for i, (s, terms) in enumerate(self.sw.carries.items()):
            lines += self._assign(f"k_{i}", f"kd_{i}", terms, self.b.states[s])
            self.new.append(f"{s!r}: k_{i}")
            self.newd.append(f"{s!r}: kd_{i}")
        return lines

    def _input(self):
        return self._assign("xbar", "xtil", self.sw.inputs, self.b.sizes[self.b.input_symbol])

    def _parameter_buffers(self):
        """``Q[k][...] = q``, ``QD[k][...] = qd`` for each distinct ``q`` of a parameter term; fills
        :attr:`param_terms` (parameter, vector or None, buffer) and :attr:`buffers` (their size names)."""
        lines, stored = [], {}
        for p, terms in self.sw.params.items():
            if p in self.constants:  # a fixed spread or fold: not trained
                continue
            for term in terms:
                more, q, qd = self.q_of(term)
                lines += more
                if q not in stored:
                    stored[q] = len(self.buffers)
                    self.buffers.append(self.b.sizes[term.consumer])
                    lines += [f"    Q[{stored[q]}][...] = {q}", f"    QD[{stored[q]}][...] = {qd}"]
                self.param_terms.append((p, term.vector, stored[q]))
        return lines


_CODES = weakref.WeakKeyDictionary()


def adjoint_tangent_code(block, with_input=True) -> AdjointTangentCode:
    """The :class:`AdjointTangentCode` of a block, made once per block object (``with_input``: the
    function also returns what the input receives, else None)."""
    codes = _CODES.setdefault(block, {})
    if with_input not in codes:
        codes[with_input] = AdjointTangentCode(block, with_input)
    return codes[with_input]


def atom_products(atoms, p, dp, values, tangents, known, empty=fresh):
    """``(MV, MVD)``: for each product ``P v`` of ``atoms``, its forward value and its tangent
    ``dot P v + P dot v`` at every step (``values(v)``, ``tangents(v)``: all steps, None for a zero
    tangent), each made in one matrix product over all steps, or taken from ``known`` (the tangent
    sweep's ``MV`` by atom and ``SRC`` by ``(matrix, vector)``)."""
    MV, MVD = [], []
    for m in atoms:
        P, v = m.args[0].name, m.args[1]
        vals, key = values(v), f"{P}_{code_name(v)}"
        shape = vals.shape[:-1] + p[P].shape[:1]
        mv = known.get("MV", {}).get(m)
        if mv is None:
            mv = np.matmul(vals, p[P].T, out=empty(f"~rmv_{key}", shape, vals.dtype))
        src, dv = known.get("SRC", {}).get((P, v)), tangents(v)
        if P not in dp:  # a fixed spread or fold: dot P = 0, the tangent is P dot v
            mvd = np.zeros(shape, vals.dtype) if dv is None else np.matmul(dv, p[P].T)
        else:
            mvd = np.matmul(vals, dp[P].T, out=empty(f"~rmvd_{key}", shape, vals.dtype)) if src is None else src
        if dv is not None and P in dp:
            mvd = np.add(mvd, np.matmul(dv, p[P].T, out=empty(f"~rmvt_{key}", shape, vals.dtype)),
                         out=empty(f"~rmvd_{key}", shape, vals.dtype))
        MV.append(mv)
        MVD.append(mvd)
    return MV, MVD


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


def _buffers(code, T, N, sizes, dtype, empty=fresh):
    return ([empty(f"~Q{k}", (T, N, sizes[s]), dtype) for k, s in enumerate(code.buffers)],
            [empty(f"~QD{k}", (T, N, sizes[s]), dtype) for k, s in enumerate(code.buffers)])


def _spaces(model, problem):
    """``space(key)``: this thread's reusable arrays of the H v of ``model`` for one part (a layer, the
    readout), a :class:`~symrnn.engine.codegen.Workspace` kept from call to call (as the gradient keeps its
    own: a fresh multi-megabyte array costs a page fault per 4 KiB page on first write); a model without
    per-thread state gets fresh arrays.  Only the arrays of the last ``problem`` (the inputs' shape and
    dtype) are kept: a new one lets the old go.  Nothing allocated from a space is returned to the caller."""
    threads = getattr(model, "_threads", None)
    if threads is None:
        return lambda key: fresh
    if threads.__dict__.get("hvp_problem") != problem:
        threads.hvp_problem, threads.hvp_spaces = problem, defaultdict(Workspace)
    return threads.hvp_spaces.__getitem__


def _checked_direction(model, vector, dtype):
    fixed = [k for k in getattr(model.cell, "fixed_params", ()) if isinstance(vector, dict) and k in vector]
    if fixed:
        raise ParameterError(f"vector (the direction) has {fixed}: the fixed spreads and folds of "
                             f"{model.cell.name!r} are not trained and have no direction; leave them out.")
    check_param_names(vector, model.param_shapes, "vector (the direction)",
                      "one array per parameter, zeros where the direction does not move")
    out = {}
    for k, shape in model.param_shapes.items():
        out[k] = as_float_array(vector[k], f"vector[{k!r}]").astype(dtype, copy=False)
        check_shape(out[k], shape, f"vector[{k!r}]", "the direction has the parameters' shapes")
    return out


def _stateless(block, params, direction, X, dX, sizes, empty=fresh):
    """A stateless block (the readout) at every step at once, the steps and the batch flattened into one
    batch: ``(cache, values, tangents, known)``, ``known`` the tangent sweep's products."""
    T, N = X.shape[:2]
    flat, dflat = X.reshape(1, T * N, -1), dX.reshape(1, T * N, -1)
    cache, dots, _, products = tangent_sweep(block, params, direction, flat, dflat, {}, sizes, empty)
    values = step_reader(block)(flat, cache, 0)
    dvalues = {k: v[0] for k, v in dots.items()}
    dvalues[code_name(block.input_symbol)] = dflat[0]
    return cache, values, dvalues, {kind: {k: a[0] for k, a in made.items()} for kind, made in products.items()}


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
    products: dict


def _forward_runs(model, layers, params, direction, X, S0, space):
    """Every layer's :class:`_LayerRun`, from the bottom up, and the top layer's output and its tangent."""
    runs, x, dx = [], X, None
    for layer, (keys, sizes, residual, row) in enumerate(layers):
        p = {n: params[k] for n, k in keys.items()}
        dp = {n: direction[k] for n, k in keys.items() if k in direction}  # no fixed spread or fold
        cache, dots, d_initial, products = tangent_sweep(model.cell_code, p, dp, x, dx,
                                                         S0 if row is None else S0[(row, "fwd")], sizes, space(layer))
        runs.append(_LayerRun(keys, p, dp, sizes, residual, x, dx, cache, dots, d_initial, products))
        out, d_out = cache[f"S_{model.out}"][1:], dots[code_name(tsym(model.out))]
        if residual:
            out, d_out = out + x, d_out + dx
        x, dx = out, d_out
    return runs, x, dx


def _loss_second_order(model, params, direction, Hs, dHs, Y, mask, gauss_newton, G, Gd, empty=fresh):
    """The loss of the scored steps' outputs ``Hs`` (tangent ``dHs``) through the readout, if any:
    ``(loss, h_bar, h_tilde)``, the adjoint of ``Hs`` and its tangent; the readout's gradients and
    product are added to ``G`` and ``Gd``.  With ``gauss_newton`` every first-order adjoint is zero."""
    if model.readout is None:
        value, h_bar = model.loss_rule.value_and_grad(Hs, Y, model.reduction, mask)
        h_til = model.loss_rule.hessian_vector(Hs, Y, dHs, model.reduction, mask)
        return value, (np.zeros_like(h_bar) if gauss_newton else h_bar), h_til
    readout, dtype = model.readout_code, Hs.dtype
    rcache, rvalues, rdots, known = _stateless(readout, params, direction, Hs, dHs, model.sizes, empty)
    O = rcache[f"C_{model.logits}"].reshape(Hs.shape[:2] + (-1,))
    dO = rdots[code_name(tsym(model.logits))].reshape(O.shape)
    value, d_o = model.loss_rule.value_and_grad(O, Y, model.reduction, mask)
    t_o = model.loss_rule.hessian_vector(O, Y, dO, model.reduction, mask)
    if gauss_newton:
        d_o = np.zeros_like(d_o)
    M = Hs.shape[0] * Hs.shape[1]
    code = adjoint_tangent_code(readout)
    Q, QD = _buffers(code, 1, M, model.sizes, dtype, empty)
    MV, MVD = atom_products(code.atoms, params, direction, lambda s: rvalues[code_name(s)],
                            lambda s: rdots.get(code_name(s)), known, empty)
    _, _, h_bar, h_til = code.function(
        params, direction, rvalues, rdots, {model.logits: d_o.reshape(M, -1)}, {model.logits: t_o.reshape(M, -1)},
        {}, {}, [q[0] for q in Q], [q[0] for q in QD], code.stacked(params, direction), MV, MVD, M, model.sizes,
        dtype)
    parameter_products(code, Q, QD, lambda s: rvalues[code_name(s)][None], lambda s: rdots[code_name(s)][None], G, Gd)
    return value, h_bar.reshape(Hs.shape), h_til.reshape(Hs.shape)


def _reverse_layer(model, run, ext, extd, empty=fresh):
    """The reverse sweep of one layer and its tangent, from the adjoint ``ext`` of its output at every step
    (tangent ``extd``): ``(g, gd, x_bar, x_til)``, the layer's gradients and product by the cell's names
    and what its input receives (None for the data)."""
    block, x, dtype = model.cell_code, run.x, run.x.dtype
    T, N = x.shape[:2]
    code = adjoint_tangent_code(block, with_input=run.dx is not None)  # the data's adjoint goes nowhere
    names = [code_name(e.target) for e in block.equations]
    prev_names = {s: code_name(tsym(s, -1)) for s in model.state_names}
    now_names = {s: code_name(tsym(s)) for s in model.state_names}
    x_name, read = code_name(block.input_symbol), step_reader(block)
    carry = {s: np.zeros_like(run.d_initial[s]) for s in model.state_names}
    carryd = {s: np.zeros_like(run.d_initial[s]) for s in model.state_names}
    zero_x = np.zeros((N, x.shape[2]), dtype=dtype)
    x_bar, x_til = (empty("~xbar", x.shape, dtype), empty("~xtil", x.shape, dtype)) if run.dx is not None else (None, None)
    Q, QD = _buffers(code, T, N, run.sizes, dtype, empty)
    stack = code.stacked(run.p, run.dp)
    tangents = _tangents_of(block, run, empty)
    values = functools.partial(all_steps, block, x, run.cache)
    MV, MVD = atom_products(code.atoms, run.p, run.dp, values, tangents, run.products, empty)
    for t in range(T - 1, -1, -1):
        dV = {n: run.dots[n][t] for n in names}
        dV[x_name] = zero_x if run.dx is None else run.dx[t]
        for s in model.state_names:
            dV[prev_names[s]] = run.dots[now_names[s]][t - 1] if t > 0 else run.d_initial[s]
        carry, carryd, xb, xt = code.function(
            run.p, run.dp, read(x, run.cache, t), dV, {model.out: ext[t]}, {model.out: extd[t]}, carry, carryd,
            [q[t] for q in Q], [q[t] for q in QD], stack, [m[t] for m in MV], [m[t] for m in MVD], N, run.sizes,
            dtype)
        if xb is not None:
            x_bar[t], x_til[t] = xb, xt
    g, gd = {n: np.zeros_like(run.p[n]) for n in run.dp}, {n: np.zeros_like(run.p[n]) for n in run.dp}
    parameter_products(code, Q, QD, values, tangents, g, gd)
    return g, gd, x_bar, x_til


def _tangents_of(block, run, empty):
    """``tangents(symbol)``: the tangent of a quantity of one layer at every step (None for the data), the
    previous states' made once ``[dot s_0, dot s_1, ..., dot s_{T-1}]``."""
    made = {}

    def tangents(symbol):
        if symbol == block.input_symbol:
            return run.dx
        base, offset, _ = parse(symbol)
        if offset != -1:
            return run.dots[code_name(symbol)]
        if base not in made:
            now = run.dots[code_name(tsym(base))]
            made[base] = out = empty(f"~dprev_{base}", now.shape, now.dtype)
            out[0], out[1:] = run.d_initial[base], now[:-1]
        return made[base]
    return tangents


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
    space = _spaces(model, (X.shape, X.dtype))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        runs, top, dtop = _forward_runs(model, layers, params, direction, X, S0, space)
        steps = slice(sched.output_steps.start, sched.output_steps.stop)
        value, h_bar, h_til = _loss_second_order(model, params, direction, top[steps], dtop[steps], Y, mask,
                                                 gauss_newton, G, Gd, space("readout"))
        shape, ws = (T, N, h_bar.shape[-1]), space("loss")
        ext, extd = ws("~ext", shape, X.dtype), ws("~extd", shape, X.dtype)
        for unscored in (slice(0, steps.start), slice(steps.stop, T)):  # nothing arrives there
            ext[unscored], extd[unscored] = 0, 0
        ext[steps], extd[steps] = h_bar, h_til
        for layer in range(len(runs) - 1, -1, -1):
            run = runs[layer]
            g, gd, x_bar, x_til = _reverse_layer(model, run, ext, extd, space(layer))
            for n in g:  # not a fixed spread or fold: those have no gradient, no product
                G[run.keys[n]] += g[n]
                Gd[run.keys[n]] += gd[n]
            if run.residual and x_bar is not None:
                x_bar, x_til = x_bar + ext, x_til + extd
            ext, extd = x_bar, x_til
    return float(value), {k: G[k] for k in model.param_shapes}, {k: Gd[k] for k in model.param_shapes}


def gauss_newton_vector_product(model, params, vector, inputs, targets, h0=None, mask=None):
    """``G v = J^T H_L J v``: :func:`hessian_vector_product` with ``gauss_newton=True``; returns the product."""
    return hessian_vector_product(model, params, vector, inputs, targets, h0, mask, gauss_newton=True)[2]

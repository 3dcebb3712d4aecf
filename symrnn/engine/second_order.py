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

import numpy as np
import sympy as sp

from ..validation import as_float_array, check_param_names, check_shape
from .bptt import bar
from .codegen import EngineSymbol, code_name
from .functions import derivative
from .symbols import MatVec, Param, parse, tsym
from .tangent import DirectionSource, coefficient_printer, compile_source, dot_name, step_reader, step_values, tangent_code, unidirectional_layers


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

    ``function(params, dparams, V, dV, EXT, EXTd, carry, carryd, Q, QD, STACK, N, sizes, dtype)``: forward
    values ``V`` and tangents ``dV`` of one step by code name (``(N, size)``), the adjoints fed in from
    outside (``EXT[base]``) and carried from the next step (``carry[state]``) with their tangents, and
    ``Q[k]``, ``QD[k]`` (``(N, size)`` arrays written in place): ``coef * bar y`` of the k-th
    parameter term (:attr:`param_terms`) and its tangent, from which :func:`parameter_products`
    makes the gradients and the product after the loop, in one matrix product over all steps (as the
    generated backward does); ``STACK`` is :meth:`stacked` (the matrices of a product group stacked
    once per call).  Returns ``(carry, carryd, xbar, xtilde)``: what the previous step's
    states and the input receive.
    """

    def __init__(self, block, with_input=True):
        self.block = block
        self.with_input = with_input
        self.sweep = block.sweep
        self.source = self._source()
        self.function = compile_source(self.source, block.name, "adjoint_tangent")

    def _source(self):
        b, sw = self.block, self.sweep
        every = [t for a in sw.adjoints for t in a.sends] + [t for ts in sw.carries.values() for t in ts]
        every += list(sw.inputs) + [t for ts in sw.params.values() for t in ts]
        printer, names, mv_lines = coefficient_printer([t.coef for t in every])
        lines = ["def adjoint_tangent(params, dparams, V, dV, EXT, EXTd, carry, carryd, Q, QD, STACK, N, sizes, dtype):"]
        lines += [f"    {s} = sizes[{s!r}]" for s in sorted(set(b.sizes.values()))]
        for p in b.params:
            lines += [f"    {code_name(Param(p))} = params[{p!r}]", f"    {dot_name(Param(p))} = dparams[{p!r}]"]
        values = [b.input_symbol] + [tsym(s, -1) for s in b.states] + [e.target for e in b.equations]
        for v in values:
            lines += [f"    {code_name(v)} = V[{code_name(v)!r}]", f"    {dot_name(v)} = dV[{code_name(v)!r}]"]
        for m, name in names.items():
            P, v = m.args
            lines.append(f"    {name}_dot = {code_name(v)} @ {dot_name(P)}.T + {dot_name(v)} @ {code_name(P)}.T")
        lines += [f"    {line}" for line in mv_lines]
        # every coefficient and its tangent, their common subexpressions computed once
        coefs = list(dict.fromkeys(t.coef for t in every if t.coef != 1))
        dcoefs = [dot_of(c, names) for c in coefs]
        reps, reduced = sp.cse(coefs + dcoefs, symbols=(EngineSymbol(f"w{i}") for i in itertools.count()))
        lines += [f"    {printer.doprint(w)} = {printer.doprint(e)}" for w, e in reps]
        printed = {c: (printer.doprint(r), printer.doprint(rd), d == 0)
                   for c, r, rd, d in zip(coefs, reduced[:len(coefs)], reduced[len(coefs):], dcoefs)}
        counter = iter(range(10 ** 6))

        memo = {}

        def q_of(term):
            """Lines computing ``q = coef bar y`` and its tangent ``qd`` (once per consumer and
            coefficient); returns them and their names."""
            key = (term.consumer, term.coef)
            if key in memo:
                return [], *memo[key]
            more, q, qd = _q_of(term)
            memo[key] = (q, qd)
            return more, q, qd

        def _q_of(term):
            k = next(counter)
            ybar, ytil = code_name(bar(term.consumer)), code_name(bar(term.consumer)) + "_dot"
            if term.coef == 1:
                return [], ybar, ytil
            coef, dcoef, constant = printed[term.coef]
            qd = f"({coef}) * {ytil}" if constant else f"({dcoef}) * {ybar} + ({coef}) * {ytil}"
            return [f"    q{k} = ({coef}) * {ybar}", f"    qd{k} = {qd}"], f"q{k}", f"qd{k}"

        self.stacks = []  # (matrices, tangent first): STACK[k] stacks them along the rows, made once per call

        def received(terms):
            """Lines and the summed expressions of what ``terms`` send back (and its tangent); the
            products of several matrices are done as one product with the stacked matrices."""
            out, parts, dparts, through = [], [], [], []
            for term in terms:
                more, q, qd = q_of(term)
                out += more
                if term.matrix is not None:
                    through.append((q, qd, term.matrix.name))
                else:
                    parts.append(q)
                    dparts.append(qd)
            if len(through) == 1:
                q, qd, P = through[0]
                parts.append(f"{q} @ {code_name(Param(P))}")
                dparts += [f"{q} @ {dot_name(Param(P))}", f"{qd} @ {code_name(Param(P))}"]
            elif through:
                k = len(self.stacks)
                mats = [P for _, _, P in through]
                self.stacks += [(mats, False), (mats, True)]
                qs, qds = ", ".join(q for q, _, _ in through), ", ".join(qd for _, qd, _ in through)
                parts.append(f"np.concatenate([{qs}], axis=1) @ STACK[{k}]")
                dparts.append(f"np.concatenate([{qs}, {qds}], axis=1) @ STACK[{k + 1}]")
            return out, parts, dparts

        for a in sw.adjoints:
            more, parts, dparts = received(a.sends)
            base = a.target.name.split("[")[0]
            if a.external:
                parts.append(f"EXT[{base!r}]")
                dparts.append(f"EXTd[{base!r}]")
            if a.carried:
                parts.append(f"carry[{base!r}]")
                dparts.append(f"carryd[{base!r}]")
            size = b.sizes[a.target]
            zero = f"np.zeros((N, {size}), dtype=dtype)"
            ybar = code_name(bar(a.target))
            lines += more
            lines.append(f"    {ybar} = {' + '.join(parts) or zero}")
            lines.append(f"    {ybar}_dot = {' + '.join(dparts) or zero}")
        new, newd = [], []
        for s, terms in sw.carries.items():
            more, parts, dparts = received(terms)
            size = b.states[s]
            zero = f"np.zeros((N, {size}), dtype=dtype)"
            lines += more + [f"    k_{len(new)} = {' + '.join(parts) or zero}",
                             f"    kd_{len(new)} = {' + '.join(dparts) or zero}"]
            new.append(f"{s!r}: k_{len(new)}")
            newd.append(f"{s!r}: kd_{len(newd)}")
        if self.with_input:
            more, parts, dparts = received(sw.inputs)
            zero = f"np.zeros((N, {b.sizes[b.input_symbol]}), dtype=dtype)"
            lines += more + [f"    xbar = {' + '.join(parts) or zero}", f"    xtil = {' + '.join(dparts) or zero}"]
        else:
            lines.append("    xbar = xtil = None")
        self.param_terms = []  # (parameter, vector or None, buffer): Q[buffer], QD[buffer] hold q and its tangent
        self.buffers = []  # the size name of each buffer (one per distinct q)
        stored = {}
        for p, terms in sw.params.items():
            for term in terms:
                more, q, qd = q_of(term)
                lines += more
                if q not in stored:
                    stored[q] = len(self.buffers)
                    self.buffers.append(b.sizes[term.consumer])
                    lines += [f"    Q[{stored[q]}][...] = {q}", f"    QD[{stored[q]}][...] = {qd}"]
                self.param_terms.append((p, term.vector, stored[q]))
        lines.append("    return {" + ", ".join(new) + "}, {" + ", ".join(newd) + "}, xbar, xtil")
        return "\n".join(lines) + "\n"

    def stacked(self, params, direction):
        """``STACK``: for each group of products, the matrices stacked along the rows (the tangent's:
        the direction's matrices, then the parameters')."""
        out = []
        for mats, tangent in self.stacks:
            blocks = [direction[m] for m in mats] + [params[m] for m in mats] if tangent else [params[m] for m in mats]
            out.append(np.concatenate(blocks, axis=0))
        return out


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


def _buffers(code, T, N, sizes, dtype):
    return ([np.empty((T, N, sizes[s]), dtype=dtype) for s in code.buffers],
            [np.empty((T, N, sizes[s]), dtype=dtype) for s in code.buffers])


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
    dtype, block = X.dtype, model.cell_code
    tcode = tangent_code(block)
    rcodes = {True: adjoint_tangent_code(block, with_input=True), False: adjoint_tangent_code(block, with_input=False)}
    read = step_reader(block)
    names = [code_name(e.target) for e in block.equations]
    prev_names = {s: code_name(tsym(s, -1)) for s in model.state_names}
    now_names = {s: code_name(tsym(s)) for s in model.state_names}
    x_name = code_name(block.input_symbol)
    G = {k: np.zeros(s, dtype=dtype) for k, s in model.param_shapes.items()}
    Gd = {k: np.zeros(s, dtype=dtype) for k, s in model.param_shapes.items()}
    runs = []  # per layer: its parameters, direction, sizes, input, input tangent, cache, tangents
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        x, dx = X, None
        for keys, sizes, residual, row in layers:
            p = {n: params[k] for n, k in keys.items()}
            dp = {n: direction[k] for n, k in keys.items()}
            S = S0 if row is None else S0[(row, "fwd")]
            cache = block.forward(p, x, S, sizes)
            # the tangent forward: dot y at every step
            dots = {n: np.empty((T, N, sizes[block.sizes[e.target]]), dtype=dtype)
                    for n, e in zip(names, block.equations)}
            d_prev = {s: np.zeros((N, S[s].shape[-1]), dtype=dtype) for s in model.state_names}
            d_initial = dict(d_prev)
            source = DirectionSource(dp)
            for t in range(T):
                dV = {prev_names[s]: d_prev[s][None] for s in model.state_names}
                dV[x_name] = None if dx is None else dx[t][None]
                out = tcode.function(p, read(x, cache, t), dV, source, 1, N, sizes, dtype)
                for n in names:
                    dots[n][t] = out[n][0]
                d_prev = {s: dots[now_names[s]][t] for s in model.state_names}
            runs.append((keys, p, dp, sizes, residual, x, dx, cache, dots, d_initial))
            out, d_out = cache[f"S_{model.out}"][1:], dots[now_names[model.out]]
            if residual:
                out, d_out = out + x, d_out + dx
            x, dx = out, d_out
        steps = slice(sched.output_steps.start, sched.output_steps.stop)
        Hs, dHs = x[steps], dx[steps]
        if model.readout is not None:
            readout = model.readout_code
            rcache, rvalues, rdots = _stateless(readout, tangent_code(readout), params, direction, Hs, dHs,
                                                model.sizes)
            O = rcache[f"C_{model.logits}"].reshape(Hs.shape[:2] + (-1,))
            dO = rdots[code_name(tsym(model.logits))].reshape(O.shape)
            value, d_o = model.loss_rule.value_and_grad(O, Y, model.reduction, mask)
            t_o = model.loss_rule.hessian_vector(O, Y, dO, model.reduction, mask)
            if gauss_newton:
                d_o = np.zeros_like(d_o)
            M = Hs.shape[0] * N
            rcode_ = adjoint_tangent_code(readout)
            Q, QD = _buffers(rcode_, 1, M, model.sizes, dtype)
            _, _, h_bar, h_til = rcode_.function(
                params, direction, rvalues, rdots, {model.logits: d_o.reshape(M, -1)},
                {model.logits: t_o.reshape(M, -1)}, {}, {}, [q[0] for q in Q], [q[0] for q in QD],
                rcode_.stacked(params, direction), M, model.sizes, dtype)
            parameter_products(rcode_, Q, QD, lambda s: rvalues[code_name(s)][None],
                               lambda s: rdots[code_name(s)][None], G, Gd)
            h_bar, h_til = h_bar.reshape(Hs.shape), h_til.reshape(Hs.shape)
        else:
            value, h_bar = model.loss_rule.value_and_grad(Hs, Y, model.reduction, mask)
            h_til = model.loss_rule.hessian_vector(Hs, Y, dHs, model.reduction, mask)
            if gauss_newton:
                h_bar = np.zeros_like(h_bar)
        ext = np.zeros((T, N, h_bar.shape[-1]), dtype=dtype)
        extd = np.zeros_like(ext)
        ext[steps], extd[steps] = h_bar, h_til
        for keys, p, dp, sizes, residual, x, dx, cache, dots, d_initial in reversed(runs):
            rcode = rcodes[dx is not None]  # the bottom layer's input adjoint goes nowhere
            carry = {s: np.zeros_like(d_initial[s]) for s in model.state_names}
            carryd = {s: np.zeros_like(d_initial[s]) for s in model.state_names}
            zero_x = np.zeros((N, x.shape[2]), dtype=dtype)
            x_bar, x_til = np.empty_like(x), np.empty_like(x)
            Q, QD = _buffers(rcode, T, N, sizes, dtype)
            stack = rcode.stacked(p, dp)
            g, gd = {n: np.zeros_like(a) for n, a in p.items()}, {n: np.zeros_like(a) for n, a in p.items()}
            for t in range(T - 1, -1, -1):
                dV = {n: dots[n][t] for n in names}
                dV[x_name] = zero_x if dx is None else dx[t]
                for s in model.state_names:
                    dV[prev_names[s]] = dots[now_names[s]][t - 1] if t > 0 else d_initial[s]
                carry, carryd, xb, xt = rcode.function(
                    p, dp, read(x, cache, t), dV, {model.out: ext[t]}, {model.out: extd[t]}, carry, carryd,
                    [q[t] for q in Q], [q[t] for q in QD], stack, N, sizes, dtype)
                if xb is not None:
                    x_bar[t], x_til[t] = xb, xt

            def tangents(symbol, dots=dots, d_initial=d_initial, dx=dx):
                if symbol == block.input_symbol:
                    return dx
                base, offset, _ = parse(symbol)
                if offset == -1:
                    return np.concatenate([d_initial[base][None], dots[now_names[base]][:-1]])
                return dots[code_name(symbol)]

            parameter_products(rcode, Q, QD, lambda s, x=x, cache=cache: all_steps(block, x, cache, s), tangents,
                               g, gd)
            for n, k in keys.items():
                G[k] += g[n]
                Gd[k] += gd[n]
            if residual:
                x_bar, x_til = x_bar + ext, x_til + extd
            ext, extd = x_bar, x_til
    grads = {k: G[k] for k in model.param_shapes}
    return float(value), grads, {k: Gd[k] for k in model.param_shapes}


def gauss_newton_vector_product(model, params, vector, inputs, targets, h0=None, mask=None):
    """``G v = J^T H_L J v``: :func:`hessian_vector_product` with ``gauss_newton=True``; returns the product."""
    return hessian_vector_product(model, params, vector, inputs, targets, h0, mask, gauss_newton=True)[2]

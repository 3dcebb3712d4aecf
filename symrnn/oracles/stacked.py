"""The unrolled scalar oracle of a stacked or bidirectional model.

A second route to :class:`symrnn.wiring.StackedModel`'s gradients that shares
nothing with it but the cell's equations: every direction of every layer is
unrolled into scalar SymPy assignments (the backward direction by walking the
steps from last to first), the merge of two directions is written here as a
scalar expression of its own (``f + b``, ``(f + b) / 2``, ``f b``,
``maximum(f, b)``; concat merely lists the components), the next layer reads
those scalars, and the readout and loss are scalar sums.  The gradient is
reverse accumulation over that straight-line program with ``sympy.diff`` of
one assignment at a time: no matrix rule, no generated block code, no time
reversal of arrays, no merge table.  For tiny sizes (it is a program of
``O(L T H (D + H))`` lines).
"""
from __future__ import annotations

from collections import defaultdict

import mpmath
import numpy as np
import sympy as sp

from ..errors import DerivationTooLargeError
from ..functions import derivative, maximum
from ..losses import scale_of
from ..symbols import MatVec, Param, tsym
from .scalar import _float_namespace, _mpmath_namespace, _ScalarPrinter

#: The merges, written independently of :data:`symrnn.wiring.MERGES`.
_SCALAR_MERGES = {
    "sum": lambda f, b: f + b,
    "ave": lambda f, b: sp.Rational(1, 2) * (f + b),
    "mul": lambda f, b: f * b,
    "max": lambda f, b: maximum(f, b),
}


class ScalarStackOracle:
    """The straight-line scalar program of ``model`` for inputs of length ``T_in`` and targets of ``T_out``.

    ``loss_and_grads(params, inputs, targets, h0=None, precision=None)`` is keyed like
    ``StackedModel.loss_and_grads``; ``precision`` (decimal digits) evaluates in mpmath.
    """

    def __init__(self, model, T_in, T_out, max_lines=60_000):
        self.model = model
        self.schedule = model.architecture.schedule(T_in, T_out)
        self.T_in, self.T_out = T_in, T_out
        self.lines = []  # (Symbol, expr) in order
        self._counter = 0
        self.max_lines = max_lines
        self._build()
        self._compile()

    # -- building -------------------------------------------------------------------------------
    def _new(self, expr):
        if len(self.lines) > self.max_lines:
            raise DerivationTooLargeError(f"The scalar program of {self.model!r} passes {self.max_lines} lines; "
                                          f"use smaller sizes (it is meant for T, H, D of a few).")
        v = sp.Symbol(f"v{self._counter}")
        self._counter += 1
        self.lines.append((v, expr))
        return v

    def _leaves(self, prefix, shape):
        return np.array([sp.Symbol(f"{prefix}_" + "_".join(map(str, idx))) for idx in np.ndindex(*shape)],
                        dtype=object).reshape(shape)

    def _step(self, P, x, states):
        """One cell step on scalars: returns the new states ``{name: [scalars]}``."""
        cell = self.model.cell
        env = {cell.input_symbol: x}
        env.update({tsym(s, -1): v for s, v in states.items()})
        for eq in cell.equations:
            size = self._size[cell.sizes[eq.target]]
            comps = []
            for i in range(size):
                def expand(Pm, v, i=i):
                    return sp.Add(*[w * vj for w, vj in zip(P[Pm.name][i], env[v])])
                scalar = eq.rhs.replace(MatVec, expand)
                mapping = {s: env[s][i] for s in scalar.free_symbols if s in env}
                mapping.update({s: (P[s.name][i] if P[s.name].ndim == 1 else P[s.name][()])
                                for s in scalar.free_symbols if isinstance(s, Param)})
                comps.append(self._new(scalar.xreplace(mapping)))
            env[eq.target] = comps
        return {s: env[tsym(s)] for s in cell.states}

    def _build(self):
        m, sched = self.model, self.schedule
        N_steps = sched.T
        self._size = {"D": m.sizes["D"], "H": m.sizes["H"], "K": m.sizes["K"]}
        self.params = {k: self._leaves(f"p{i}", s) for i, (k, s) in enumerate(m.param_shapes.items())}
        D = m.sizes["D"]
        self.inputs = self._leaves("x", (self.T_in, D))
        self.rows = m.rows()
        sizes = {s: m.unit.state_size(s) for s in m.state_names}
        self.initial = {s: self._leaves(f"s0{s}", (len(self.rows), sizes[s])) for s in m.state_names}
        zero = [sp.Integer(0)] * D
        seq = [list(self.inputs[t - sched.input_steps.start]) if t in sched.input_steps else zero
               for t in range(N_steps)]
        row = 0
        for layer in m.layers:
            self._size["D"] = layer.input_width
            outs = {}
            for d in layer.directions:
                P = {name: self.params[m.key(layer.index, d, name)] for name in m.cell.params}
                states = {s: list(self.initial[s][row]) for s in m.state_names}
                row += 1
                order = range(N_steps) if d == "fwd" else range(N_steps - 1, -1, -1)
                h = [None] * N_steps
                for t in order:
                    states = self._step(P, seq[t], states)
                    h[t] = states[m.out]
                outs[d] = h
            if layer.bidirectional:
                name = m.merge.name
                if name == "concat":
                    merged = [outs["fwd"][t] + outs["bwd"][t] for t in range(N_steps)]
                else:
                    rule = _SCALAR_MERGES[name]
                    merged = [[self._new(rule(f, b)) for f, b in zip(outs["fwd"][t], outs["bwd"][t])]
                              for t in range(N_steps)]
            else:
                merged = outs["fwd"]
            if layer.residual:
                merged = [[self._new(a + b) for a, b in zip(mt, st)] for mt, st in zip(merged, seq)]
            seq = merged
        self._size["D"] = D
        # readout and loss
        W = m.width
        last = m.sizes["K"] if m.readout is not None else W
        self.targets = self._leaves("y", (len(sched.output_steps), last))
        self.scale = sp.Symbol("scale")
        losses = []
        for u, t in enumerate(sched.output_steps):
            y, target = seq[t], self.targets[u]
            if m.readout is None:
                losses.append(self._new(sp.Add(*[g * hj for g, hj in zip(target, y)])))
                continue
            V, c = self.params["V"], self.params["c"]
            o = [self._new(sp.Add(*[V[k, j] * y[j] for j in range(W)]) + c[k]) for k in range(m.sizes["K"])]
            if m.loss_rule.name == "cross-entropy":
                lse = self._new(sp.log(sp.Add(*[sp.exp(ok) for ok in o])))
                losses.append(self._new(self.scale * sp.Add(*[yk * (lse - ok) for yk, ok in zip(target, o)])))
            else:
                losses.append(self._new(self.scale * sp.Add(*[(ok - yk) ** 2 for ok, yk in zip(o, target)])))
        self.loss_symbol = self._new(sp.Add(*losses))

    def _compile(self):
        printer = _ScalarPrinter()
        grads = ([s.name for a in self.params.values() for s in a.ravel()] + [s.name for s in self.inputs.ravel()]
                 + [s.name for a in self.initial.values() for s in a.ravel()])
        args = grads + [s.name for s in self.targets.ravel()] + ["scale"]
        forward = [f"    {v.name} = {printer.doprint(e)}" for v, e in self.lines]
        contributions = defaultdict(list)
        contributions[self.loss_symbol.name].append("1")
        backward = []
        for v, e in reversed(self.lines):
            terms = contributions.pop(v.name, None)
            if not terms:
                continue
            backward.append(f"    _d_{v.name} = {' + '.join(terms)}")
            for term_u in sorted(e.free_symbols, key=lambda s: s.name):
                if term_u.name == "scale" or term_u.name.startswith("y_"):
                    continue
                d = sp.Add(*[derivative(term, term_u) for term in sp.Add.make_args(e) if term.has(term_u)])
                if d != 0:
                    contributions[term_u.name].append(f"_d_{v.name}*({printer.doprint(d)})")
        leaves = [f"    _d_{n} = {' + '.join(contributions.get(n, ['0 * scale']))}" for n in grads]
        source = "\n".join(["def program(_values):", f"    {', '.join(args)}, = _values"] + forward + backward
                           + leaves + [f"    return {self.loss_symbol.name}, [{', '.join('_d_' + n for n in grads)}]"])
        self.source = source + "\n"
        self._code = compile(self.source, "<symrnn-scalar-stack-oracle>", "exec")
        self._programs = {}

    def _program(self, backend):
        if backend not in self._programs:
            ns = dict(_float_namespace() if backend == "float" else _mpmath_namespace())
            exec(self._code, ns)
            self._programs[backend] = ns["program"]
        return self._programs[backend]

    # -- numbers ---------------------------------------------------------------------------------
    def loss_and_grads(self, params, inputs, targets, h0=None, precision=None):
        m = self.model
        p, X, Y, S0, sched, mask = m._prepare(params, np.asarray(inputs, dtype=np.float64), targets, h0, None)
        if m.loss_rule.name == "cross-entropy" and np.issubdtype(Y.dtype, np.integer):
            Y = np.eye(m.sizes["K"])[Y]
        scored = np.ones(Y.shape[:2], dtype=bool)
        scale = 1.0 if m.loss_rule.name == "upstream" else \
            scale_of(m.reduction, scored, m.sizes["K"] if m.loss_rule.name == "mse" else 1)
        x_in = np.asarray(inputs, dtype=np.float64)
        N = x_in.shape[1]
        convert = float if precision is None else mpmath.mpf
        program = self._program("float" if precision is None else "mpmath")
        results = []
        with mpmath.workdps(precision or 15):
            for n in range(N):
                vals = [convert(float(v)) for k in self.params for v in np.asarray(p[k]).ravel()]
                vals += [convert(float(v)) for v in x_in[:, n].ravel()]
                for s in m.state_names:
                    vals += [convert(float(v)) for layer, d in self.rows for v in S0[layer.index, d][s][n]]
                vals += [convert(float(v)) for v in np.asarray(Y[:, n], dtype=np.float64).ravel()]
                results.append(program(vals + [convert(scale)]))
            loss = sum((r[0] for r in results), 0)
            total = [sum(col, 0) for col in zip(*[r[1] for r in results])]
        grads, k = {}, 0
        for name, a in self.params.items():
            grads[name] = np.array(total[k:k + a.size], dtype=object).reshape(a.shape)
            k += a.size
        size = self.inputs.size
        grads[m.input_name] = np.array([r[1][k:k + size] for r in results], dtype=object).reshape(
            N, self.T_in, -1).transpose(1, 0, 2)
        k += size
        for s, a in self.initial.items():
            grads[f"{s}0"] = np.array([r[1][k:k + a.size] for r in results], dtype=object).reshape(
                N, *a.shape).transpose(1, 0, 2)
            k += a.size
        if precision is None:
            grads = {name: g.astype(float) for name, g in grads.items()}
        return loss, grads

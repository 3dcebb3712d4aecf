"""The unrolled scalar oracle: the model as a straight-line program of scalars.

Every weight entry, input entry and target entry is a SymPy ``Symbol``; every
state and intermediate at every step gets fresh symbols (``h__3_1`` is
component 1 of ``h`` at step 3), so the unrolled graph stays a DAG whose size
is linear in ``T`` (the expanded loss would be a tree of about ``H^T``
nodes).  The gradient is reverse accumulation over that DAG, one scalar
equation at a time, each local derivative by ``sympy.diff`` of one term of
one scalar equation: it never uses the matrix-form rules (``W^T``, outer
products, stacked products) of the main route.

The program is printed once per shape and compiled; numbers are then
evaluated in float64 (``math``) or at any precision (``mpmath``).
"""
from __future__ import annotations

import math
from collections import defaultdict

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..errors import DerivationTooLargeError
from ..symbols import MatVec, Param, parse

DEFAULT_BUDGET = 3_000_000  # scalar multiply-adds in the unrolled program


class _ScalarPrinter(PythonCodePrinter):
    def _print_Function(self, expr):
        return f"{type(expr).__name__}({', '.join(self._print(a) for a in expr.args)})"

    _print_tanh = _print_exp = _print_log = _print_Function

    def _print_Symbol(self, expr):
        return expr.name


def _float_namespace():
    return {"tanh": math.tanh, "exp": math.exp, "log": math.log,
            "sigmoid": lambda a: 0.5 * math.tanh(0.5 * a) + 0.5,
            "relu": lambda a: a if a > 0 else 0.0 * a, "step": lambda a: 1.0 if a > 0 else 0.0}


def _mpmath_namespace():
    return {"tanh": mpmath.tanh, "exp": mpmath.exp, "log": mpmath.log,
            "sigmoid": lambda a: 1 / (1 + mpmath.exp(-a)),
            "relu": lambda a: a if a > 0 else mpmath.mpf(0), "step": lambda a: mpmath.mpf(1 if a > 0 else 0)}


class ScalarOracle:
    """The unrolled scalar program of a model for one sequence length.

    Parameters
    ----------
    model : symrnn.Model
    T_in, T_out : int
        Lengths of the inputs and targets (as given to ``loss_and_grads``).
    budget : int
        Refuse (with :class:`DerivationTooLargeError`) programs estimated to
        need more scalar operations than this, instead of running for hours.
    diff : callable
        ``diff(expr, symbol)``; ``sympy.diff`` by default.

    Use :meth:`loss_and_grads` like ``Model.loss_and_grads``.
    """

    def __init__(self, model, T_in, T_out, budget=DEFAULT_BUDGET, diff=sp.diff):
        self.model = model
        self.schedule = model.architecture.schedule(T_in, T_out)
        self.T_in, self.T_out = T_in, T_out
        estimate = self.estimate_size(model, self.schedule.T)
        if estimate > budget:
            raise DerivationTooLargeError(
                f"The unrolled scalar program for {model.cell.name} with T={self.schedule.T}, "
                f"H={model.sizes['H']}, D={model.sizes['D']} needs about {estimate:,} scalar operations, "
                f"over the budget of {budget:,}. Use a smaller T or H, or pass budget= to raise it."
            )
        self._diff = diff
        self._build()

    @staticmethod
    def estimate_size(model, T):
        sizes = model.sizes
        per_step = 0
        for eq in model.cell.equations:
            rows = sizes[model.cell.sizes[eq.target]]
            cols = sum(sizes[model.cell.params[m.args[0].name].shape[1]] for m in eq.rhs.atoms(MatVec))
            per_step += rows * (cols + len(eq.rhs.free_symbols))
        if model.readout is not None:
            per_step += sizes["K"] * (sizes["H"] + 2)
        return 3 * T * per_step  # forward, and two terms a derivative in the backward sweep

    # -- building the program ------------------------------------------------
    def _build(self):
        model, sizes, sched = self.model, self.model.sizes, self.schedule
        cell = model.cell
        self.assignments = []  # (symbol, expr), forward, in order
        self.param_symbols = {}
        for name, shape in model.param_shapes.items():
            self.param_symbols[name] = np.array(
                [sp.Symbol(f"{name}__" + "_".join(map(str, idx))) for idx in np.ndindex(*shape)],
                dtype=object).reshape(shape)
        D, H = sizes["D"], sizes["H"]
        self.input_symbols = [[sp.Symbol(f"x__{t}_{j}") for j in range(D)] for t in range(self.T_in)]
        self.state0_symbols = {s: [sp.Symbol(f"{s}0__{j}") for j in range(H)] for s in cell.states}
        last = sizes["K"] if model.readout is not None else H
        self.target_symbols = [[sp.Symbol(f"y__{t}_{k}") for k in range(last)] for t in range(self.T_out)]
        self.scale_symbol = sp.Symbol("scale")
        states = {s: list(v) for s, v in self.state0_symbols.items()}
        outputs = []
        for t in range(sched.T):
            env = {}
            if t in sched.input_steps:
                env[cell.input_symbol] = self.input_symbols[t - sched.input_steps.start]
            else:
                env[cell.input_symbol] = [sp.Integer(0)] * D
            for s in cell.states:
                env[parse_state(s, -1)] = states[s]
            for eq in cell.equations:
                base = parse(eq.target)[0]
                env[eq.target] = self._assign_vector(f"{base}__{t}", eq.rhs, env, sizes[cell.sizes[eq.target]])
                if eq.kind == "state":
                    states[base] = env[eq.target]
            if t in sched.output_steps:
                outputs.append(states[cell.output_state])
        loss_terms = []
        for t_out, h in enumerate(outputs):
            y = self.target_symbols[t_out]
            if model.readout is None:
                loss_terms.append(sp.Add(*[g * hj for g, hj in zip(y, h)]))
                continue
            eq = model.readout.equations[0]
            o = self._assign_vector(f"{model.logits}__{t_out}", eq.rhs, {model.readout.input_symbol: h}, sizes["K"])
            if model.loss_rule.name == "cross-entropy":
                lse = self._assign(sp.Symbol(f"lse__{t_out}"), sp.log(sp.Add(*[sp.exp(ok) for ok in o])))
                loss_terms.append(lse * sp.Add(*y) - sp.Add(*[yk * ok for yk, ok in zip(y, o)]))
            else:
                loss_terms.append(sp.Add(*[(ok - yk) ** 2 for ok, yk in zip(o, y)]))
        self.loss_symbol = self._assign(sp.Symbol("L"), self.scale_symbol * sp.Add(*loss_terms))
        self._forward_count = len(self.assignments)
        self._build_backward()
        self._compile()

    def _assign(self, symbol, expr):
        self.assignments.append((symbol, expr))
        return symbol

    def _assign_vector(self, prefix, rhs, env, rows):
        out = []
        for i in range(rows):
            def expand(P, v, i=i):
                row = self.param_symbols[P.name][i]
                return sp.Add(*[w * vj for w, vj in zip(row, env[v])])
            scalar = rhs.replace(MatVec, expand)
            mapping = {s: env[s][i] for s in scalar.free_symbols if s in env}
            mapping.update({s: self.param_symbols[s.name][i] for s in scalar.free_symbols
                            if isinstance(s, Param) and s.name in self.param_symbols})
            out.append(self._assign(sp.Symbol(f"{prefix}_{i}"), scalar.xreplace(mapping)))
        return out

    def _build_backward(self):
        """Reverse accumulation: ``bar u += bar s * d e / d u`` for every ``s = e``."""
        self.adjoint_lines = []
        contributions = defaultdict(list)
        contributions[self.loss_symbol].append(sp.Integer(1))
        leaves = set()
        for symbol, expr in reversed(self.assignments):
            terms = contributions.pop(symbol, None)
            if not terms:
                continue
            bar_s = sp.Symbol(f"d__{symbol.name}")
            self.adjoint_lines.append((bar_s, sp.Add(*terms)))
            by_symbol = defaultdict(list)
            for term in sp.Add.make_args(expr):
                for u in term.free_symbols:
                    by_symbol[u].append(term)
            for u, us_terms in by_symbol.items():
                if u == self.scale_symbol or u.name.startswith("y__"):
                    continue
                derivative = sp.Add(*[self._diff(term, u) for term in us_terms])
                if derivative != 0:
                    contributions[u].append(bar_s * derivative)
                    leaves.add(u)
        self.leaf_adjoints = {u: sp.Add(*terms) for u, terms in contributions.items()}

    def _compile(self):
        printer = _ScalarPrinter()
        flat_inputs = ([s for arr in self.param_symbols.values() for s in arr.ravel()]
                       + [s for row in self.input_symbols for s in row]
                       + [s for v in self.state0_symbols.values() for s in v]
                       + [s for row in self.target_symbols for s in row] + [self.scale_symbol])
        self.flat_inputs = flat_inputs
        body = [f"    {', '.join(s.name for s in flat_inputs)}, = values"]
        forward = [f"    {s.name} = {printer.doprint(e)}" for s, e in self.assignments]
        backward = [f"    {s.name} = {printer.doprint(e)}" for s, e in self.adjoint_lines]
        grads = [f"d__{s.name}" for s in flat_inputs[:-1 - sum(len(r) for r in self.target_symbols)]]
        leaf = [f"    d__{u.name} = {printer.doprint(e)}" for u, e in self.leaf_adjoints.items()]
        zero = [f"    d__{s.name} = 0 * scale" for s in flat_inputs[:len(grads)] if s not in self.leaf_adjoints]
        source_fb = "\n".join(["def program(values):"] + body + forward + backward + leaf + zero
                              + [f"    return L, [{', '.join(grads)}]"]) + "\n"
        source_f = "\n".join(["def program(values):"] + body + forward + ["    return L"]) + "\n"
        self.source = source_fb
        self._code_fb = compile(source_fb, f"<symrnn-scalar-oracle-{self.model.cell.name}>", "exec")
        self._code_f = compile(source_f, f"<symrnn-scalar-forward-{self.model.cell.name}>", "exec")
        self._programs = {}

    def _program(self, kind, backend):
        key = (kind, backend)
        if key not in self._programs:
            ns = dict(_float_namespace() if backend == "float" else _mpmath_namespace())
            exec(self._code_fb if kind == "grad" else self._code_f, ns)
            self._programs[key] = ns["program"]
        return self._programs[key]

    # -- evaluation ------------------------------------------------------------
    def _values(self, params, x_n, h0_n, y_n, scale, convert):
        vals = [convert(v) for name in self.param_symbols for v in np.asarray(params[name]).ravel()]
        vals += [convert(v) for v in np.asarray(x_n).ravel()]
        vals += [convert(v) for s in self.state0_symbols for v in np.asarray(h0_n[s]).ravel()]
        vals += [convert(v) for v in np.asarray(y_n).ravel()]
        return vals + [convert(scale)]

    def _batch(self, inputs, targets, h0):
        model = self.model
        params_dummy = {k: np.zeros(s) for k, s in model.param_shapes.items()}
        _, _, Y, S0, _ = model._prepare(params_dummy, inputs, targets, h0)
        N = np.asarray(inputs).shape[1]
        if model.loss_rule.name == "cross-entropy" and np.issubdtype(Y.dtype, np.integer):
            Y = np.eye(model.sizes["K"])[Y]
        if model.reduction == "sum" or model.loss_rule.name == "upstream":
            scale = 1.0
        elif model.loss_rule.name == "cross-entropy":
            scale = 1.0 / (self.T_out * N)
        else:
            scale = 1.0 / (self.T_out * N * model.sizes["K"])
        return N, Y, S0, scale

    def loss_and_grads(self, params, inputs, targets, h0=None, precision=None):
        """Loss and gradients from the scalar program; ``precision`` (decimal
        digits) evaluates with mpmath instead of float64."""
        N, Y, S0, scale = self._batch(inputs, targets, h0)
        backend = "float" if precision is None else "mpmath"
        program = self._program("grad", backend)
        with mpmath.workdps(precision or 15):
            convert = float if backend == "float" else mpmath.mpf
            total, acc = 0, None
            for n in range(N):
                values = self._values(params, np.asarray(inputs)[:, n], {s: v[n] for s, v in S0.items()},
                                      Y[:, n], scale, convert)
                L, g = program(values)
                total = total + L
                acc = g if acc is None else [a + b for a, b in zip(acc, g)]
                per_example = g
                self._store_example(n, per_example)
            return total, self._unflatten(acc)

    def _store_example(self, n, g):
        if not hasattr(self, "_per_example"):
            self._per_example = {}
        self._per_example[n] = g

    def _unflatten(self, flat):
        grads, k = {}, 0
        for name, arr in self.param_symbols.items():
            grads[name] = np.array(flat[k:k + arr.size], dtype=object).reshape(arr.shape)
            k += arr.size
        D = self.model.sizes["D"]
        N = len(self._per_example)
        xs = np.array([self._per_example[n][k:k + self.T_in * D] for n in range(N)], dtype=object)
        grads["x"] = xs.reshape(N, self.T_in, D).transpose(1, 0, 2)
        k += self.T_in * D
        H = self.model.sizes["H"]
        for s in self.state0_symbols:
            grads[f"{s}0"] = np.array([self._per_example[n][k:k + H] for n in range(N)], dtype=object)
            k += H
        self._per_example = {}
        return {name: (g.astype(float) if all(isinstance(v, float) for v in g.ravel()) else g)
                for name, g in grads.items()}

    def loss(self, params, inputs, targets, h0=None, precision=None):
        """The loss alone (forward program only)."""
        N, Y, S0, scale = self._batch(inputs, targets, h0)
        backend = "float" if precision is None else "mpmath"
        program = self._program("loss", backend)
        with mpmath.workdps(precision or 15):
            convert = float if backend == "float" else mpmath.mpf
            return sum((program(self._values(params, np.asarray(inputs)[:, n], {s: v[n] for s, v in S0.items()},
                                             Y[:, n], scale, convert)) for n in range(N)), 0)

    @property
    def size(self) -> int:
        """Number of scalar assignments (forward and backward) in the program."""
        return len(self.assignments) + len(self.adjoint_lines) + len(self.leaf_adjoints)


def parse_state(name, offset):
    from ..symbols import tsym
    return tsym(name, offset)

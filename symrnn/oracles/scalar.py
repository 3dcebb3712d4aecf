"""The unrolled scalar oracle: the model as a straight-line program of scalars.

Every weight entry, input entry and target entry is a SymPy ``Symbol``; every
state and intermediate at every step gets fresh symbols (``h__3_1`` is
component 1 of ``h`` at step 3, ``W__w0_1`` an entry of the parameter ``W``;
the program's own names start with ``_``, which no user name may), so the
unrolled graph stays a DAG whose size
is linear in ``T`` (the expanded loss would be a tree of about ``H^T``
nodes).  The gradient is reverse accumulation over that DAG, one scalar
equation at a time, each local derivative by ``sympy.diff`` of one term of
one scalar equation: it never uses the matrix-form rules (``W^T``, outer
products, stacked products) of the main route.

The program is printed once per shape and compiled; numbers are then
evaluated in float64 (``math``) or at any precision (``mpmath``).
"""
from __future__ import annotations

import re

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.precedence import precedence

from ..errors import DerivationTooLargeError
from ..engine.functions import RULES, derivative, rule_of
from ..engine.losses import scale_of
from ..engine.symbols import MatVec
from .unroll import SCALAR_MERGES, SCALE, Unroller, parameter_symbols, program_source  # noqa: F401

DEFAULT_BUDGET = 3_000_000  # scalar multiply-adds in the unrolled program


class ScalarPrinter(PythonCodePrinter):
    """Scalar code that runs on floats and on mpmath numbers alike: functions from the
    rule table (``_f_tanh``), constants and rationals exact at any precision."""

    def _print(self, expr, **kwargs):
        if isinstance(expr, sp.Function):
            return f"_f_{rule_of(expr).name}({', '.join(self._print(a) for a in expr.args)})"
        return super()._print(expr, **kwargs)

    def _print_Symbol(self, expr):
        return expr.name

    def _print_NumberSymbol(self, expr):
        return f"_c_{type(expr).__name__}"

    _print_Pi = _print_Exp1 = _print_EulerGamma = _print_GoldenRatio = _print_Catalan = _print_NumberSymbol
    _print_TribonacciConstant = _print_NumberSymbol

    def _print_Rational(self, expr):
        return f"(_mpf({expr.p})/{expr.q})"

    _print_Half = _print_Rational

    def _print_Pow(self, expr, rational=False):
        prec = precedence(expr)
        return f"{self.parenthesize(expr.base, prec)}**{self.parenthesize(expr.exp, prec)}"


def _constants(convert):
    with mpmath.workdps(60):
        return {f"_c_{type(c).__name__}": convert(str(sp.N(c, 60)))
                for c in (sp.pi, sp.E, sp.EulerGamma, sp.GoldenRatio, sp.Catalan, sp.TribonacciConstant)}


def float_namespace():
    namespace = {f"_f_{name}": rule.scalar_implementation() for name, rule in RULES.items()}
    return {**namespace, **_constants(float), "_mpf": float}


def mpmath_namespace():
    namespace = {f"_f_{name}": rule.mpmath_implementation() for name, rule in RULES.items()}
    return {**namespace, **_constants(mpmath.mpf), "_mpf": mpmath.mpf}


class ScalarOracle:
    """The unrolled scalar program of any model for one sequence length.

    Parameters
    ----------
    model : symrnn.Model or symrnn.StackedModel
        Any model of the protocol: the program unrolls its :meth:`parts` (every cell over time, in
        its direction; the merges and residual sums at each step; the readout and the loss).
    T_in, T_out : int
        Lengths of the inputs and targets (as given to ``loss_and_grads``).
    budget : int
        Refuse (with :class:`DerivationTooLargeError`) programs estimated to
        need more scalar operations than this, instead of running for hours.
    diff : callable
        ``diff(expr, symbol)``; ``sympy.diff`` (through :func:`symrnn.engine.functions.derivative`) by default.

    Use :meth:`loss_and_grads` like the model's ``loss_and_grads``.  Each kind of step (a cell step
    with or without an input, a merge, a scored output) is scalarized and differentiated once
    (:class:`~symrnn.oracles.unroll.Unroller`): building costs ``O(T)`` string work and ``O(1)``
    symbolic work per part.  A stacked model's parts carry their prefix in their names (``l0_bwd_h__3_1``).
    """

    def __init__(self, model, T_in, T_out, budget=DEFAULT_BUDGET, diff=derivative):
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
        self._printer = ScalarPrinter()
        self._build()

    @staticmethod
    def estimate_size(model, T):
        per_step = 0
        for part in model.parts():
            if part.kind != "cell":
                per_step += part.width * 2 if part.kind in ("merge", "residual") else 0
                continue
            sizes = {**model.sizes, "D": part.width}
            for eq in part.cell.equations:
                rows = sizes[part.cell.sizes[eq.target]]
                cols = sum(sizes[part.cell.params[m.args[0].name].shape[1]] for m in eq.rhs.atoms(MatVec))
                per_step += rows * (cols + len(eq.rhs.free_symbols))
        if model.readout is not None:
            per_step += model.sizes["K"] * (model.parts()[-2].width + 2)
        return 3 * T * per_step  # forward, and two terms a derivative in the backward sweep

    def _output_lines(self, top, last):
        """The readout (if any) and the loss of one scored step, reading ``top`` at step ``{t}``."""
        model, unroller = self.model, self._unroller
        y = [sp.Symbol(f"_y__{{u}}_{k}") for k in range(last)]
        out_lines = []
        if model.readout is None:
            per_step = sp.Add(*[g * hj for g, hj in zip(y, top)])
        else:
            env = {model.readout.input_symbol: top}
            params = {k: self.param_symbols[k] for k in model.readout.params}
            out_lines = unroller.scalarize(model.readout.equations, env, lambda eq: model.sizes["K"],
                                           lambda eq: f"{model.logits}__{{u}}", params)
            o = [line[0] for line in out_lines]
            if model.loss_rule.name == "cross-entropy":
                out_lines.append(unroller.line("_lse__{u}", sp.log(sp.Add(*[sp.exp(ok) for ok in o]))))
                per_step = sp.Add(*[yk * (out_lines[-1][0] - ok) for yk, ok in zip(y, o)])
            else:
                per_step = model.loss_rule.weight * sp.Add(*[(ok - yk) ** 2 for ok, yk in zip(o, y)])
        out_lines.append(unroller.line("_L__{u}", self.scale_symbol * per_step))
        return out_lines

    def _build(self):
        model, sched = self.model, self.schedule
        self.param_symbols = parameter_symbols(model.param_shapes)
        self.scale_symbol = sp.Symbol(SCALE)
        self._unroller = unroller = Unroller(model.sizes, self.param_symbols, model.state_names, model.input_name,
                                             self._diff)
        self.state0_names = unroller.state0_names
        parts = model.parts()
        order = unroller.unroll(parts, sched.T, sched.input_steps)
        top = unroller.outputs[[p for p in parts if p.kind not in ("readout", "loss")][-1].name]
        last = model.sizes["K"] if model.readout is not None else len(top)
        unroller.templates["out"] = self._output_lines(top, last)
        made = {fill["t"]: i for i, (_, fill) in enumerate(order)}  # a step's output is scored once it is made
        scored = {made[t + 1]: ("out", {"t": t + 1, "u": t - sched.output_steps.start}) for t in sched.output_steps}
        order = [entry for i, step in enumerate(order) for entry in ([step, scored[i]] if i in scored else [step])]
        self._symbolic_steps = [(unroller.templates[key], fill) for key, fill in order]
        losses = [f"_L__{u}" for u in range(len(sched.output_steps))]
        self.forward_lines, self.backward_lines, contributions = self._unroller.reverse_accumulation(
            self._printer, self._symbolic_steps, losses)
        self.input_names = [[f"{model.input_name}__{t + 1}_{j}" for j in range(model.sizes["D"])]
                            for t in sched.input_steps]
        self.target_names = [[f"_y__{u}_{k}" for k in range(last)] for u in range(len(sched.output_steps))]
        self._compile(contributions)

    def _compile(self, contributions):
        grads = ([s.name for arr in self.param_symbols.values() for s in arr.ravel()]
                 + [n for row in self.input_names for n in row]
                 + [n for names in self.state0_names.values() for n in names])
        args = grads + [n for row in self.target_names for n in row] + [SCALE]
        self.source = program_source(args, self.forward_lines + self.backward_lines, contributions, grads)
        tag = re.sub(r"[^A-Za-z0-9_.+-]", "_", self.model.cell.name)
        self._code_fb = compile(self.source, f"<symrnn-scalar-oracle-{tag}>", "exec")
        self._code_f = compile(program_source(args, self.forward_lines, {}, grads, forward_only=True),
                               f"<symrnn-scalar-forward-{tag}>", "exec")
        self._programs = {}

    def _program(self, kind, backend):
        key = (kind, backend)
        if key not in self._programs:
            ns = dict(float_namespace() if backend == "float" else mpmath_namespace())
            exec(self._code_fb if kind == "grad" else self._code_f, ns)
            self._programs[key] = ns["program"]
        return self._programs[key]

    # -- evaluation ------------------------------------------------------------
    def _values(self, params, x_n, h0_n, y_n, scale, convert):
        arrays = [params[name] for name in self.param_symbols] + [x_n] + [h0_n[s] for s in self.state0_names] + [y_n]
        return [convert(v) for a in arrays for v in np.asarray(a).ravel()] + [convert(scale)]

    def _batch(self, inputs, targets, h0, mask=None):
        model = self.model
        params_dummy = {k: np.zeros(s) for k, s in model.param_shapes.items()}
        N = np.asarray(inputs).shape[1]
        _, _, Y, _, _, mask = model._prepare(params_dummy, np.asarray(inputs, dtype=np.float64), targets,
                                             model.initial_states(h0, N), mask)
        S0 = model.initial_states(h0, N, dtype=None)  # the caller's numbers (mpmath ones too), checked above
        if model.loss_rule.name == "cross-entropy" and np.issubdtype(Y.dtype, np.integer):
            Y = np.eye(model.sizes["K"])[Y]
        scored = np.ones(Y.shape[:2], dtype=bool) if mask is None else mask
        if mask is not None:
            if model.loss_rule.name in ("mse", "half-mse"):
                raise NotImplementedError("The scalar oracle has no mask for squared-error losses; use the torch oracle.")
            Y = Y * mask[..., None]  # a target of zeros scores nothing (cross-entropy, upstream)
        if model.loss_rule.name == "upstream":
            scale = 1.0
        else:
            scale = scale_of(model.reduction, scored, model.sizes["K"] if model.loss_rule.name in ("mse", "half-mse") else 1)
        return N, Y, S0, scale

    def _per_example(self, kind, params, inputs, targets, h0, precision, mask=None):
        """The program's results for each sequence of the batch, in float64 or mpmath."""
        N, Y, S0, scale = self._batch(inputs, targets, h0, mask)
        backend = "float" if precision is None else "mpmath"
        program = self._program(kind, backend)
        convert = float if backend == "float" else mpmath.mpf
        inputs = np.asarray(inputs)
        with mpmath.workdps(precision or 15):
            return [program(self._values(params, inputs[:, n], {s: v[..., n, :] for s, v in S0.items()}, Y[:, n],
                                         scale, convert)) for n in range(N)]

    def loss_and_grads(self, params, inputs, targets, h0=None, precision=None, mask=None):
        """Loss and gradients from the scalar program; ``precision`` (decimal
        digits) evaluates with mpmath instead of float64."""
        results = self._per_example("grad", params, inputs, targets, h0, precision, mask)
        with mpmath.workdps(precision or 15):
            total = sum((loss for loss, _ in results), 0)
            return total, self._unflatten([g for _, g in results])

    def loss(self, params, inputs, targets, h0=None, precision=None, mask=None):
        """The loss alone (forward program only)."""
        results = self._per_example("loss", params, inputs, targets, h0, precision, mask)
        with mpmath.workdps(precision or 15):
            return sum(results, 0)

    def _unflatten(self, per_example):
        """Flat per-sequence gradients -> the dict of ``loss_and_grads`` (summed over the batch
        for parameters; one row per sequence for the inputs and initial states)."""
        N = len(per_example)
        total = [sum(column, 0) for column in zip(*per_example)]
        grads, k = {}, 0
        for name, arr in self.param_symbols.items():
            grads[name] = np.array(total[k:k + arr.size], dtype=object).reshape(arr.shape)
            k += arr.size
        D = self.model.sizes["D"]
        xs = np.array([g[k:k + self.T_in * D] for g in per_example], dtype=object)
        grads[self.model.input_name] = xs.reshape(N, self.T_in, D).transpose(1, 0, 2)
        k += self.T_in * D
        for s, names in self.state0_names.items():
            shape, size = self.model.initial_state_shape(s, N), len(names)
            g0 = np.array([g[k:k + size] for g in per_example], dtype=object)
            grads[self.model.initial_state_key(s)] = g0.reshape(N, -1) if len(shape) == 2 else \
                g0.reshape(N, shape[0], -1).transpose(1, 0, 2)
            k += size
        return {name: (g.astype(float) if all(isinstance(v, float) for v in g.ravel()) else g)
                for name, g in grads.items()}

    def assignments(self):
        """The forward program as ``(name, expression)`` pairs in order, every step's
        names filled in (``a__2_0 = b__0 + U__0_0*x__2_0 + W__0_0*h__1_0``)."""
        for lines, fill in self._symbolic_steps:
            for target, expr in lines:
                renamed = {sym: sp.Symbol(sym.name.format(**fill)) for sym in expr.free_symbols if "{" in sym.name}
                yield target.name.format(**fill), expr.xreplace(renamed)

    def expanded_loss(self, max_ops=20_000):
        """The loss as one SymPy expression of the parameter, input, initial-state
        and target symbols (``W__0_0``, ``x__1_0``, ``h__0_0``, ``y__0_1``,
        ``scale``): the closed form, for tiny sizes (``T = 2, H = 1``).  Its size
        grows like ``H^T``; past ``max_ops`` operations it is refused."""
        values = {}
        for name, expr in self.assignments():
            value = expr.xreplace({sym: values[sym.name] for sym in expr.free_symbols if sym.name in values})
            if sp.count_ops(value) > max_ops:
                raise DerivationTooLargeError(
                    f"The expanded loss passes {max_ops} operations at {name}; the closed form "
                    f"is only for tiny models (T=2, H=1). Use loss_and_grads instead.")
            values[name] = value
        return sp.Add(*[values[f"_L__{u}"] for u in range(len(self.schedule.output_steps))])

    @property
    def size(self) -> int:
        """Number of scalar assignments (forward and backward) in the program."""
        return len(self.forward_lines) + len(self.backward_lines)

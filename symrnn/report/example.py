"""The worked example: a tiny model written out in closed form and checked in numbers.

:class:`WorkedExample` takes the model's cell, architecture, loss and
reduction with ``D = H = 1`` (and ``K = 2`` when there is a readout) over two
steps, and reads the unrolled scalar program of
:class:`~symrnn.oracles.scalar.ScalarOracle`:

* ``definitions``: each scalar quantity in terms of the ones before it
  (``h_1 = tanh(a_1)``), the lines of the scalar program;
* ``closed_form``: ``dL/dP`` for one parameter (the recurrent weight of the
  first gate), from differentiating the fully expanded loss, with the
  forward quantities written back as the names above;
* ``rows``: for every parameter, input and initial-state entry, the gradient
  of ``Model.loss_and_grads``, of the lambdified derivative of the expanded
  loss (``ScalarOracle.expanded_loss``), and of central differences.

Every number comes from fixed values (seeded and rounded to two decimals), so
the report is the same on every run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..engine.functions import lambdify_numpy
from ..errors import ShapeError
from ..engine.structure import fixed_values
from ..engine.symbols import MatTVec, MatVec, Outer, Param, parse, tsym
from ..models.model import Model
from ..oracles.finite_differences import central_differences
from ..oracles.scalar import ScalarOracle
from .summary import BackwardSummary
from .tikz import lengths_for

EXAMPLE_LENGTHS = ((2, 2), (2, 1), (1, 2), (1, 1))
SEED = 7
TOLERANCE = {"closed": 1e-12, "differences": 1e-7}


@dataclass
class Entry:
    """One row of the check table."""

    symbol: sp.Symbol  # W__0_0, x__1_0, h__0_0
    key: str  # the key of loss_and_grads ("W", "x", "h0")
    index: tuple
    generated: float
    closed: float
    differences: float
    by_hand: float = float("nan")  # the printed backward pass, evaluated line by line

    @property
    def max_difference(self) -> float:
        return max(abs(self.generated - self.closed), abs(self.generated - self.differences),
                   abs(self.generated - self.by_hand))


def focus_parameter(cell) -> str:
    """The parameter whose gradient the example writes out: the first ``H x H`` matrix."""
    specs = [s for s in cell.params.values() if not s.fixed]  # not a matrix cell's spreads and folds
    for test in (lambda s: s.shape == ("H", "H"), lambda s: s.is_matrix, lambda s: True):
        for spec in specs:
            if test(spec):
                return spec.name
    raise ValueError(f"cell {cell.name!r} has no parameters")


def _smallest_model(model, K):
    """``model``'s cell at ``D = H = 1``, or the smallest ``H`` its derived sizes accept (mLSTM's heads)."""
    reads_h = model.cell.sizes[model.cell.input_symbol] == "H"
    for H in range(1, 9):
        try:
            return Model(model.cell, D=H if reads_h else 1, H=H, K=K, architecture=model.architecture.name,
                         loss=model.loss_rule.name, reduction=model.reduction)
        except ShapeError:
            continue
    raise ShapeError(f"No hidden size up to 8 fits cell {model.cell.name!r} for the worked example.")


#: closed-form gradients already computed in this process (see WorkedExample.closed_form_gradients)
_CLOSED_FORMS: dict = {}

class WorkedExample:
    """The closed form and the numbers of ``model``'s cell at ``T = 2``, ``D = H = 1``."""

    def __init__(self, model):
        self.source = model
        K = 2 if model.readout is not None else None
        self.model = _smallest_model(model, K)
        self.T_in, self.T_out = lengths_for(model.architecture, 2, EXAMPLE_LENGTHS)
        self.oracle = ScalarOracle(self.model, self.T_in, self.T_out)
        self.schedule = self.oracle.schedule
        self.focus = focus_parameter(model.cell)
        self._numbers()
        self._symbolic()

    # -- values -----------------------------------------------------------------------
    def _numbers(self):
        m, rng = self.model, np.random.default_rng(SEED)

        def draw(*shape):
            return np.round(rng.uniform(-1, 1, size=shape), 2)

        self.params = {k: draw(*shape) for k, shape in m.param_shapes.items()}
        self.inputs = draw(self.T_in, 1, m.sizes["D"])
        self.h0 = {s: draw(1, m.state_size(s)) for s in m.state_names}
        if m.loss_rule.name == "cross-entropy":
            self.targets = rng.integers(0, m.sizes["K"], size=(self.T_out, 1))
            Y = np.eye(m.sizes["K"])[self.targets[:, 0]]
        else:
            last = m.sizes["K"] if m.readout is not None else m.sizes["H"]
            self.targets = draw(self.T_out, 1, last)
            Y = self.targets[:, 0]
        leaves = {}
        for name, arr in self.oracle.param_symbols.items():
            for idx in np.ndindex(*arr.shape):
                leaves[arr[idx]] = self.params[name][idx]
        for row, step_names in enumerate(self.oracle.input_names):
            for j, n in enumerate(step_names):
                leaves[sp.Symbol(n)] = self.inputs[row, 0, j]
        for s, names in self.oracle.state0_names.items():
            for j, n in enumerate(names):
                leaves[sp.Symbol(n)] = self.h0[s][0, j]
        for u, names in enumerate(self.oracle.target_names):
            for k, n in enumerate(names):
                leaves[sp.Symbol(n)] = float(Y[u, k])
        self.leaves = leaves

    @property
    def scale(self):
        m = self.model  # one sequence (N = 1), every step scored
        if m.reduction in ("sum", "batch-mean") or m.readout is None:
            return sp.Integer(1)
        if m.loss_rule.name == "cross-entropy":
            return sp.Rational(1, self.T_out)
        return sp.Rational(1, self.T_out * m.sizes["K"])

    # -- symbols ------------------------------------------------------------------------
    def _symbolic(self):
        """Walk the scalar program: definitions, full expansions, and the loss side."""
        m = self.model
        boundary_base = m.logits if m.readout is not None else m.out
        scale = {sp.Symbol("_scale"): self.scale}
        expanded, self.definitions, loss_defs = {}, [], []
        self.boundary = []
        partial = {}
        for name, named in self.oracle.assignments():
            named = named.xreplace(scale)
            expanded[name] = named.xreplace({s: expanded.get(s.name, s) for s in named.free_symbols})
            base = name.rpartition("__")[0]
            if base in ("_lse", "_L"):
                partial[name] = named.xreplace({s: partial.get(s.name, s) for s in named.free_symbols})
                if base == "_L":
                    loss_defs.append((sp.Symbol(name), partial[name]))
                continue
            self.definitions.append((sp.Symbol(name), named))
        self.expanded = expanded
        self.loss_definitions = loss_defs
        self.loss_expr = sp.Add(*[s for s, _ in loss_defs])
        self.expanded_loss = sp.Add(*[expanded[s.name] for s, _ in loss_defs])
        scored = [t + 1 for t in self.schedule.output_steps]
        if m.readout is not None:
            self.boundary = [sp.Symbol(f"{boundary_base}__{u}_{k}")
                             for u in range(len(scored)) for k in range(m.sizes["K"])]
        else:
            self.boundary = [sp.Symbol(f"{boundary_base}__{t}_{j}") for t in scored for j in range(m.sizes["H"])]
        loss_partial = sp.Add(*[e for _, e in loss_defs])
        self.softmax = []  # (yhat symbol, definition)
        self.adjoints = []  # (bar symbol, definition)
        for b in self.boundary:
            bar_b = sp.Symbol(f"_bar__{b.name}")
            self.adjoints.append((bar_b, self._tidy(self._abbreviate_softmax(sp.diff(loss_partial, b)))))
        self._build_closed_form()

    def _abbreviate_softmax(self, expr):
        """Write ``exp(o_k) / sum_j exp(o_j)`` as ``yhat_k`` (defined once per step)."""
        by_step = {}
        for b in self.boundary:
            by_step.setdefault(b.name.rsplit("_", 1)[0], []).append(b)
        for prefix, logits in by_step.items():
            Z = sp.Add(*[sp.exp(o) for o in logits])
            if not expr.has(Z):
                continue
            Zs = sp.Symbol(f"_Z__{prefix}")
            mapping = {Z: Zs}
            for o in logits:
                yhat = sp.Symbol("_yhat__" + o.name.rpartition("__")[2])
                mapping[sp.exp(o)] = yhat * Zs
                if all(y != yhat for y, _ in self.softmax):
                    self.softmax.append((yhat, sp.exp(o) / Z))
            expr = sp.expand(expr.xreplace(mapping))
        yhats = [y for y, _ in self.softmax]
        return sp.collect(expr, yhats) if yhats else expr

    def _build_closed_form(self):
        """``dL/dP`` for the focus entry by forward accumulation over the named program: each line's
        derivative reads the derivatives of the lines before it, and an activation's derivative is
        written with the line's own name (``sigma(a)(1 - sigma(a))`` -> ``z_1 (1 - z_1)``), so every
        quantity appears under its name."""
        entry = self.oracle.param_symbols[self.focus].ravel()[0]
        self.focus_symbol = entry
        back = {d: s for s, d in self.definitions if not isinstance(d, (sp.Symbol, sp.Add, sp.Mul))}
        tangent = {}
        for symbol, definition in self.definitions:
            total = sp.diff(definition, entry)
            for u in sorted(definition.free_symbols & set(tangent), key=lambda v: v.name):
                if tangent[u] != 0:
                    total += sp.diff(definition, u) * tangent[u]
            tangent[symbol] = total.xreplace(back)
        per_step = {}
        for b, (bar_b, _) in zip(self.boundary, self.adjoints):
            step = b.name.rpartition("__")[2].split("_")[0]
            per_step.setdefault(step, []).append(bar_b * tangent[b])
        self.closed_form = sp.Add(*[sp.factor_terms(sp.Add(*terms)) for terms in per_step.values()])

    # -- the backward pass by hand ---------------------------------------------------------
    def _scalar(self, expr, t):
        """The report's vector expression ``expr`` at step ``t`` of this example as a SymPy matrix of
        the example's scalar symbols (``bar h[t+1]`` at ``t = 1`` -> ``[_bar__h__2_0]``)."""
        o = self.oracle
        if isinstance(expr, Param):
            if expr.name not in o.param_symbols:  # a matrix cell's spread or fold: its exact 0/1 entries
                return sp.Matrix(fixed_values(self.model.cell.params, self.model.sizes)[expr.name].astype(int))
            arr = o.param_symbols[expr.name]
            return sp.Matrix(arr.reshape(arr.shape[0], -1))
        if isinstance(expr, sp.Symbol):
            if parse(expr) is None:  # a size in a mean reduction's factor: one sequence, every step scored
                m = self.model
                sizes = {"N": 1, "T_out": self.T_out, "n_tokens": self.T_out, "T": self.schedule.T, **m.sizes}
                return sp.Integer(sizes[expr.name])
            base, offset, bar = parse(expr)
            return sp.Matrix([sp.Symbol(n) for n in self._names(base, t + offset, bar)])
        if expr.is_Number:
            return expr
        args = [self._scalar(a, t) for a in expr.args]
        if isinstance(expr, MatVec):
            return args[0] * args[1]
        if isinstance(expr, MatTVec):
            return args[0].T * args[1]
        if isinstance(expr, Outer):
            return args[0] * args[1].T
        if isinstance(expr, sp.Add):
            return _elementwise(sp.Add, args)
        if isinstance(expr, sp.Mul):
            return _elementwise(sp.Mul, args)
        if isinstance(expr, sp.Pow):
            return _elementwise(sp.Pow, args)
        return _elementwise(type(expr), args)

    def _names(self, base, step, bar):
        """The example's scalar names of quantity ``base`` at ``step`` (counted from 1)."""
        m, sched = self.model, self.schedule
        outputs = [s + 1 for s in sched.output_steps]
        per_output = {m.logits: m.logits, "yhat": "_yhat", "y": "_y"}
        per_output.update({_external_base(g): "_y" for g in m.derive().external.values()})
        if base in per_output:
            size = m.sizes["K"] if m.readout is not None else m.state_size(m.out)
            u = outputs.index(step) if step in outputs else None
            prefix = "_bar__" if bar else ""
            if u is None:
                return [f"{prefix}{per_output[base]}__none{step}_{k}" for k in range(size)]
            return [f"{prefix}{per_output[base]}__{u}_{k}" for k in range(size)]
        if base == m.input_name:
            rows = [s + 1 for s in sched.input_steps]
            return self.oracle.input_names[rows.index(step)] if step in rows else [f"{base}__none{step}_0"]
        named = m.cell.sizes.get(tsym(base)) or m.cell.sizes.get(tsym(base, -1)) or m.cell.states.get(base) or "H"
        return [f"{'_bar__' if bar else ''}{base}__{step}_{j}" for j in range(m.sizes[named])]  # LRU's out: D

    def hand_program(self):
        """``[(t, [(scalar adjoint symbol, definition)])]``: the backward pass of the report's adjoint
        equations at this example's sizes, step by step from ``T`` down to 1, each step by the
        equations of its kind of step (:class:`~symrnn.report.summary.BackwardSummary`)."""
        if hasattr(self, "_hand"):
            return self._hand
        summary = BackwardSummary(self.model)
        T = self.schedule.T
        subs = {summary.d.T: T, sp.Symbol("T_in", integer=True, positive=True): self.T_in}
        steps = []
        scored = [s + 1 for s in self.schedule.output_steps]
        rule = summary.loss_rule
        for t in range(T, 0, -1):
            cls = next(c for c in summary.classes if int(c.first.subs(subs)) <= t <= int(c.last.subs(subs)))
            rows = []
            if rule is not None and t in scored:
                rows += self._rows(rule.lhs, rule.rhs, t)
            for lhs, rhs in summary.adjoints(cls, substitute_loss=False):
                rows += self._rows(lhs, rhs, t)
            steps.append((t, rows))
        self._hand = steps
        self._hand_summary = summary
        return steps

    def _rows(self, lhs, rhs, t):
        left, right = self._scalar(lhs, t), self._scalar(rhs, t)
        if not isinstance(right, sp.MatrixBase):
            right = sp.Matrix([right] * len(left))
        return [(l, self._tidy(r)) for l, r in zip(left, right)]

    def _tidy(self, expr):
        """Targets that sum to one: ``yhat (y_1 + y_2) - y`` is ``yhat - y``."""
        for names in self.oracle.target_names if self.model.loss_rule.name == "cross-entropy" else ():
            expr = expr.xreplace({sp.Add(*[sp.Symbol(n) for n in names]): sp.Integer(1)})
        return expr

    def hand_gradients(self) -> dict:
        """``{entry symbol: expression}``: each gradient entry as the sum of its per-step terms,
        over the steps the report's sums run over, in the example's scalar names."""
        self.hand_program()
        summary, out = self._hand_summary, {}
        T = self.schedule.T
        subs = {summary.d.T: T, sp.Symbol("T_in", integer=True, positive=True): self.T_in}
        for name, arr in self.oracle.param_symbols.items():
            total = sp.zeros(*sp.Matrix(arr.reshape(arr.shape[0], -1)).shape)
            for (first, last), term in summary.gradient(name, substitute_loss=False):
                for t in range(int(sp.sympify(first).subs(subs)), int(sp.sympify(last).subs(subs)) + 1):
                    value = self._scalar(term, t)
                    total += value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])
            for idx in np.ndindex(*arr.shape):
                out[arr[idx]] = total[idx if len(idx) == 2 else (idx[0], 0)]
        (first, last), term = summary.input_gradient(substitute_loss=False)
        for t in range(int(sp.sympify(first).subs(subs)), int(sp.sympify(last).subs(subs)) + 1):
            for name, value in zip(self._names(self.model.input_name, t, False), self._scalar(term, t)):
                out[sp.Symbol(name)] = value
        for state, term in summary.d.initial_state_gradients.items():
            names = self.oracle.state0_names[state]
            values = self._scalar(summary.name_gates(term), 1)  # a number when the state's start is never read
            for name, value in zip(names, values if isinstance(values, sp.MatrixBase) else [values] * len(names)):
                out[sp.Symbol(name)] = value
        return out

    def hand_values(self) -> dict:
        """Every quantity of the example in numbers: forward, adjoints (by :meth:`hand_program`) and
        the gradient entries of :meth:`hand_gradients`."""
        if hasattr(self, "_hand_values"):
            return self._hand_values
        env = {sp.Symbol(k.name) if not isinstance(k, sp.Symbol) else k: float(v) for k, v in self.leaves.items()}
        for symbol, definition in self.definitions + self.softmax:
            env[symbol] = float(_call(definition, env))
        for t, rows in self.hand_program():
            for symbol, definition in rows:
                missing = {s: 0.0 for s in definition.free_symbols if s not in env}
                if any("__none" not in s.name and not s.name.startswith("_bar__") for s in missing):
                    raise KeyError(f"no value for {sorted(map(str, missing))} in {symbol} = {definition}")
                env[symbol] = _cancelled(definition, {**missing, **env}) if definition.free_symbols \
                    else float(definition)
        grads = {}
        for entry, expr in self.hand_gradients().items():
            missing = {s: 0.0 for s in expr.free_symbols if s not in env}
            grads[entry] = float(_call(expr, {**missing, **env})) if expr.free_symbols else float(expr)
        self._hand_values = (env, grads)
        return self._hand_values

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, expr, values=None) -> float:
        """``expr`` at the example's numbers, the abbreviations evaluated in order."""
        env = {s: np.float64(v) for s, v in (self.leaves if values is None else values).items()}
        for symbol, definition in self.all_definitions:
            env[symbol] = _call(definition, env)
        return float(_call(expr, env))

    @property
    def all_definitions(self) -> list:
        """``[(symbol, definition), ...]`` in the order they can be evaluated."""
        return self.definitions + self.softmax + self.adjoints + self.loss_definitions

    def closed_form_gradients(self) -> dict:
        """``{symbol: value}``: derivatives of the expanded loss, lambdified, at the numbers (once per
        process for a cell, sizes and numbers: SymPy's differentiation of an unrolled sLSTM takes half a
        minute, and a worked example is built again for each document of the same model)."""
        key = (repr(self.model), tuple(str(e) for e in self.model.cell.equations),
               tuple(sorted((s.name, float(v)) for s, v in self.leaves.items())))
        if key not in _CLOSED_FORMS:
            if len(_CLOSED_FORMS) >= 64:
                _CLOSED_FORMS.clear()
            _CLOSED_FORMS[key] = self._closed_form_gradients()
        return dict(_CLOSED_FORMS[key])

    def _closed_form_gradients(self) -> dict:
        symbols = [e.symbol for e in self._entry_keys()]
        loss = self.oracle.expanded_loss().xreplace({sp.Symbol("_scale"): self.scale})
        leaves = sorted(self.leaves, key=lambda s: s.name)
        f = _lambdify(leaves, [sp.diff(loss, s) for s in symbols])
        values = f(*[np.float64(self.leaves[s]) for s in leaves])
        return dict(zip(symbols, (float(v) for v in values)))

    def _entry_keys(self):
        m, o = self.model, self.oracle
        keys = []
        for name, arr in o.param_symbols.items():
            keys += [Entry(arr[idx], name, idx, 0.0, 0.0, 0.0) for idx in np.ndindex(*arr.shape)]
        for row, names in enumerate(o.input_names):
            keys += [Entry(sp.Symbol(n), m.input_name, (row, 0, j), 0.0, 0.0, 0.0) for j, n in enumerate(names)]
        for s, names in o.state0_names.items():
            keys += [Entry(sp.Symbol(n), m.initial_state_key(s), (0, j), 0.0, 0.0, 0.0) for j, n in enumerate(names)]
        return keys

    def table(self) -> list:
        """The check table: one :class:`Entry` per parameter, input and initial-state entry."""
        if not hasattr(self, "_table"):
            m = self.model
            self.loss_value, grads = m.loss_and_grads(self.params, self.inputs, self.targets, h0=self.h0)
            fd = central_differences(m, self.params, self.inputs, self.targets, h0=self.h0)
            closed = self.closed_form_gradients()
            _, hand = self.hand_values()
            rows = []
            for e in self._entry_keys():
                rows.append(Entry(e.symbol, e.key, e.index, float(grads[e.key][e.index]),
                                  closed[e.symbol], float(fd[e.key][e.index]), hand[e.symbol]))
            self._table = rows
        return self._table

    # -- names ------------------------------------------------------------------------------
    def step_of(self, u: int) -> int:
        """The step (from 1) of the ``u``-th scored output."""
        return self.schedule.output_steps[u] + 1

    def symbol_names(self, name_tex) -> dict:
        """LaTeX of every symbol of the example; ``name_tex(base, bar, index)`` prints a name."""
        m = self.model
        out = {}
        shapes = m.param_shapes
        target_base = "y"
        if m.readout is None:
            target_base = next(iter(m.derive().external.values())).name.split("[")[0]
        for name, arr in self.oracle.param_symbols.items():
            for idx in np.ndindex(*arr.shape):
                kept = [str(i + 1) for i, n in zip(idx, shapes[name]) if n > 1]
                tex = name_tex(name)
                if kept:  # [V]_1: an entry, never confused with a quantity at a step (c_1)
                    tex = r"[%s]_{%s}" % (tex, ",".join(kept))
                out[arr[idx]] = tex
        symbols = set(self.leaves) | {s for s, _ in self.definitions + self.softmax + self.adjoints}
        symbols |= {s for s, _ in self.loss_definitions} | self.closed_form.free_symbols
        for _, rows in self.hand_program():
            for lhs, rhs in rows:
                symbols |= {lhs} | rhs.free_symbols
        for expr in self.hand_gradients().values():
            symbols |= expr.free_symbols
        for _, d in self.definitions + self.softmax + self.adjoints + self.loss_definitions:
            symbols |= d.free_symbols
        for s in symbols:
            if s in out:
                continue
            out[s] = self._name(s.name, name_tex, target_base)
        return out

    def _name(self, name, name_tex, target_base):
        """``h__2_0`` -> ``h_{2}``, ``o__0_1`` -> ``o_{1,2}`` (step, then class), ``_bar__o__0_1`` -> ``\\bar{o}_{1,2}``.

        The oracle's and this example's own names start with ``_`` (``_y``, ``_L``, ``_Z``, ``_yhat``)."""
        m = self.model
        bar = name.startswith("_bar__")
        base, _, rest = name[len("_bar__") if bar else 0:].rpartition("__")
        first, *components = (int(i) for i in rest.split("_"))
        per_output = {"_yhat", "_y", "_L", "_Z"} | ({m.logits} if m.readout is not None else set())
        step = self.step_of(first) if base in per_output else first  # outputs are counted from 0
        if base == m.input_name:
            size = m.sizes["D"]
        elif base in (m.logits, "_yhat") or (base == "_y" and m.readout is not None):
            size = m.sizes["K"]
        elif tsym(base) in m.cell.sizes:
            size = m.sizes[m.cell.sizes[tsym(base)]]
        else:
            size = m.sizes["H"]
        parts = [str(step)] + ([str(c + 1) for c in components] if size > 1 else [])
        shown = {"_y": target_base, "_L": "L", "_Z": "Z", "_yhat": "yhat"}.get(base, base)
        return name_tex(shown, bar, ",".join(parts))


def _external_base(symbol) -> str:
    return parse(symbol)[0]


def _elementwise(op, args):
    """``op`` applied entry by entry to matrices of one shape and scalars."""
    shape = next((a.shape for a in args if isinstance(a, sp.MatrixBase) and a.shape != (1, 1)), None)
    if shape is None:
        shape = (1, 1)
    def entry(a, i, j):
        if not isinstance(a, sp.MatrixBase):
            return a
        return a[0, 0] if a.shape == (1, 1) else a[i, j]
    return sp.Matrix(shape[0], shape[1], lambda i, j: op(*[entry(a, i, j) for a in args]))


def _cancelled(expr, env) -> float:
    """``expr``'s value, 0 when it is a sum whose terms cancel to within the rounding of their sizes
    (the stabiliser's adjoint in the sLSTM): what is left then is rounding, whose sign and size change
    from one machine's ``exp`` to another's, and the report is the same on every machine."""
    value = float(_call(expr, env))
    if isinstance(expr, sp.Add) and value != 0.0:
        size = sum(abs(float(_call(term, env))) if term.free_symbols else abs(float(term)) for term in expr.args)
        if abs(value) <= 64 * np.finfo(float).eps * size:
            return 0.0
    return value


def _call(expr, env):
    args = sorted(expr.free_symbols, key=lambda s: s.name)
    return _lambdify(args, expr)(*[np.float64(env[a]) for a in args])


def _lambdify(args, expr):
    return lambdify_numpy(args, expr, cse=True)

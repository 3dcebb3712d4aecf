"""A cell from the user's own forward: run it on symbols and read the equations back.

When a hand-written forward computes no built-in cell (an LSTM without its output tanh, with
peepholes, a coupled gate, a leaky update), its step is run once on NumPy object arrays whose
entries are :class:`Traced` scalars: SymPy expressions that NumPy's object loops carry through
``+ - * / **``, ``@``, ``np.tanh``, ``np.exp``, ``np.log``, ``np.logaddexp``, ``scipy.special.expit``,
``np.sqrt``, slicing, ``np.split``, ``np.hstack`` and sums.  The parameters given to it are the canonical blocks of a layout
(``U_g0[i, j]``, ``W_g0[i, j]``, ``b_g0[i]`` ... laid out by :meth:`symrnn.models.layouts.Layout.to_user`),
so every entry of the step's result is an expression in the inputs, the previous states and the
canonical parameters of one unit.  :func:`lift` turns those per-unit expressions back into vector
equations of the cell language (``sum_j U[i, j] x_j`` is ``U @ x``; ``h_i`` in unit ``i`` is
``h``), and :func:`traced_cell` makes the :class:`~symrnn.Cell`, which is then verified like any
other.

While the code runs, ``np.zeros``/``np.ones``/``np.empty`` (and their ``_like`` forms),
``np.maximum``, ``np.minimum`` and ``np.clip`` are replaced by versions that keep the symbols
(``np.maximum(a, 0)`` is ``relu``); anything that needs a number (``float(a)``, ``if a > 0``,
``math.exp``) stops the tracing with the line that did it.
"""
from __future__ import annotations

import contextlib
import os
import traceback
from types import SimpleNamespace

import numpy as np
import sympy as sp
from sympy.printing.str import StrPrinter

from ..engine import functions as F
from ..engine.cell import Cell
from ..errors import SymRNNError
from ..engine.symbols import MatVec


class TracingError(SymRNNError, ValueError):
    """The user's forward could not be run on symbols (``where``: its line), or what it computed is
    not a cell the cell language can write."""

    def __init__(self, message, where=""):
        super().__init__(message)
        self.where = where


def _expr(value):
    if isinstance(value, Traced):
        return value.e
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return sp.Integer(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return sp.Integer(int(f)) if f.is_integer() else sp.Float(f)
    return None


class Traced:
    """One scalar of the user's forward, as a SymPy expression."""

    __slots__ = ("e",)

    def __init__(self, e):
        self.e = e

    def _binary(self, other, op):
        o = _expr(other)
        return NotImplemented if o is None else Traced(op(self.e, o))

    def __add__(self, other):
        return self._binary(other, lambda a, b: a + b)

    def __radd__(self, other):
        return self._binary(other, lambda a, b: b + a)

    def __sub__(self, other):
        return self._binary(other, lambda a, b: a - b)

    def __rsub__(self, other):
        return self._binary(other, lambda a, b: b - a)

    def __mul__(self, other):
        return self._binary(other, lambda a, b: a * b)

    def __rmul__(self, other):
        return self._binary(other, lambda a, b: b * a)

    def __truediv__(self, other):
        return self._binary(other, lambda a, b: a / b)

    def __rtruediv__(self, other):
        return self._binary(other, lambda a, b: b / a)

    def __pow__(self, other):
        return self._binary(other, lambda a, b: a ** b)

    def __rpow__(self, other):
        return self._binary(other, lambda a, b: b ** a)

    def __neg__(self):
        return Traced(-self.e)

    def __pos__(self):
        return self

    def __abs__(self):
        return Traced(F.absolute(self.e))

    # what NumPy's object loops call for np.tanh, np.exp ...
    def tanh(self):
        return Traced(sp.tanh(self.e))

    def exp(self):
        return Traced(sp.exp(self.e))

    def log(self):
        return Traced(sp.log(self.e))

    def sqrt(self):
        return Traced(sp.sqrt(self.e))

    def sin(self):
        return Traced(sp.sin(self.e))

    def cos(self):
        return Traced(sp.cos(self.e))

    def sinh(self):
        return Traced((sp.exp(self.e) - sp.exp(-self.e)) / 2)

    def cosh(self):
        return Traced((sp.exp(self.e) + sp.exp(-self.e)) / 2)

    def log1p(self):
        return Traced(sp.log(1 + self.e))

    def expm1(self):
        return Traced(sp.exp(self.e) - 1)

    def conjugate(self):
        return self

    def _needs_a_number(self, *args):
        raise TracingError("the code needs the number a symbol stands for (float(), int(), a comparison, an if on "
                           "a value, or a math.* function): that step cannot be traced")

    __float__ = __int__ = __index__ = __bool__ = __lt__ = __le__ = __gt__ = __ge__ = _needs_a_number
    __hash__ = object.__hash__

    def __eq__(self, other):
        return self._needs_a_number()

    def __repr__(self):
        return f"Traced({self.e})"


def traced_array(symbols) -> np.ndarray:
    """An object array of :class:`Traced` entries from an array of SymPy expressions."""
    symbols = np.asarray(symbols, dtype=object)
    out = np.empty(symbols.shape, dtype=object)
    for index in np.ndindex(symbols.shape):
        out[index] = Traced(sp.sympify(symbols[index]))
    return out


def _filled(shape, value):
    out = np.empty(shape, dtype=object)
    for index in np.ndindex(out.shape):
        out[index] = Traced(sp.Integer(value))
    return out


def _floating(dtype):
    """A dtype a float array would have (None: NumPy's default, float64)."""
    if dtype is None or dtype is float:
        return True
    try:
        return np.dtype(dtype).kind == "f"
    except TypeError:
        return False


def _has_traced(a):
    return isinstance(a, Traced) or (isinstance(a, np.ndarray) and a.dtype == object)


_PATCHED = ("zeros", "ones", "empty", "zeros_like", "ones_like", "empty_like", "full", "full_like", "maximum",
            "minimum", "clip", "asarray", "array", "ascontiguousarray", "logaddexp")


@contextlib.contextmanager
def symbolic_numpy():
    """NumPy's array makers, max, min and clip keep symbols while the user's code runs."""
    saved = {name: getattr(np, name) for name in _PATCHED}
    for name, value in _symbolic_versions(saved).items():
        setattr(np, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(np, name, value)


def _symbolic_versions(saved):
    """The replacement of each NumPy function in :data:`_PATCHED` (``saved``: the real ones)."""
    full = _full(saved["full"])
    maximum = _elementwise(_relu_or_max, saved["maximum"])
    minimum = _elementwise(lambda u, v: F.minimum(u, v), saved["minimum"])
    return {"zeros": _maker(saved["zeros"], 0), "ones": _maker(saved["ones"], 1), "empty": _maker(saved["empty"], 0),
            "zeros_like": _like(saved["zeros_like"], 0), "ones_like": _like(saved["ones_like"], 1),
            "empty_like": _like(saved["empty_like"], 0), "full": full,
            "full_like": lambda a, fill_value, dtype=None, *args, **kwargs: full(np.shape(a), fill_value, dtype),
            "maximum": maximum, "minimum": minimum, "clip": _clip(saved["clip"], maximum, minimum),
            "asarray": _converter(saved["asarray"]), "array": _converter(saved["array"]),
            "ascontiguousarray": _converter(saved["ascontiguousarray"]),
            "logaddexp": _elementwise(_logaddexp, saved["logaddexp"])}


def _maker(real, value):
    def make(shape, dtype=None, *args, **kwargs):
        return _filled(shape, value) if _floating(dtype) else real(shape, dtype, *args, **kwargs)
    return make


def _like(real, value):
    def make(a, dtype=None, *args, **kwargs):
        shape = kwargs.pop("shape", None) or np.shape(a)
        return _filled(shape, value) if _floating(dtype) or (dtype is None and _has_traced(a)) \
            else real(a, dtype, *args, **kwargs)
    return make


def _full(real):
    def full(shape, fill_value, dtype=None, *args, **kwargs):
        if _floating(dtype):
            out = np.empty(shape, dtype=object)
            out.fill(fill_value if isinstance(fill_value, Traced) else Traced(_expr(fill_value)))
            return out
        return real(shape, fill_value, dtype, *args, **kwargs)
    return full


def _elementwise(fn, real):
    def apply(a, b, *args, **kwargs):
        if not (_has_traced(a) or _has_traced(b)):
            return real(a, b, *args, **kwargs)
        out = kwargs.get("out", args[0] if args else None)
        A, B = np.broadcast_arrays(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
        result = np.empty(A.shape, dtype=object)
        for index in np.ndindex(A.shape):
            result[index] = Traced(fn(_expr_or(A[index]), _expr_or(B[index])))
        if out is not None:
            out[...] = result
            return out
        return result[()] if result.shape == () else result
    return apply


def _relu_or_max(u, v):
    if v == 0:
        return F.relu(u)
    if u == 0:
        return F.relu(v)
    return F.maximum(u, v)


def _logaddexp(u, v):
    """``log(e^u + e^v)``: ``softplus(v)`` for ``u = 0`` (``np.logaddexp(0, -a)`` in a stable sigmoid)."""
    if u == 0 or v == 0:
        return F.softplus(v if u == 0 else u)
    return sp.log(sp.exp(u) + sp.exp(v))


def _clip(real, maximum, minimum):
    def clip(a, a_min=None, a_max=None, *args, **kwargs):
        if not _has_traced(a):
            return real(a, a_min, a_max, *args, **kwargs)
        out = a if a_min is None else maximum(a, a_min)
        out = out if a_max is None else minimum(out, a_max)
        target = kwargs.get("out", args[0] if args else None)
        if target is not None:
            target[...] = out
            return target
        return out
    return clip


def _converter(real):
    def convert(a, dtype=None, *args, **kwargs):
        if _has_traced(a) or (isinstance(a, (list, tuple)) and _contains_traced(a)):
            return real(a, dtype=object)
        return real(a, dtype, *args, **kwargs) if dtype is not None else real(a, *args, **kwargs)
    return convert


def _contains_traced(seq):
    return any(isinstance(v, Traced) or (isinstance(v, (list, tuple)) and _contains_traced(v)) or
               (isinstance(v, np.ndarray) and v.dtype == object) for v in seq)


def _expr_or(value):
    e = _expr(value)
    if e is None:
        raise TracingError(f"a value of type {type(value).__name__} where a number belongs")
    return e


def user_line(tb):
    """``file:line (in function): code`` of the innermost frame outside symrnn, NumPy and Python."""
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    numpy_dir = os.path.dirname(np.__file__)
    found = ""
    for frame in traceback.extract_tb(tb):
        name = os.path.abspath(frame.filename) if not frame.filename.startswith("<") else frame.filename
        if name.startswith((own, numpy_dir, os.path.dirname(os.__file__), "<frozen")):
            continue
        shown = os.path.relpath(name) if not name.startswith("<") else name
        found = f"{shown}:{frame.lineno} (in {frame.name})" + (f": {frame.line.strip()}" if frame.line else "")
    return found


@contextlib.contextmanager
def symbolic_expit(fn):
    """SciPy's ``expit`` (a ufunc with no loop for symbols) read as ``sigmoid`` while ``fn`` runs: as
    ``scipy.special.expit`` and under any name ``fn``'s module bound it to (``from scipy.special import
    expit``); put back after."""
    try:
        import scipy.special as special
    except ImportError:  # SciPy is optional (the `fast` extra): without it no code under test calls expit
        yield
        return
    real = special.expit

    def expit(a, *args, **kwargs):
        if not _has_traced(a):
            return real(a, *args, **kwargs)
        A = np.asarray(a, dtype=object)
        out = np.empty(A.shape, dtype=object)
        for index in np.ndindex(A.shape):
            out[index] = Traced(F.sigmoid(_expr_or(A[index])))
        return out[()] if out.shape == () else out
    namespace = getattr(fn, "__globals__", {})
    bound = [k for k, v in namespace.items() if v is real]
    special.expit = expit
    namespace.update(dict.fromkeys(bound, expit))
    try:
        yield
    finally:
        special.expit = real
        namespace.update(dict.fromkeys(bound, real))


def run_on_symbols(fn, args, what):
    """``fn(*args)`` with :func:`symbolic_numpy` (and :func:`symbolic_expit`); a failure becomes
    :class:`TracingError` naming the user's line that stopped the tracing."""
    from .hygiene import guarded

    try:
        with symbolic_numpy(), symbolic_expit(fn), guarded(what):
            return fn(*args)
    except TracingError as exc:
        where = user_line(exc.__traceback__)
        raise TracingError(f"{what} could not be run on symbols: {exc}" + (f", at {where}" if where else ""),
                           where) from None
    except SymRNNError:
        raise
    except Exception as exc:
        where = user_line(exc.__traceback__)
        raise TracingError(f"{what} could not be run on symbols: {type(exc).__name__}: {exc}"
                           + (f", at {where}" if where else ""), where) from None


# -- from per-unit expressions to vector equations ------------------------------------------------
class Lifter:
    """Reads the expressions of one unit ``i`` of a traced step as vector expressions.

    ``kinds`` maps each leaf symbol to ``("x", j)``, ``("state", name, j)``, ``("matrix", name, i, j)``
    or ``("vector", name, i)``; ``cell_symbols`` maps ``"x"``, state names and parameter names to
    the cell's symbols."""

    def __init__(self, kinds, cell_symbols, sizes):
        self.kinds, self.cell, self.sizes = kinds, cell_symbols, sizes

    def lift(self, e, i, n="H"):
        """Entry ``i`` of a vector of size ``n`` ("H" or "D") as a vector expression."""
        if e.is_Number:
            return e
        if e.is_Symbol:
            kind = self.kinds.get(e)
            if kind is None:
                raise TracingError(f"the step reads {e}, which is not an input, state or parameter of the call")
            if kind[0] == "zero":
                raise TracingError("the step reads a value the forward makes with np.zeros (or _like) and does not "
                                   "take as an argument: a state it keeps to itself, such as an LSTM's c. Give its "
                                   "step function instead (step mode, or a *_step_forward beside the forward)")
            if n == "H" and kind[0] in ("state", "vector") and kind[2] == i:
                return self.cell[kind[1]]
            if n == "D" and kind[0] == "x" and kind[1] == i:
                return self.cell["x"]
            raise TracingError(f"entry {i} reads {e} elementwise where entry {i} of a vector of size {n} belongs: "
                               f"the step is not the same for every unit")
        if e.is_Add:
            return self._lift_sum(e, i, n)
        if e.is_Mul:
            return sp.Mul(*[self.lift(a, i, n) for a in e.args])
        if e.is_Pow:
            if not e.exp.is_Number:
                raise TracingError(f"a power with a variable exponent: {e}")
            return self.lift(e.base, i, n) ** e.exp
        if isinstance(e, sp.Function):
            return type(e)(*[self.lift(a, i, n) for a in e.args])
        raise TracingError(f"an expression the cell language has no word for: {e}")

    def _entry(self, term, i, n):
        """``(matrix name, column, rest)`` when ``term`` is ``P[i, j] * rest`` with P a matrix, else None."""
        factors = sp.Mul.make_args(term)
        entries = [f for f in factors if f.is_Symbol and self.kinds.get(f, ("",))[0] == "matrix"]
        if len(entries) != 1:
            return None
        kind = self.kinds[entries[0]]
        if n != "H":
            raise TracingError(f"a matrix product inside an input-sized vector: {term}")
        if kind[2] != i:
            raise TracingError(f"unit {i} reads row {kind[2]} of {kind[1]}: the step is not the same for every unit")
        rest = sp.Mul(*[f for f in factors if f is not entries[0]])
        return kind[1], kind[3], rest

    def _lift_sum(self, e, i, n):
        products, others = {}, []
        for term in sp.Add.make_args(e):
            entry = self._entry(term, i, n)
            if entry is None:
                others.append(self.lift(term, i, n))
                continue
            name, j, rest = entry
            products.setdefault(name, {}).setdefault(j, []).append(rest)
        total = sp.Add(*others)
        for name, columns in products.items():
            size = self.cell[name + ".cols"]
            cols = self.sizes[size]
            if sorted(columns) != list(range(cols)):
                raise TracingError(f"{name} @ v reads only the columns {sorted(columns)} of {cols}")
            # each column may carry several vectors (P (u + v)); lift them column by column
            per_column = []
            for j in range(cols):
                per_column.append(sorted((self.lift(r, j, size) for r in columns[j]), key=sp.default_sort_key))
            first = per_column[0]
            if any(len(c) != len(first) or any(a != b for a, b in zip(c, first)) for c in per_column[1:]):
                raise TracingError(f"{name} multiplies a different vector in different columns")
            vector = sp.Add(*first)
            total = total + (self.cell[name] @ vector)
        return total


def traced_cell(name, gates, step, states, D=3, H=2, what="the forward"):
    """The :class:`~symrnn.Cell` that ``step(x, states, params) -> new states`` computes.

    ``step`` receives ``x`` (D,), the previous states ``{name: (H,)}`` and the canonical parameters
    ``{U_g, W_g, b_g}`` of ``gates`` (``("",)``: ``U``, ``W``, ``b``) as object arrays of
    :class:`Traced`, and returns ``{state: (H,) object array}``."""
    cell = Cell(name)
    x = cell.input()
    prev = {s: cell.state(s) for s in states}
    kinds, cell_symbols, params, symbolic = {}, {"x": x, **prev}, {}, {}
    for g in gates:
        for kind, shape in (("U", ("H", "D")), ("W", ("H", "H")), ("b", ("H",))):
            pname = f"{kind}_{g}" if g else kind
            params[pname] = cell.param(pname, *shape)
            cell_symbols[pname] = params[pname]
            if len(shape) == 2:
                cell_symbols[pname + ".cols"] = shape[1]
                rows, cols = H, (D if shape[1] == "D" else H)
                m = np.empty((rows, cols), dtype=object)
                for r in range(rows):
                    for c in range(cols):
                        m[r, c] = sp.Symbol(f"{pname}⟨{r},{c}⟩")
                        kinds[m[r, c]] = ("matrix", pname, r, c)
                symbolic[pname] = m
            else:
                v = np.array([sp.Symbol(f"{pname}⟨{r}⟩") for r in range(H)], dtype=object)
                for r in range(H):
                    kinds[v[r]] = ("vector", pname, r)
                symbolic[pname] = v
    xs = np.array([sp.Symbol(f"x⟨{j}⟩") for j in range(D)], dtype=object)
    for j in range(D):
        kinds[xs[j]] = ("x", j)
    ss = {}
    for s in states:
        ss[s] = np.array([sp.Symbol(f"{s}⟨{j}⟩") for j in range(H)], dtype=object)
        for j in range(H):
            kinds[ss[s][j]] = ("state", s, j)
    new = step(xs, ss, symbolic)
    lifter = Lifter(kinds, cell_symbols, {"D": D, "H": H})
    lifted = {}
    for s in states:
        if s not in new:
            raise TracingError(f"{what} does not return the new {s}")
        values = np.asarray(new[s], dtype=object).reshape(-1)
        if values.shape != (H,):
            raise TracingError(f"{what} returns a {s} of {values.size} entries where {H} belong")
        units = []
        for i in range(H):
            e = _expr(values[i]) if not isinstance(values[i], sp.Basic) else values[i]
            if e is None:
                raise TracingError(f"{what} returns a {type(values[i]).__name__} in {s}")
            units.append(lifter.lift(_readable(e), i))
        if any(u != units[0] for u in units[1:]):
            raise TracingError(f"the units of {s} are computed differently ({units[0]} and {units[1]})")
        lifted[s] = units[0]
    _equations(cell, prev, lifted, gates)
    return cell


def _equations(cell, prev, lifted, gates):
    """The cell's equations from the lifted new states: a state whose new value another one reads
    is updated first and read as ``s[t]``; every function of a product (a gate) becomes a let named
    after the parameter block it reads (``g0[t] = sigmoid(U_g0 x + W_g0 h + b_g0)``)."""
    order, remaining = [], list(lifted)
    while remaining:
        ready = [s for s in remaining if not any(q != s and q in remaining and lifted[s].has(lifted[q])
                                                   for q in remaining)]
        s = (ready or remaining)[0]
        order.append(s)
        remaining.remove(s)
    done, names = {}, set()
    for s in order:
        expr = lifted[s].xreplace(done)
        while (app := _innermost_gate(expr)) is not None:
            blocks = sorted({m.args[0].name.split("_", 1)[1] for m in app.atoms(MatVec) if "_" in m.args[0].name})
            name = blocks[0] if len(blocks) == 1 and blocks[0] not in names else f"a{len(names)}"
            names.add(name)
            symbol = cell.let(name, app)
            done[app] = symbol
            expr = expr.xreplace({app: symbol})
        new_value = lifted[s]
        done[new_value] = cell.update(prev[s], expr)
        lifted = {q: e.xreplace({new_value: done[new_value]}) for q, e in lifted.items()}


def _innermost_gate(expr):
    """The first function application (not a product) that reads a matrix product and contains no
    other such application, or None."""
    for node in sp.postorder_traversal(expr):
        if isinstance(node, sp.Function) and not isinstance(node, MatVec) and node.atoms(MatVec):
            return node
    return None


class _EquationPrinter(StrPrinter):
    def _print_MatVec(self, expr):
        matrix, vector = expr.args
        shown = self._print(vector)
        return f"{self._print(matrix)} @ " + (shown if vector.is_Symbol else f"({shown})")


def equations_text(cell, indent="    "):
    """The cell's equations, one a line, products written ``U @ x[t]``."""
    printer = _EquationPrinter()
    return "\n".join(f"{indent}{printer.doprint(e.target)} = {printer.doprint(e.rhs)}" for e in cell.equations)


def _readable(e):
    """``1/(1 + exp(-a))`` as ``sigmoid(a)`` (the derivative and the printed equations read better)."""
    def is_logistic(t):
        if not (t.is_Pow and t.exp == -1 and t.base.is_Add and len(t.base.args) == 2 and 1 in t.base.args):
            return False
        other = next(a for a in t.base.args if a != 1)
        return isinstance(other, sp.exp)
    return e.replace(is_logistic, lambda t: F.sigmoid(-next(a for a in t.base.args if a != 1).args[0]))


def pseudo_cell(gates, states):
    """What :meth:`~symrnn.models.layouts.Layout.to_user` needs of a cell to lay out ``gates``' blocks."""
    names = [f"{k}_{g}" if g else k for g in gates for k in ("U", "W", "b")]
    return SimpleNamespace(name="traced", params=dict.fromkeys(names), states=dict.fromkeys(states))

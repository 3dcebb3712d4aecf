"""Elementwise functions a cell may use: one table of rules, keyed by name.

Each :class:`FunctionRule` holds a SymPy function class (whose ``fdiff`` is
the derivative rule) and its implementations for every route that evaluates
cells: NumPy (generated code), Python floats and mpmath (the scalar oracle),
PyTorch (the torch oracle).  A function that is not in :data:`RULES` cannot
be used in a cell; :func:`register_function` adds one.

SymPy constructs with a standard meaning are rewritten into this vocabulary
when a cell reads an equation (:func:`to_vocabulary`): ``Abs`` becomes
:class:`absolute`, ``sign`` :class:`sgn`, ``Max``/``Min`` :class:`maximum`/
:class:`minimum` (pairwise, left to right in SymPy's argument order) and
``Heaviside(u)`` :class:`tie_step`.  ``sqrt`` and other powers, rationals and
constants (``pi``, ``E``) need no rule.

``softplus(u) = log(1 + exp(u))`` and ``log_sigmoid(u) = log(sigmoid(u))`` are
evaluated without overflow on every route (``max(u, 0) + log1p(exp(-|u|))``, the
formula of ``logaddexp``; never PyTorch's thresholded ``softplus``, which returns
``u`` itself above 20).

Subgradient conventions at the kinks (those of PyTorch's backward formulas):
``relu'(0) = 0`` (``step(0) = 0``); ``|u|' = sign(u)``, 0 at 0; at a tie of
``maximum(u, v)`` or ``minimum(u, v)`` each argument receives half of the
gradient (``tie_step(0) = 1/2``), as ``torch.maximum`` does.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable

import mpmath
import numpy as np
import sympy as sp

from ..errors import CellDefinitionError, MissingRuleError
from ..validation import look_up


class _Elementwise(sp.Function):
    """A function of the cell language; ``latex_form`` is its LaTeX with ``%s`` for each argument."""

    def _latex(self, printer):
        return self.latex_form % tuple(printer._print(a) for a in self.args)


class _Flat(_Elementwise):
    """A step-like function: its derivative is zero almost everywhere (the kink is a convention)."""

    def fdiff(self, argindex=1):
        return sp.S.Zero


class step(_Flat):
    """Heaviside step with ``step(0) = 0``: the derivative of :class:`relu`."""

    nargs = 1
    latex_form = r"\mathbb{1}\left[%s > 0\right]"


class tie_step(_Flat):
    """Heaviside step with ``tie_step(0) = 1/2``: the share of a tie in ``maximum``/``minimum``."""

    nargs = 1
    latex_form = r"H\left(%s\right)"


class relu(_Elementwise):
    """``relu(a) = max(a, 0)`` with derivative ``step(a)``."""

    nargs = 1
    latex_form = r"\operatorname{relu}\left(%s\right)"

    def fdiff(self, argindex=1):
        return step(self.args[0])


class sigmoid(_Elementwise):
    """Logistic function with ``sigmoid' = sigmoid (1 - sigmoid)``."""

    nargs = 1
    latex_form = r"\sigma\left(%s\right)"

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))


class sgn(_Flat):
    """``sign(u)`` with ``sgn(0) = 0`` and derivative 0 (the derivative of :class:`absolute`)."""

    nargs = 1
    latex_form = r"\operatorname{sign}\left(%s\right)"


class absolute(_Elementwise):
    """``|u|`` with derivative ``sgn(u)`` (0 at 0)."""

    nargs = 1
    latex_form = r"\left|%s\right|"

    def fdiff(self, argindex=1):
        return sgn(self.args[0])


class maximum(_Elementwise):
    """``max(u, v)``; at a tie each argument gets half of the gradient."""

    nargs = 2
    latex_form = r"\max\left(%s, %s\right)"

    def fdiff(self, argindex=1):
        u, v = self.args
        return tie_step(u - v) if argindex == 1 else tie_step(v - u)


class minimum(_Elementwise):
    """``min(u, v)``; at a tie each argument gets half of the gradient."""

    nargs = 2
    latex_form = r"\min\left(%s, %s\right)"

    def fdiff(self, argindex=1):
        u, v = self.args
        return tie_step(v - u) if argindex == 1 else tie_step(u - v)


class softplus(_Elementwise):
    """``softplus(u) = log(1 + exp(u))`` with derivative ``sigmoid(u)``."""

    nargs = 1
    latex_form = r"\operatorname{softplus}\left(%s\right)"

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, arg, **kwargs):
        return sp.log(1 + sp.exp(arg))


class log_sigmoid(_Elementwise):
    """``log_sigmoid(u) = log(sigmoid(u)) = -softplus(-u)`` with derivative ``sigmoid(-u) = 1 - sigmoid(u)``."""

    nargs = 1
    latex_form = r"\log\sigma\left(%s\right)"

    def fdiff(self, argindex=1):
        return 1 - sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, arg, **kwargs):
        return -sp.log(1 + sp.exp(-arg))


tanh = sp.tanh
exp = sp.exp
log = sp.log


# -- implementations ------------------------------------------------------------------
def _sigmoid(a, out=None):
    # 1 / (1 + exp(-a)): accurate to an ulp or two relative to the value wherever exp(-a) is finite, in
    # four vectorised passes; where some a < -700 (values under 1e-304), exp(-|a|) / (1 + exp(-|a|))
    # below 0, which never overflows and keeps the tail exact.  out may be a itself (each pass is
    # elementwise; in the tail branch the sign is read before out is written)
    out = np.empty_like(a) if out is None else out
    if np.size(a) and not np.min(a) >= -700.0:  # also a NaN: the exact branch carries it
        return _sigmoid_tails(a, out)
    np.negative(a, out=out)
    np.exp(out, out=out)
    np.add(out, 1.0, out=out)
    return np.reciprocal(out, out=out)


def _sigmoid_tails(a, out):
    positive = a >= 0
    np.abs(a, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    denominator = out + 1.0
    np.copyto(out, 1.0, where=positive)
    np.divide(out, denominator, out=out)
    return out


def _softplus(a, out=None):
    # log(exp(0) + exp(a)) without overflow: max(a, 0) + log1p(exp(-|a|)), within an ulp or so (the formula
    # of np.logaddexp, whose scalar loop is 4 times slower than these five vectorised passes); out may be a
    tail = np.abs(a)
    if out is None:  # also on NumPy scalars, which take no out=
        return np.maximum(a, 0.0) + np.log1p(np.exp(-tail))
    np.negative(tail, out=tail)
    np.exp(tail, out=tail)
    np.log1p(tail, out=tail)
    np.maximum(a, 0.0, out=out)
    return np.add(out, tail, out=out)


def _log_sigmoid(a, out=None):
    if out is None:  # also on NumPy scalars, which take no out=
        return -_softplus(-a)
    np.negative(a, out=out)
    _softplus(out, out=out)
    return np.negative(out, out=out)


def _scalar_softplus(a):
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


def _mp_softplus(a):
    return mpmath.log1p(mpmath.exp(a))


def _torch_softplus(a):
    import torch  # the torch oracle's route only; torch is optional
    # torch.nn.functional.softplus returns a itself above its threshold (20): 1e-11 relative off; logaddexp is exact
    return torch.logaddexp(torch.zeros_like(a), a)


def _torch_log_sigmoid(a):
    return -_torch_softplus(-a)


def _relu(a, out=None):
    return np.maximum(a, 0, out=out)


def _step(a):
    return (a > 0).astype(a.dtype)


def _tie_step(a):
    return np.heaviside(a, 0.5).astype(a.dtype, copy=False)


def _scalar_step(a, at_zero):
    return 1.0 if a > 0 else (at_zero if a == 0 else 0.0)


def _mp_step(a, at_zero):
    return mpmath.mpf(1) if a > 0 else (mpmath.mpf(at_zero) if a == 0 else mpmath.mpf(0))


def _torch_step(at_zero):
    def rule(a):
        return (a > 0).to(a.dtype) + at_zero * (a == 0).to(a.dtype)
    return rule


def _torch_binary(name):
    def rule(a, b):
        import torch  # the torch oracle's route only; torch is optional

        a, b = (v if torch.is_tensor(v) else torch.tensor(float(v), dtype=torch.float64) for v in (a, b))
        return getattr(torch, name)(a, b)
    return rule


@dataclass(frozen=True)
class FunctionRule:
    """One function of the cell language and its implementation on every route.

    ``numpy`` is called by generated code (with ``out=`` when ``writes_into``);
    ``scalar`` takes one Python float (default: ``numpy`` on a float);
    ``mpmath`` one mpmath number, ``torch`` (a name in ``torch`` or a
    callable of the torch module) one tensor.  ``None`` means the route is not
    available for the function, and using it there raises a clear error.
    """

    function: type
    numpy: Callable
    writes_into: bool = False
    scalar: Callable | None = None
    mpmath: Callable | None = None
    torch: object = None
    registered_as: str | None = None  # set when the class's own name was taken

    @property
    def name(self) -> str:
        return self.registered_as or self.function.__name__

    def scalar_implementation(self):
        if self.scalar is not None:
            return self.scalar
        numpy = self.numpy
        return lambda *args: float(numpy(*(np.float64(a) for a in args)))

    def mpmath_implementation(self):
        if self.mpmath is not None:
            return self.mpmath
        name = self.name

        def unavailable(*args):
            raise MissingRuleError(
                f"The function {name!r} has no mpmath implementation, so the scalar oracle cannot "
                f"evaluate it at high precision; pass mpmath=... to symrnn.register_function({name}, ...)."
            )
        return unavailable

    def torch_implementation(self, torch):
        if callable(self.torch) and not isinstance(self.torch, str):
            return self.torch
        attribute = self.torch or self.name
        found = getattr(torch, attribute, None)
        if found is None:
            raise MissingRuleError(
                f"The function {self.name!r} has no PyTorch implementation for the torch oracle; "
                f"pass torch=callable to symrnn.register_function({self.name}, ...)."
            )
        return found


RULES: dict[str, FunctionRule] = {rule.name: rule for rule in (
    FunctionRule(sp.tanh, np.tanh, True, math.tanh, mpmath.tanh, "tanh"),
    FunctionRule(sp.exp, np.exp, True, math.exp, mpmath.exp, "exp"),
    FunctionRule(sp.log, np.log, True, math.log, mpmath.log, "log"),
    FunctionRule(sp.sin, np.sin, True, math.sin, mpmath.sin, "sin"),
    FunctionRule(sp.cos, np.cos, True, math.cos, mpmath.cos, "cos"),
    FunctionRule(sigmoid, _sigmoid, True, lambda a: 0.5 * math.tanh(0.5 * a) + 0.5,
                 lambda a: 1 / (1 + mpmath.exp(-a)), "sigmoid"),
    FunctionRule(relu, _relu, True, lambda a: a if a > 0 else 0.0 * a,
                 lambda a: a if a > 0 else mpmath.mpf(0), "relu"),
    FunctionRule(softplus, _softplus, True, _scalar_softplus, _mp_softplus, _torch_softplus),
    FunctionRule(log_sigmoid, _log_sigmoid, True, lambda a: -_scalar_softplus(-a), lambda a: -_mp_softplus(-a),
                 _torch_log_sigmoid),
    FunctionRule(step, _step, False, lambda a: _scalar_step(a, 0.0), lambda a: _mp_step(a, 0),
                 _torch_step(0.0)),
    FunctionRule(tie_step, _tie_step, False, lambda a: _scalar_step(a, 0.5), lambda a: _mp_step(a, 0.5),
                 _torch_step(0.5)),
    FunctionRule(absolute, np.abs, True, abs, abs, "abs"),
    FunctionRule(sgn, np.sign, True, lambda a: float((a > 0) - (a < 0)), mpmath.sign, "sign"),
    FunctionRule(maximum, np.maximum, True, max, max, _torch_binary("maximum")),
    FunctionRule(minimum, np.minimum, True, min, min, _torch_binary("minimum")),
)}

_BY_CLASS = {rule.function: rule for rule in RULES.values()}

#: the built-in functions whose NumPy implementation may write into its own argument (``f(a, out=a)``):
#: generated code computes their argument into the target, then applies them there (no temporary)
IN_PLACE = frozenset({"tanh", "exp", "log", "sin", "cos", "sigmoid", "relu", "softplus", "log_sigmoid", "absolute",
                      "sgn"})

#: the function classes symrnn ships (not the ones users register): their rules are symrnn's own code
BUILTIN_FUNCTIONS = frozenset(_BY_CLASS)

#: class name -> NumPy implementation: a view for ``sympy.lambdify``; :func:`lambdify_numpy` is exact.
NUMPY_IMPLEMENTATIONS = {name: rule.numpy for name, rule in RULES.items()}

_MPMATH = mpmath

ACTIVATIONS = {"tanh": tanh, "relu": relu, "sigmoid": sigmoid}


def activation(name):
    """The SymPy function for an activation name (``tanh``, ``relu``, ``sigmoid``)."""
    return look_up(ACTIVATIONS, name, "activation")


def register_function(function_class, numpy_implementation, *, mpmath=None, torch=None, writes_into=False):
    """Make a SymPy function class usable in cells and generated code.

    Parameters
    ----------
    function_class : subclass of ``sympy.Function``
        Its ``fdiff`` is the derivative rule; functions it uses must be usable too.
    numpy_implementation : callable
        Elementwise on arrays; called by generated code.
    mpmath : callable, optional
        For the scalar oracle at high precision (default: ``mpmath.<name>`` if it exists).
    torch : callable or str, optional
        For the torch oracle (default: ``torch.<name>``).
    writes_into : bool
        The implementation accepts ``out=`` (as NumPy ufuncs do).

    Registering the same class again replaces its implementations.  Rules are
    found by class, not by name: a class defined again (a notebook cell run
    twice) or a class of your own named like a built-in (``tanh``) is a new
    function, under a name of its own in generated code (``tanh_2``).

    Examples
    --------
    >>> import mpmath, numpy as np, sympy as sp, symrnn as sr
    >>> class softplus(sp.Function):
    ...     # log(1 + exp(u)); its derivative is the sigmoid
    ...     def fdiff(self, argindex=1):
    ...         return sr.sigmoid(self.args[0])
    >>> sr.register_function(softplus, lambda u: np.logaddexp(0, u),
    ...                      mpmath=lambda u: mpmath.log1p(mpmath.exp(u)),
    ...                      torch=lambda u: u.exp().log1p())
    >>> cell = sr.Cell("softplus-rnn")
    >>> x, h = cell.input(), cell.state("h")
    >>> W, U = cell.param("W", "H", "H"), cell.param("U", "H", "D")
    >>> cell.update(h, softplus(U @ x + W @ h))
    h[t]
    >>> model = sr.Model(cell, D=2, H=3, K=2)
    >>> x_batch = np.random.default_rng(0).normal(size=(4, 1, 2))
    >>> loss, grads = model.loss_and_grads(model.init_params(), x_batch, np.zeros((4, 1), int))
    >>> grads["W"].shape
    (3, 3)
    """
    if not (isinstance(function_class, type) and issubclass(function_class, sp.Function)):
        raise MissingRuleError(
            f"register_function takes a SymPy function class (a subclass of sympy.Function), "
            f"got {function_class!r}.")
    name = function_class.__name__
    if not name.isidentifier():
        raise CellDefinitionError(f"The function class name {name!r} is not a Python identifier.")
    if not callable(numpy_implementation):
        raise MissingRuleError(f"register_function({name}, ...): the NumPy implementation is not callable.")
    known = _BY_CLASS.get(function_class)
    if known is not None:
        name = known.name
    elif name in RULES:
        name = next(f"{name}_{k}" for k in itertools.count(2) if f"{name}_{k}" not in RULES)
    rule = FunctionRule(function_class, numpy_implementation, writes_into, None,
                        mpmath or getattr(_MPMATH, function_class.__name__, None), torch, name)
    RULES[name] = _BY_CLASS[function_class] = rule
    NUMPY_IMPLEMENTATIONS[name] = numpy_implementation  # under the class's name unless that was taken


def rule_of(function) -> FunctionRule:
    """The rule of an applied function (or a function class), or a clear error."""
    cls = function if isinstance(function, type) else type(function)
    rule = _BY_CLASS.get(cls)
    if rule is None:
        raise MissingRuleError(
            f"No NumPy implementation for the function {cls.__name__!r}. Register one with "
            f"symrnn.register_function({cls.__name__}, numpy_callable)."
        )
    return rule


def lambdify_numpy(args, expr, cse: bool = False, **kwargs):
    """``sympy.lambdify`` with NumPy and the rule of every function in ``expr`` (found by class).

    With ``cse=True`` the common subexpressions are taken out first, and the rules are substituted in
    the small pieces that remain: an unrolled expression shares its subtrees, and a walk over the
    whole tree (SymPy's ``replace``, ``atoms``) visits each shared subtree once per use."""
    single = not isinstance(expr, (list, tuple))
    exprs = [sp.sympify(e) for e in ([expr] if single else expr)]
    replacements = []
    if cse:
        replacements, exprs = sp.cse(exprs)
    pieces = [e for _, e in replacements] + exprs
    functions = {f for e in pieces for f in e.atoms(sp.Function) if type(f) in _BY_CLASS}
    module = {f"{rule_of(f).name}__fn": rule_of(f).numpy for f in functions}

    def renamed(e):
        return e.replace(lambda f: type(f) in _BY_CLASS, lambda f: sp.Function(f"{rule_of(f).name}__fn")(*f.args))

    replacements = [(s, renamed(e)) for s, e in replacements]
    exprs = [renamed(e) for e in exprs]
    kwargs.setdefault("dummify", True)  # a symbol named numpy, exp or lambda cannot shadow what the code calls
    if cse:
        kwargs["cse"] = lambda reduced: (replacements, reduced)
    return sp.lambdify(args, exprs[0] if single else exprs, modules=[module, "numpy"], **kwargs)


# -- SymPy constructs rewritten into the vocabulary ------------------------------------
def _pairwise(cls):
    return lambda *args: functools.reduce(cls, args)


def _heaviside(*args):
    """``Heaviside(u)`` and ``Heaviside(u, H0)``: SymPy stores the value at 0 as a second argument (1/2
    unless given); 1/2 is :class:`tie_step`, 0 is :class:`step`."""
    value = args[1] if len(args) == 2 else sp.S.Half if len(args) == 1 else None
    if value == sp.S.Half:
        return tie_step(args[0])
    if value == 0:
        return step(args[0])
    raise CellDefinitionError(
        f"Heaviside{args}: symrnn's step takes the value 1/2 at 0 (sp.Heaviside(u), tie_step) or 0 "
        f"(sp.Heaviside(u, 0), sr.step); give one of those.")


_REWRITES = {sp.Abs: absolute, sp.sign: sgn, sp.Max: _pairwise(maximum), sp.Min: _pairwise(minimum),
             sp.Heaviside: _heaviside}


def to_vocabulary(expr):
    """``expr`` with ``Abs``, ``sign``, ``Max``, ``Min`` and ``Heaviside`` as functions with rules."""
    for cls, new in _REWRITES.items():
        expr = expr.replace(lambda e, cls=cls: isinstance(e, cls), lambda e, new=new: new(*e.args))
    return expr


@functools.lru_cache(maxsize=4096)
def derivative(expr, wrt):
    """``sympy.diff`` in the cell language: a derivative rule may return ``Abs`` or ``Max``
    (a registered ``fdiff``), which becomes :class:`absolute` or :class:`maximum`.  Remembered:
    the derivation, a cell's checks and the verifier's catalogue of mistakes ask again."""
    return to_vocabulary(sp.diff(expr, wrt))

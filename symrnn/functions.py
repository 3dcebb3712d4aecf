"""Elementwise functions a cell may use, with their derivative rules.

The derivative of each function is SymPy's own ``fdiff`` (for ``tanh``,
``exp``, ``log`` ...) or the one defined here (``sigmoid``, ``relu``).  The
numerical implementation of every function is looked up by name in
:data:`NUMPY_IMPLEMENTATIONS`; generated code calls these names, so a new
function needs a SymPy class with ``fdiff`` and one entry in that table
(:func:`register_function`).

Subgradient convention: ``relu'(0) = 0`` (``step(0) = 0``), the convention of
PyTorch's ``threshold_backward`` and of most hand-written backprop code.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from .errors import MissingRuleError, UnknownNameError


class step(sp.Function):
    """Heaviside step with ``step(0) = 0``: the derivative of :class:`relu`."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.S.Zero  # zero almost everywhere; the kink is a convention

    def _latex(self, printer):
        return r"\mathbb{1}\left[%s > 0\right]" % printer._print(self.args[0])


class relu(sp.Function):
    """``relu(a) = max(a, 0)`` with derivative ``step(a)``."""

    nargs = 1

    def fdiff(self, argindex=1):
        return step(self.args[0])

    def _latex(self, printer):
        return r"\operatorname{relu}\left(%s\right)" % printer._print(self.args[0])


class sigmoid(sp.Function):
    """Logistic function with ``sigmoid' = sigmoid (1 - sigmoid)``."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))

    def _latex(self, printer):
        return r"\sigma\left(%s\right)" % printer._print(self.args[0])


tanh = sp.tanh
exp = sp.exp
log = sp.log


def _sigmoid(a, out=None):
    # 0.5 (1 + tanh(a/2)) never overflows, unlike 1 / (1 + exp(-a)); done in place in ``out``.
    if out is None:
        return 0.5 * np.tanh(0.5 * a) + 0.5
    np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def _relu(a, out=None):
    return np.maximum(a, 0, out=out)


def _step(a):
    return (a > 0).astype(a.dtype)


NUMPY_IMPLEMENTATIONS = {
    "tanh": np.tanh,
    "exp": np.exp,
    "log": np.log,
    "sigmoid": _sigmoid,
    "relu": _relu,
    "step": _step,
}

# functions whose implementation takes ``out=`` (generated code then writes results in place)
WRITES_INTO = {"tanh", "exp", "log", "sigmoid", "relu"}

ACTIVATIONS = {"tanh": tanh, "relu": relu, "sigmoid": sigmoid}


def activation(name):
    """The SymPy function for an activation name (``tanh``, ``relu``, ``sigmoid``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UnknownNameError(
            f"Unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}."
        ) from None


def register_function(function_class, numpy_implementation):
    """Make a SymPy function class usable in cells and generated code.

    ``function_class`` must define ``fdiff`` (its derivative); the NumPy
    implementation is called by generated code under the class's name.
    """
    NUMPY_IMPLEMENTATIONS[function_class.__name__] = numpy_implementation


def numpy_name(function) -> str:
    """The name generated code calls for an applied function, or a clear error."""
    name = type(function).__name__ if not isinstance(function, type) else function.__name__
    if name not in NUMPY_IMPLEMENTATIONS:
        raise MissingRuleError(
            f"No NumPy implementation for the function {name!r}. Register one with "
            f"symrnn.register_function({name}, numpy_callable)."
        )
    return name

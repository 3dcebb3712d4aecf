"""The rules of the operations over source positions that attention needs: a dot product per source
position, a softmax over the positions and a weighted sum over them (a row each, as the elementwise
functions have theirs in :mod:`symrnn.engine.functions`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sympy as sp

from ..errors import MissingRuleError
from .functions import derivative, lambdify_numpy
from .symbols import MatTVec, MatVec, Outer

# -- operations over source positions (attention) -------------------------------------------
# The cell language is elementwise plus P @ v.  Attention needs three words more: a dot product
# over a vector (a score per source position), a softmax over the source positions, and a sum
# over the source positions weighted by the attention weights (reading every encoder step).
# Each is a row below, like a line of autograd's VJP table: its NumPy forward, one adjoint rule
# per argument (``vjp[i](g, ans, *args) -> dL/d args[i]``), and the same rule as SymPy for the
# reports.  symrnn.models.attention runs them on a tape; no attention backward is written anywhere else.
#
# Array conventions: queries ``(T, N, A)``, keys and encoder states ``(S, N, C)``, scores and
# weights ``(T, N, S)``, contexts ``(T, N, C)``, pairs ``(T, N, S, A)``; ``mask`` ``(S, N)``.

class dot(sp.Function):
    """``u^T v``: the dot product of two vectors (a scalar)."""

    nargs = 2

    def _latex(self, printer):
        return r"%s^{\top} %s" % tuple(printer._print(a) for a in self.args)


class softmax_s(sp.Function):
    """``softmax_s(e)``: the softmax of a score over the source positions ``s`` (masked ones get 0)."""

    nargs = 1

    def _latex(self, printer):
        return r"\operatorname{softmax}_{s}\left(%s\right)" % printer._print(self.args[0])


class sum_s(sp.Function):
    """``sum_s(w, v)``: the sum over the source positions of ``w[s] v[s]`` (a weight times a vector);
    ``sum_s(u)``: the sum of ``u[s]``."""

    nargs = (1, 2)

    def _latex(self, printer):
        return r"\sum_{s} %s" % r"\, ".join(_grouped(printer, a) for a in self.args)


def _grouped(printer, expr):
    tex = printer._print(expr)
    return r"\left(%s\right)" % tex if isinstance(expr, sp.Add) else tex


class sum_t(sp.Function):
    """``sum_t(u)``: the sum over the target (decoder) steps ``t``: a key or state read at every step."""

    nargs = 1

    def _latex(self, printer):
        return r"\sum_{t} %s" % _grouped(printer, self.args[0])


def _masked_softmax(E, mask=None):
    """Softmax over the last axis; positions where ``mask`` (S, N) is false get weight 0."""
    if mask is not None:
        E = np.where(mask.T[None], E, -np.inf)
    Z = np.exp(E - E.max(axis=-1, keepdims=True))
    return Z / Z.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class SequenceRule:
    """One operation over source positions: NumPy forward, adjoint per argument, and the rule in SymPy.

    ``symbolic(y, ybar, *args)`` returns the adjoints of the arguments as SymPy expressions
    (``y`` the result, ``ybar`` its adjoint, indices ``t`` and ``s`` implicit), for the reports.
    """

    name: str
    description: str
    forward: Callable = field(repr=False)
    vjp: tuple = field(repr=False)
    symbolic: Callable = field(repr=False)
    form: Callable = field(repr=False, default=None)  # the forward as SymPy, for the reports


def _flat(X, W):
    """``X @ W``: the product over the last axis as one 2-D matrix product (a stacked 3-D ``matmul``
    does one small product per leading index)."""
    return (X.reshape(-1, X.shape[-1]) @ W).reshape(X.shape[:-1] + (W.shape[-1],))


def _ein(spec):
    return lambda *arrays: np.einsum(spec, *arrays, optimize=True)


def contraction(name, description, spec, symbolic, form) -> SequenceRule:
    """The rule of a product of two arrays summed over the indices ``spec`` (einsum's ``a,b->z``) leaves out:
    each argument's adjoint is the contraction of the result's adjoint with the other argument."""
    (a, b), z = spec.split("->")[0].split(","), spec.split("->")[1]
    return SequenceRule(name, description, _ein(spec),
                        (lambda g, y, A, B: _ein(f"{z},{b}->{a}")(g, B),
                         lambda g, y, A, B: _ein(f"{a},{z}->{b}")(A, g)),
                        symbolic, form)


SEQUENCE_RULES: dict[str, SequenceRule] = {rule.name: rule for rule in (
    SequenceRule("linear", "W v at every position: (..., n) -> (..., m)",
                 lambda W, X: _flat(X, W.T),
                 (lambda g, y, W, X: g.reshape(-1, g.shape[-1]).T @ X.reshape(-1, X.shape[-1]),
                  lambda g, y, W, X: _flat(g, W)),
                 lambda y, ybar, W, v: (Outer(ybar, v), MatTVec(W, ybar)),
                 lambda W, v: MatVec(W, v)),
    contraction("dot", "e[t, s] = q[t]^T k[s] (the dot product over a vector, every pair t, s)", "tna,sna->tns",
                lambda y, ybar, q, k: (sum_s(ybar, k), sum_t(ybar * q)), lambda q, k: dot(q, k)),
    SequenceRule("pairs", "p[t, s] = q[t] + k[s] (every pair t, s: the additive score's sum)",
                 lambda Q, K: Q[:, :, None, :] + K.transpose(1, 0, 2)[None],
                 (lambda g, y, Q, K: g.sum(axis=2),
                  lambda g, y, Q, K: g.sum(axis=0).transpose(1, 0, 2)),
                 lambda y, ybar, q, k: (sum_s(ybar), sum_t(ybar)),
                 lambda q, k: q + k),
    SequenceRule("tanh", "tanh elementwise (its derivative from the elementwise rule table)",
                 np.tanh,
                 (lambda g, y, U: g * _elementwise_derivative(sp.tanh)(U, y),),
                 lambda y, ybar, u: (sp.diff(sp.tanh(u), u).subs(sp.tanh(u), y) * ybar,),
                 lambda u: sp.tanh(u)),
    SequenceRule("project", "e[t, s] = v^T p[t, s] (the dot product with a parameter vector)",
                 lambda P, v: P @ v,
                 (lambda g, y, P, v: g[..., None] * v,
                  lambda g, y, P, v: _ein("tns,tnsa->a")(g, P)),
                 lambda y, ybar, p, v: (ybar * v, sum_t(sum_s(ybar, p))),
                 lambda p, v: dot(v, p)),
    SequenceRule("softmax", "a[t] = softmax over s of e[t, s] (masked positions get 0)",
                 _masked_softmax,
                 (lambda g, y, E, mask=None: y * (g - (y * g).sum(axis=-1, keepdims=True)),),
                 lambda y, ybar, e: (y * (ybar - sum_s(y, ybar)),),
                 lambda e: softmax_s(e)),
    contraction("context", "c[t] = sum over s of a[t, s] hbar[s] (reads every encoder step)", "tns,snc->tnc",
                lambda y, ybar, a, m: (dot(m, ybar), sum_t(a * ybar)), lambda a, m: sum_s(a, m)),
)}


@functools.lru_cache(maxsize=None)
def _elementwise_derivative(function_class):
    """``f'(u)`` as NumPy from the elementwise rule table: ``(u, f(u)) -> f'(u)``."""
    u, y = sp.Dummy("u"), sp.Dummy("y")
    expr = derivative(function_class(u), u).subs(function_class(u), y)
    return lambdify_numpy((u, y), expr)


def sequence_rule(name) -> SequenceRule:
    """The rule of an operation over source positions, or a clear error."""
    try:
        return SEQUENCE_RULES[name]
    except KeyError:
        raise MissingRuleError(f"No rule for the operation {name!r} over source positions; known: "
                               f"{sorted(SEQUENCE_RULES)}. Add a SequenceRule to symrnn.engine.sequence_rules.SEQUENCE_RULES.") \
            from None

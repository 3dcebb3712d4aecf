"""The Pascanu-Mikolov-Bengio bound and the scale where its ``gamma sigma_max(W)`` is 1.

For a cell whose step Jacobian is ``diag(f'(a_t)) W`` (every vanilla RNN,
whatever its elementwise ``f``), ``||dh_T/dh_t||_2 <= (gamma sigma_max(W))^(T-t)``
with ``gamma = sup |f'|`` (Pascanu, Mikolov and Bengio 2013).  ``gamma`` is read
from the cell's own update equation: the derivative of ``f`` is taken by SymPy
and its supremum found numerically on a fine grid (1 for tanh and relu, 1/4 for
sigmoid).  Gated cells have no such one-matrix bound; for them (and for every
cell) the product of the step norms ``prod_t ||J_t||_2`` bounds the measured
norm along the trajectory, by submultiplicativity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..engine.bptt import Diag
from ..engine.functions import lambdify_numpy
from ..engine.symbols import tsym


@dataclass(frozen=True)
class PascanuBound:
    """The Pascanu-Mikolov-Bengio bound ``(gamma sigma_max(W))^k`` of a vanilla cell.

    Attributes
    ----------
    state : str
        The cell's state.
    matrix : str
        The name of the recurrent weight ``W``.
    gamma : float
        ``sup |f'|`` of the activation (1 for tanh and relu, 1/4 for sigmoid).
    activation : str
    """

    state: str
    matrix: str
    gamma: float
    activation: str

    def sigma_max(self, params) -> float:
        """The largest singular value of the recurrent weight."""
        return float(np.linalg.norm(np.asarray(params[self.matrix], dtype=np.float64), 2))

    def rate(self, params) -> float:
        """``ln(gamma sigma_max(W))``: the bound's growth rate, natural log per step."""
        value = self.gamma * self.sigma_max(params)
        return float(np.log(value)) if value > 0 else -np.inf

    def log_bound(self, params, lags) -> np.ndarray:
        """``ln`` of the bound at each lag."""
        return self.rate(params) * np.asarray(lags, dtype=np.float64)

    def critical_scale(self, params, scale) -> float:
        """The scale at which ``gamma sigma_max(W) = 1``, for weights proportional to their scale: below it
        the bound proves vanishing (a sufficient condition; the measured transition lies elsewhere)."""
        value = self.gamma * self.sigma_max(params)
        return float(scale / value) if value > 0 else np.inf


def pascanu_bound(model):
    """The :class:`PascanuBound` of a vanilla-RNN-like cell, ``None`` for other cells.

    The cell qualifies when it has one state whose step Jacobian is ``Diag(v) W``
    and whose update is ``s_t = f(a_t)`` for an elementwise ``f`` of one argument.

    Examples
    --------
    >>> import symrnn as sr
    >>> from symrnn.decay import pascanu_bound
    >>> pascanu_bound(sr.Model("rnn-sigmoid", D=2, H=3, loss="upstream"))
    PascanuBound(state='h', matrix='W', gamma=0.25, activation='sigmoid')
    >>> pascanu_bound(sr.Model("lstm", D=2, H=3, loss="upstream")) is None
    True
    """
    cell = model.cell
    if len(cell.states) != 1:
        return None
    (s,) = cell.states
    J = model.derive().step_jacobians[(s, s)]
    if not isinstance(J, sp.Mul):
        return None
    _, factors = J.args_cnc()
    if len(factors) != 2 or not isinstance(factors[0], Diag) or not isinstance(factors[1], sp.Symbol):
        return None
    update = next(e for e in cell.equations if e.target == tsym(s))
    rhs = update.rhs
    if not isinstance(rhs, sp.Function) or len(rhs.args) != 1 or not isinstance(rhs.args[0], sp.Symbol):
        return None
    u = sp.Dummy("u")
    derivative = sp.diff(type(rhs)(u), u)
    grid = np.concatenate([np.linspace(-60, 60, 240001), [0.0]])
    values = np.broadcast_to(lambdify_numpy([u], derivative)(grid), grid.shape)
    gamma = float(np.max(np.abs(values)))
    return PascanuBound(s, factors[1].name, gamma, type(rhs).__name__)


def log_step_norms(chunk, n=0) -> np.ndarray:
    """``ln ||J_t||_2`` for every step of a chunk (the product of these bounds the product's norm)."""
    with np.errstate(divide="ignore"):
        if getattr(chunk, "vectors", None) is not None:  # an implicit chunk: each J_t formed from its terms in turn
            eye = np.eye(chunk.layout.size)
            return np.log(np.array([np.linalg.norm(chunk.apply(t, eye, n), 2) for t in range(chunk.C)]))
        return np.log(np.linalg.norm(chunk.full(n), 2, axis=(-2, -1)))

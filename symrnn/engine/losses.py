"""Losses summed over the output steps: one table entry each.

Every loss gives its value and its gradient with respect to the readout in
NumPy, and the same gradient as a SymPy equation for the derivation, like a
row of autograd's VJP table.  ``reduction="sum"`` adds over time and batch;
``"mean"`` divides by the number of scored steps (``T_out N`` when none is
masked), times ``K`` for squared error: PyTorch's ``CrossEntropyLoss`` (with
``ignore_index``) and ``MSELoss`` conventions; ``"token-mean"`` is the same
(Deep Learning from Scratch 2's name for it, ``TimeSoftmaxWithLoss``);
``"batch-mean"`` divides by ``N`` only (sum over time, mean over the batch:
CS231n's ``temporal_softmax_loss``).

A ``mask`` of shape ``(T_out, N)`` (true: scored) leaves steps out of the loss;
integer class targets equal to ``IGNORE_LABEL`` (-1) are masked too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..errors import UnknownNameError
from .symbols import tsym
from ..validation import look_up

REDUCTIONS = ("sum", "mean", "batch-mean", "token-mean")
IGNORE_LABEL = -1


def scale_of(reduction, mask, per_step_size=1):
    """The factor of a reduction: ``mask`` is the (T_out, N) array of scored steps."""
    T, N = mask.shape
    if reduction == "sum":
        return 1.0
    if reduction == "batch-mean":
        return 1.0 / N
    count = int(mask.sum())  # mean, token-mean: over the scored steps
    return 1.0 / (max(count, 1) * per_step_size)


def _symbolic_scale(reduction, per_step_size=1):
    return {"sum": sp.Integer(1), "mean": 1 / (sp.Symbol("T_out") * sp.Symbol("N") * per_step_size),
            "batch-mean": 1 / sp.Symbol("N"),
            "token-mean": 1 / (sp.Symbol("n_tokens") * per_step_size)}[reduction]


@dataclass(frozen=True)
class Loss:
    name: str
    needs_readout: bool

    def check_reduction(self, reduction):
        if reduction not in REDUCTIONS:
            raise UnknownNameError(f"Unknown reduction {reduction!r}; expected one of {REDUCTIONS}.")

    def hessian_vector_terms(self, O, Y, dO, reduction, mask=None):
        """The absolute values of the terms :meth:`hessian_vector` sums, entry by entry: the scale of
        its rounding in correct code that groups them otherwise (the verifier's error model)."""
        return np.abs(self.hessian_vector(O, Y, dO, reduction, mask))


def _softmax(O):
    Z = O - O.max(axis=-1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=-1, keepdims=True), Z - np.log(E.sum(axis=-1, keepdims=True))


def _one_hot_or_probs(Y, K, dtype):
    if np.issubdtype(Y.dtype, np.integer):
        P = np.zeros(Y.shape + (K,), dtype=dtype)
        np.put_along_axis(P, Y[..., None], 1, axis=-1)
        return P
    return Y.astype(dtype, copy=False)


class CrossEntropy(Loss):
    """Softmax cross-entropy; targets are class indices ``(T_out, N)`` or
    probability vectors ``(T_out, N, K)``."""

    def value_and_grad(self, O, Y, reduction, mask=None):
        T, N, K = O.shape
        mask = np.ones((T, N), dtype=bool) if mask is None else mask
        P = _one_hot_or_probs(Y, K, O.dtype) * mask[..., None]
        Yhat, logp = _softmax(O)
        scale = scale_of(reduction, mask)
        value = -(P * logp).sum() * scale
        grad = (Yhat * P.sum(axis=-1, keepdims=True) - P) * scale
        return value, grad.astype(O.dtype, copy=False)

    def hessian_vector(self, O, Y, dO, reduction, mask=None):
        """``d^2 L/dO^2 dO``: ``scale * sum(y) * (p * dO - p <p, dO>)`` per step (``p = softmax(O)``)."""
        T, N, K = O.shape
        mask = np.ones((T, N), dtype=bool) if mask is None else mask
        weight = (_one_hot_or_probs(Y, K, O.dtype) * mask[..., None]).sum(axis=-1, keepdims=True)
        Yhat = _softmax(O)[0]
        Pd = Yhat * dO
        return (Pd - Yhat * Pd.sum(axis=-1, keepdims=True)) * weight * scale_of(reduction, mask)

    def hessian_vector_terms(self, O, Y, dO, reduction, mask=None):
        """``|p * dO| + p <p, |dO|>`` scaled as :meth:`hessian_vector`: near a saturated softmax its two
        terms cancel, and a correct product keeps only their absolute accuracy."""
        T, N, K = O.shape
        mask = np.ones((T, N), dtype=bool) if mask is None else mask
        weight = (_one_hot_or_probs(Y, K, O.dtype) * mask[..., None]).sum(axis=-1, keepdims=True)
        Yhat = _softmax(O)[0]
        Pd = np.abs(Yhat * dO)
        return (Pd + Yhat * Pd.sum(axis=-1, keepdims=True)) * weight * scale_of(reduction, mask)

    def symbolic(self, logits, reduction):
        t, k, K = sp.symbols("t k K", integer=True, positive=True)
        y, yhat = sp.IndexedBase("y"), sp.IndexedBase("yhat")
        per_step = -sp.Sum(y[t, k] * sp.log(yhat[t, k]), (k, 1, K))
        grad = (tsym("yhat") - tsym("y")) * _symbolic_scale(reduction)
        return {"per_step": per_step,
                "readout": sp.Eq(tsym("yhat"), sp.Function("softmax")(tsym(logits)), evaluate=False),
                "gradient": sp.Eq(tsym(logits, bar=True), grad, evaluate=False)}


@dataclass(frozen=True)
class SquaredError(Loss):
    """Squared error ``weight * sum_k (o_k - y_k)^2``; targets ``(T_out, N, K)``.  ``mse`` has
    weight 1 (PyTorch's ``MSELoss``), ``half-mse`` weight 1/2 (CS231n, most textbooks)."""

    weight: sp.Rational = sp.Integer(1)

    def value_and_grad(self, O, Y, reduction, mask=None):
        mask = np.ones(O.shape[:2], dtype=bool) if mask is None else mask
        scale = scale_of(reduction, mask, O.shape[-1]) * float(self.weight)
        R = (O - Y) * mask[..., None]
        return (R * R).sum() * scale, (2 * scale) * R

    def hessian_vector(self, O, Y, dO, reduction, mask=None):
        """``d^2 L/dO^2 dO = 2 * weight * scale * dO`` on the scored steps."""
        mask = np.ones(O.shape[:2], dtype=bool) if mask is None else mask
        return (2 * scale_of(reduction, mask, O.shape[-1]) * float(self.weight)) * dO * mask[..., None]

    def symbolic(self, logits, reduction):
        t, k, K = sp.symbols("t k K", integer=True, positive=True)
        y, o = sp.IndexedBase("y"), sp.IndexedBase(logits)
        per_step = self.weight * sp.Sum((o[t, k] - y[t, k]) ** 2, (k, 1, K))
        grad = 2 * self.weight * (tsym(logits) - tsym("y")) * _symbolic_scale(reduction, sp.Symbol("K"))
        return {"per_step": per_step, "gradient": sp.Eq(tsym(logits, bar=True), grad, evaluate=False)}


class Upstream(Loss):
    """The layer view: targets are given upstream gradients ``dL/dh_t``,
    shape ``(T_out, N, H)``; the loss is ``sum_t <G_t, h_t>``."""

    def value_and_grad(self, Hs, G, reduction, mask=None):
        if mask is not None:
            G = G * mask[..., None]
        return (Hs * G).sum(), G

    def hessian_vector(self, Hs, G, dH, reduction, mask=None):
        """The loss is linear in the states: its Hessian is zero."""
        return np.zeros_like(dH)

    def symbolic(self, state, reduction, taken=()):
        """``taken``: the names the cell already uses (the LSTM's gate ``g``); the upstream gradient
        is ``g`` unless the cell has a ``g``, then ``gamma``."""
        name = next(n for n in ("g", "gamma", "g_up") if n not in set(taken))
        t, k, H = sp.symbols("t k H", integer=True, positive=True)
        g, h = sp.IndexedBase(name), sp.IndexedBase(state)
        return {"per_step": sp.Sum(g[t, k] * h[t, k], (k, 1, H)), "gradient": None,
                "external": {state: tsym(name)}}


LOSSES = {
    "cross-entropy": CrossEntropy("cross-entropy", True),
    "mse": SquaredError("mse", True),
    "half-mse": SquaredError("half-mse", True, sp.Rational(1, 2)),
    "upstream": Upstream("upstream", False),
}


def get_loss(name: str) -> Loss:
    return look_up(LOSSES, name, "loss")


def cross_entropy_ids(O, Y, reduction, mask=None):
    """The softmax cross-entropy of :class:`symrnn.engine.losses.CrossEntropy` for class indices ``Y`` (T, N), in
    fewer passes over the (T, N, K) logits: ``(value, dL/dO)``, the same reductions (:func:`scale_of`)."""
    mask = np.ones(Y.shape, dtype=bool) if mask is None else mask
    scale = scale_of(reduction, mask)
    Z = O - O.max(axis=-1, keepdims=True)
    picked = np.take_along_axis(Z, Y[..., None], axis=-1)[..., 0]
    grad = np.exp(Z, out=Z)
    total = grad.sum(axis=-1)
    value = float(((np.log(total) - picked) * mask).sum()) * scale
    grad /= total[..., None]
    flat = grad.reshape(-1, grad.shape[-1])
    flat[np.arange(Y.size), Y.reshape(-1)] -= 1.0  # one target per row: no repeated index
    if not mask.all():
        grad *= (mask * scale)[..., None]
    elif scale != 1.0:
        grad *= scale
    return value, grad

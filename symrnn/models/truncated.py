"""Truncated BPTT as a model of its own: the exact gradient a TBPTT(k1, k2) trainer uses.

Williams and Peng's TBPTT(k1, k2) runs the forward pass over the whole
sequence, carrying the state, and every ``k1`` steps (and at the end) it takes
the gradient of the losses of the steps since the previous update, sent back
through the last ``k2`` steps only: the state ``k2`` steps back is a constant
(``h.detach()`` in PyTorch).  min-char-rnn's chunks are ``k1 = k2 = k``: the
state crosses chunks, the gradient does not.  ``k1 = 1`` sends each step's loss
back ``k2`` steps.  A last, shorter update (``T`` not a multiple of ``k1``) keeps the
window's ``k2 - k1`` steps before its first scored step, so that with ``k1 = k2`` every
window is one chunk.

The result is not the derivative of any loss, so finite differences cannot
check it; it is a sum of exact gradients of windows of the sequence, each
computed by the model's own generated code (:meth:`Model.loss_and_grads` on the
window, from the carried state, with the window's scored steps masked in).
Each update's loss is the declared reduction over its own scored steps
(``mean``: over that update's steps, as a trainer that calls ``loss.backward()``
per chunk); the returned loss and gradients are the sums over updates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError


@dataclass(frozen=True)
class Truncation:
    """TBPTT(k1, k2): an update every ``k1`` steps, each sending its losses back ``k2`` steps."""

    k1: int
    k2: int

    def __post_init__(self):
        for name in ("k1", "k2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ShapeError(f"Truncation needs positive integers, got {name}={value!r}.")
        if self.k2 < self.k1:
            raise ShapeError(f"Truncation(k1={self.k1}, k2={self.k2}): k2 < k1 would leave the losses of the first "
                             f"k1 - k2 steps of each update without a path back; use k2 >= k1 (k1 = k2 = k for "
                             f"min-char-rnn's chunks).")

    def updates(self, T: int):
        """``(first step of the window, first scored step, end)`` of each update, steps from 0."""
        out = []
        for end in list(range(self.k1, T, self.k1)) + [T]:
            start_scored = end - self.k1 if end % self.k1 == 0 else end - end % self.k1
            out.append((max(0, start_scored - (self.k2 - self.k1)), start_scored, end))
        return out

    def __str__(self):
        return f"TBPTT(k1={self.k1}, k2={self.k2})"

    def declaration(self) -> str:
        """How a verification declares it."""
        return f"truncation={self.k1}" if self.k1 == self.k2 else f"truncation=({self.k1}, {self.k2})"

    def to_json(self) -> dict:
        return {"kind": "truncation", "k1": self.k1, "k2": self.k2, "text": f"truncated BPTT, {self}",
                "declare": self.declaration()}


def as_truncation(value) -> Truncation:
    """``k`` (chunks of k), ``(k1, k2)`` or a :class:`Truncation`."""
    if isinstance(value, Truncation):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Truncation(*value)
    return Truncation(value, value)


def truncated_loss_and_grads(model, params, inputs, targets, truncation, h0=None, mask=None, reset_state=False):
    """The loss and the exact gradients of truncated BPTT (see the module's docstring).

    ``model`` is a many-to-many :class:`~symrnn.models.model.Model`; ``truncation`` is ``k``,
    ``(k1, k2)`` or a :class:`Truncation`.  ``reset_state=True`` starts every window from
    ``h0`` instead of the carried state (a common mistake; for naming it).
    Returns ``(loss, grads)`` with the keys of :meth:`Model.loss_and_grads`; ``dL/dx``
    holds what each step's input receives, summed over the windows that contain it;
    ``dL/dh0`` what reaches the initial state (from the windows that start at step 0).
    """
    tr = as_truncation(truncation)
    if model.architecture.name != "many-to-many":
        raise ShapeError(f"Truncated BPTT is defined here for many-to-many models (a loss at every step); the "
                         f"model is {model.architecture.name!r}.")
    params_c, X, cache = model.run_cell(params, inputs, h0)
    targets = np.asarray(targets)
    T, N = X.shape[0], X.shape[1]
    if targets.ndim == 0 or targets.shape[0] != T:
        raise ShapeError(f"targets has shape {targets.shape}; expected a leading time axis of T = {T} steps.")
    scored = np.ones((T, N), dtype=bool) if mask is None else model._check_mask(mask, targets, N)
    first = {s: cache[f"S_{s}"][0] for s in model.state_names}
    loss, grads = 0.0, None
    for start, first_scored, end in tr.updates(T):
        window_mask = np.zeros((end - start, N), dtype=bool)
        window_mask[first_scored - start:] = scored[first_scored:end]
        if not window_mask.any():
            continue
        states = first if reset_state else {s: cache[f"S_{s}"][start] for s in model.state_names}
        value, g = model.loss_and_grads(params_c, X[start:end], targets[start:end], states, window_mask)
        loss += value
        if grads is None:
            grads = {k: np.zeros_like(v) for k, v in g.items() if k != model.input_name}
            grads[model.input_name] = np.zeros_like(X)
        for k, v in g.items():
            if k == model.input_name:
                grads[k][start:end] += v
            elif k in model.param_shapes or start == 0 or reset_state:
                grads[k] += v
    if grads is None:
        raise ShapeError("Every step is masked out: truncated BPTT has no loss to differentiate.")
    return loss, grads

"""Gradient clipping as trainers apply it after the backward pass.

* ``value``: every entry clipped to ``[-c, c]`` (min-char-rnn's ``np.clip(dparam, -5, 5,
  out=dparam)``; PyTorch's ``clip_grad_value_``);
* ``global-norm``: all parameter gradients scaled by ``min(1, c / ||g||)``, ``||g||`` the
  norm of all of them together (PyTorch's ``clip_grad_norm_``, Keras's ``global_clipnorm``);
* ``norm``: each parameter's gradient scaled by ``min(1, c / ||g_p||)`` (Keras's ``clipnorm``).

Only parameters are clipped; gradients with respect to inputs and initial states are not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, UnknownNameError

KINDS = ("value", "global-norm", "norm")


@dataclass(frozen=True)
class Clipping:
    kind: str
    threshold: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UnknownNameError(f"Unknown clipping {self.kind!r}; expected one of {KINDS}.")
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            raise ParameterError(f"A clipping threshold must be a positive number, got {self.threshold!r}.")

    def __str__(self):
        what = {"value": "element-wise to [-c, c]", "global-norm": "to a global norm of at most c",
                "norm": "each parameter's gradient to a norm of at most c"}[self.kind]
        return f"clipping {what}, c = {self.threshold:.6g}"

    def declaration(self) -> str:
        """How a verification declares it."""
        return f"clip=({self.kind!r}, {self.threshold:.6g})"

    def to_json(self) -> dict:
        return {"kind": self.kind, "threshold": self.threshold, "text": str(self), "declare": self.declaration()}


def as_clipping(value) -> Clipping | None:
    """``None``, a :class:`Clipping`, or ``(kind, threshold)``."""
    if value is None or isinstance(value, Clipping):
        return value
    kind, threshold = value
    return Clipping(kind, float(threshold))


def clip_gradients(grads: dict, clipping: Clipping, params) -> dict:
    """``grads`` with the entries named in ``params`` clipped (a new dict; the arrays are new)."""
    out = dict(grads)
    c = clipping.threshold
    if clipping.kind == "value":
        for k in params:
            out[k] = np.clip(grads[k], -c, c)
    elif clipping.kind == "global-norm":
        norm = float(np.sqrt(sum(float(np.sum(np.square(grads[k]))) for k in params)))
        for k in params:
            out[k] = grads[k] * min(1.0, c / norm) if norm > 0 else np.array(grads[k])
    else:
        for k in params:
            norm = float(np.linalg.norm(grads[k]))
            out[k] = grads[k] * min(1.0, c / norm) if norm > 0 else np.array(grads[k])
    return out

"""Gradient clipping as trainers apply it after the backward pass.

* ``value``: every entry clipped to ``[-c, c]`` (min-char-rnn's ``np.clip(dparam, -5, 5,
  out=dparam)``; PyTorch's ``clip_grad_value_``);
* ``global-norm``: all parameter gradients scaled by ``min(1, c / (||g|| + eps))``, ``||g||`` the
  norm of all of them together: PyTorch's ``clip_grad_norm_`` adds ``eps = 1e-6``
  (:data:`TORCH_EPS`), Keras's ``global_clipnorm`` (``tf.clip_by_global_norm``) and most
  hand-written code none; ``("global-norm", c, eps)`` declares which, and ``("global-norm", c)``
  leaves it open: the verifier takes the one of the two the code's gradients follow;
* ``norm``: each parameter's gradient scaled by ``min(1, c / ||g_p||)`` (Keras's ``clipnorm``).

Only parameters are clipped; gradients with respect to inputs and initial states are not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, UnknownNameError

KINDS = ("value", "global-norm", "norm")
TORCH_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6)


@dataclass(frozen=True)
class Clipping:
    kind: str
    threshold: float
    eps: float | None = None  # global-norm: c / (norm + eps); None: 0 or PyTorch's, as the code does
    states: bool = False  # value: the initial states' gradients (dh0, dc0) clipped too (a learned h0)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UnknownNameError(f"Unknown clipping {self.kind!r}; expected one of {KINDS}.")
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            raise ParameterError(f"A clipping threshold must be a positive number, got {self.threshold!r}.")
        if self.eps is not None and (self.kind != "global-norm" or not (np.isfinite(self.eps) and self.eps >= 0)):
            raise ParameterError(f"An epsilon is declared for global-norm clipping only, a number >= 0 (PyTorch's "
                                 f"clip_grad_norm_ adds {TORCH_EPS:g} to the norm), got {self.kind!r}, {self.eps!r}.")
        if self.states and self.kind != "value":
            raise ParameterError("Only element-wise clipping ('value', c, 'states') can cover the initial states' "
                                 "gradients too; norm clipping is of the parameters' gradients.")

    def __str__(self):
        what = {"value": "element-wise to [-c, c]", "global-norm": "to a global norm of at most c",
                "norm": "each parameter's gradient to a norm of at most c"}[self.kind]
        if self.eps == TORCH_EPS:  # scaled by c / (norm + 1e-6)
            return f"PyTorch's clip_grad_norm_, c = {self.threshold:.6g}"
        if self.states:
            return f"clipping to [-c, c], dh0 too, c = {self.threshold:.6g}"
        how = f" (c / (norm + {self.eps:g}))" if self.eps else ""
        return f"clipping {what}, c = {self.threshold:.6g}{how}"

    def declaration(self) -> str:
        """How a verification declares it (PyTorch's epsilon and none are both taken from the code)."""
        eps = "" if self.eps in (None, 0.0, TORCH_EPS) else f", {self.eps:g}"
        return f"clip=({self.kind!r}, {self.threshold:.6g}{eps}{', states' if self.states else ''})".replace(
            ", states)", ", 'states')")

    def conventions(self) -> list:
        """The clippings this declaration may mean: global-norm's without and with PyTorch's epsilon
        when none was declared, else itself."""
        if self.kind != "global-norm" or self.eps is not None:
            return [self]
        return [Clipping(self.kind, self.threshold, 0.0), Clipping(self.kind, self.threshold, TORCH_EPS)]

    def to_json(self) -> dict:
        return {"kind": self.kind, "threshold": self.threshold, "text": str(self), "declare": self.declaration()}


def as_clipping(value) -> Clipping | None:
    """``None``, a :class:`Clipping`, ``(kind, threshold)``, ``("global-norm", threshold, eps)`` or
    ``("value", threshold, "states")`` (the initial states' gradients clipped too)."""
    if value is None or isinstance(value, Clipping):
        return value
    if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
        raise UnknownNameError(f"clip={value!r}: give (kind, threshold), e.g. ('value', 5) or ('global-norm', 1), "
                               f"('global-norm', threshold, eps) or ('value', threshold, 'states').")
    if len(value) == 3 and isinstance(value[2], str):
        if value[2] != "states":
            raise UnknownNameError(f"clip={value!r}: the third item is 'states' (the initial states' gradients "
                                   f"clipped too) or global-norm's epsilon, a number.")
        return Clipping(value[0], float(value[1]), states=True)
    return Clipping(value[0], float(value[1]), None if len(value) == 2 else float(value[2]))


def clip_gradients(grads: dict, clipping: Clipping, params, states=()) -> dict:
    """``grads`` with the entries named in ``params`` clipped (a new dict; the arrays are new), and those
    named in ``states`` (the initial states' keys) when the clipping covers them."""
    out = dict(grads)
    c = clipping.threshold
    if clipping.kind == "value":
        for k in list(params) + [k for k in states if clipping.states and k in grads]:
            out[k] = np.clip(grads[k], -c, c)
    elif clipping.kind == "global-norm":
        norm = float(np.sqrt(sum(float(np.sum(np.square(grads[k]))) for k in params)))
        for k in params:
            out[k] = grads[k] * min(1.0, c / (norm + (clipping.eps or 0.0))) if norm > 0 else np.array(grads[k])
    else:
        for k in params:
            norm = float(np.linalg.norm(grads[k]))
            out[k] = grads[k] * min(1.0, c / norm) if norm > 0 else np.array(grads[k])
    return out

"""Exact judgement: each entry against symrnn's float64 gradient, with a tolerance from the problem.

The tolerance of an entry is its rounding scale (the backward pass evaluated on
absolute values, :meth:`symrnn.Model.gradient_scales`) times the unit roundoff
of the user's precision times the length of the computation::

    tol = 64 * u * (T + 1) * (D + H + K + 1) * scale + 4 * u64 * |exact|

so that a 1% error in an entry a thousand times smaller than the largest is
still caught (its own scale is small), while a correct float64 implementation
never fails (rounding stays far below ``u * length * scale``).  Code that
computes in float32 (float32 outputs, or a forward that agrees only to float32
precision) is judged with ``u = 2**-24``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

U64 = 2.0 ** -53
U32 = 2.0 ** -24


@dataclass
class DtypeModel:
    name: str  # "float64" or "float32"
    reason: str

    @property
    def unit(self):
        return U32 if self.name == "float32" else U64


def length_factor(model, T) -> float:
    s = model.sizes
    return (T + 1) * (s["D"] + s["H"] + (s["K"] or 0) + 1)


SAFETY = 64  # rounding of a correct implementation stays far below this multiple (tests/test_verify.py)


def tolerance(exact, scale, unit, factor):
    return SAFETY * unit * factor * np.asarray(scale) + 4 * U64 * np.abs(exact)


@dataclass
class BlockVerdict:
    block: str
    max_abs_error: float
    ok: bool


@dataclass
class GradientVerdict:
    name: str  # the user's name (dWx, dh0 ...)
    user_norm: float
    exact_norm: float
    max_abs_error: float
    tolerance: float  # at the worst entry
    ok: bool
    worst_index: tuple = ()
    user_value: float = 0.0  # at the worst entry
    exact_value: float = 0.0
    blocks: list = field(default_factory=list)  # per gate block, for stacked gradients

    def to_json(self):
        return {"name": self.name, "max_abs_error": self.max_abs_error, "tolerance": self.tolerance,
                "ok": self.ok, "user_norm": self.user_norm, "exact_norm": self.exact_norm,
                "worst_index": list(self.worst_index), "user_value": self.user_value,
                "exact_value": self.exact_value,
                "blocks": [{"block": b.block, "max_abs_error": b.max_abs_error, "ok": b.ok} for b in self.blocks]}


def judge_array(name, user, exact, scale, unit, factor, blocks=None) -> GradientVerdict:
    user, exact = np.asarray(user, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    tol = tolerance(exact, scale, unit, factor)
    error = np.abs(user - exact)
    bad = ~np.isfinite(user)
    ratio = np.where(bad, np.inf, error / np.maximum(tol, np.finfo(float).tiny))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
    verdict = GradientVerdict(
        name, float(np.linalg.norm(np.nan_to_num(user))), float(np.linalg.norm(exact)),
        float(np.max(np.where(bad, np.inf, error), initial=0.0)), float(tol[worst]) if ratio.size else 0.0,
        bool(np.all(ratio <= 1.0)), tuple(int(i) for i in worst),
        float(user[worst]) if ratio.size else 0.0, float(exact[worst]) if ratio.size else 0.0)
    for block, index in (blocks or []):
        verdict.blocks.append(BlockVerdict(block, float(np.max(np.where(bad, np.inf, error)[index], initial=0.0)),
                                           bool(np.all(ratio[index] <= 1.0))))
    return verdict

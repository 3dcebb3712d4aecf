"""Exact judgement: each entry against symrnn's float64 gradient, with a tolerance from the problem.

A correct implementation differs from the exact gradient only by rounding, and
rounding acts like a relative perturbation of every number the computation
touches, of the size of the unit roundoff ``u``.  So each entry's tolerance is
measured on the problem itself: the exact gradient is recomputed (in float64)
with the parameters, inputs, initial states and upstream gradients perturbed
by independent relative amounts up to ``4 u``, a few times, and

    tol = SAFETY * max |g(perturbed) - g| + 8 u |g| + 8 u sqrt(L) S

entry by entry, ``L = (T + 1)(D + H + K + 1)`` counting the roundings that
reach an entry and ``S`` the sum of the absolute values of the terms of the
entry's last sums (over time, batch and gates): the absolute accuracy of
saturated gates (``sigmoid`` near 0 or 1 is accurate to ``u``, not to ``u``
relative) and of cancelling sums.  An ill-conditioned entry (a long chaotic sequence, a
cancelling sum) gets the wide tolerance its rounding needs; a well-conditioned
entry a thousand times smaller than the largest keeps a tolerance far below a
1% error.  Code that computes in float32 (float32 outputs, or a forward that
agrees only to float32 precision) is judged with ``u = 2**-24``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .problems import loss_and_grads

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
    """How many roundings a step's forward accumulates, times the steps: the forward check's scale."""
    s = model.sizes
    return (T + 1) * (s["D"] + s["H"] + (s["K"] or 0) + 1)


SAFETY = 32  # a correct implementation's error stays far below this multiple of the spread (tests/test_verify.py)
SAMPLES = 3


def perturbation_tolerance(model, problem, grads, unit, samples=SAMPLES, seed=12345) -> dict:
    """Each entry's tolerance for the error model with unit roundoff ``unit`` (see the module docstring)."""
    rng = np.random.default_rng(seed)

    def jitter(a):
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.floating):
            return a  # class indices are exact
        return a * (1 + 4 * unit * rng.uniform(-1, 1, size=a.shape))

    spread = {k: np.zeros(np.shape(v)) for k, v in grads.items()}
    for _ in range(samples):
        _, g = loss_and_grads(model, problem, {k: jitter(v) for k, v in problem.params.items()}, jitter(problem.x),
                              jitter(problem.targets), {s: jitter(v) for s, v in problem.h0.items()},
                              {s: jitter(v) for s, v in (problem.final_grads or {}).items()})
        for k in spread:
            spread[k] = np.maximum(spread[k], np.abs(g[k] - grads[k]))
    terms = term_scales(model, problem)
    floor = 8 * unit * np.sqrt(length_factor(model, problem.T))
    return {k: SAFETY * spread[k] + 8 * unit * np.abs(grads[k]) + floor * terms.get(k, np.abs(grads[k]))
            for k in grads}


def term_scales(model, problem) -> dict:
    """Sum of |terms| of each entry's last sums (over time, batch, gates and the readout's classes)."""
    from .mutants import backward, readout_upstream

    if getattr(model, "num_layers", None) is not None:  # a stacked model: the entries' own size stands in
        return {}
    if model.readout is None:
        upstream = np.asarray(problem.targets, dtype=float)
        if problem.mask is not None:
            upstream = upstream * problem.mask[..., None]
        return backward(model, problem.params, problem.x, problem.h0, upstream, problem.final_grads,
                        term_scales=True)
    r = readout_upstream(model, problem)
    out = backward(model, r.params, r.X, r.S0, r.upstream, problem.final_grads, term_scales=True)
    out[model.input_name] = out[model.input_name][r.input_steps]
    out["c"] = np.abs(r.dO).sum(axis=(0, 1))
    out["V"] = np.einsum("tnk,tnh->kh", np.abs(r.dO), np.abs(r.Hs))
    return out


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


def judge_array(name, user, exact, tol, blocks=None) -> GradientVerdict:
    user, exact, tol = (np.asarray(a, dtype=np.float64) for a in (user, exact, tol))
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

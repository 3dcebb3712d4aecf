"""Exact judgement: each entry against symrnn's float64 gradient, with a tolerance from the problem.

A correct implementation differs from the exact gradient only by rounding, and
rounding acts like a small perturbation of every number the computation
touches, of the size of the unit roundoff ``u``.  Correct code may be written
many ways (tanh through ``exp`` or as ``2 sigmoid(2a) - 1``, sigmoid through
tanh, derivatives from the pre-activation or from the output, other summation
orders, float32 arithmetic), and each way rounds differently.  What all of them
share is the *error model*: every value is computed to within a few units of
rounding, a bounded activation (tanh, sigmoid, sin, cos) to a few ``u``
*absolute* (``2 sigmoid(2a) - 1`` near ``a = 0``, or ``(e^a - e^-a)/(e^a + e^-a)``,
loses all relative accuracy but keeps the absolute one), anything else to a few
``u`` relative.  So each entry's tolerance is measured on the problem itself:
the exact gradient is recomputed (in float64) a few times with

* the parameters, inputs, initial states and upstream gradients perturbed by
  independent relative amounts up to ``4 u``;
* every value of a function in the forward and the backward (the generated code's
  ``tanh``, ``sigmoid``, ``exp`` ...) perturbed by up to ``4 u (|v| + 1)`` for the
  bounded ones, ``4 u |v|`` for the others;
* every value the backward reads back from the forward (states, gates) perturbed by
  up to ``4 u`` relative,

and

    tol = SAFETY * max |g(perturbed) - g| + 8 u |g| + 8 u sqrt(L) (S + S_max / 10)

entry by entry, ``L = (T + 1)(D + H + K + 1)`` counting the roundings that
reach an entry and ``S`` the sum of the absolute values of the terms of the
entry's last sums (over time, batch and gates), each step's adjoints themselves
summed by the absolute values of their chain-rule terms: the absolute accuracy of
cancelling sums, in whatever grouping correct code evaluates a step's chain rule.  ``S_max`` is the
largest ``S`` of any entry: an entry that is exactly 0 here by an invariance of the model (LRU's phase
at ``T = 1``, sLSTM's ``b_i`` from zero states) is reached by correct code along other routes whose
terms cancel only up to rounding, so no entry is judged against an absolute tolerance below a tenth
of the problem's largest sums' rounding.
The same perturbed runs give the spread of the forward
states: a chaotic forward (large weights, long sequences) in which rounding
grows from step to step is compared with that spread, not called another cell.
An ill-conditioned entry gets the wide tolerance its rounding needs; a
well-conditioned entry a thousand times smaller than the largest keeps a
tolerance far below a 1% error.  Underflow adds ``8 L`` times the smallest normal number (float32
code returns 0 for a gradient of 1e-47).  Code that computes in float32 (float32
outputs, or a forward that agrees only to float32 precision) is judged with
``u = 2**-24``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace

import numpy as np

from ..engine.functions import RULES
from .problems import exact

U64 = 2.0 ** -53
U32 = 2.0 ** -24
#: the unit roundoff of each dtype an error model is built for (half precision: PyTorch and JAX code)
UNITS = {"float64": U64, "float32": U32, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}


@dataclass
class DtypeModel:
    name: str  # "float64", "float32", "float16" or "bfloat16"
    reason: str
    computed_in: str = ""  # "float32": the code returns float64 arrays but computes them in float32

    @property
    def unit(self):
        return UNITS.get(self.name, U64)


def length_factor(model, T) -> float:
    """How many roundings a step's forward accumulates, times the steps: the forward check's scale."""
    s = model.sizes
    return (T + 1) * (s["D"] + s["H"] + (s["K"] or 0) + 1)


UNDERFLOW = 8  # a value below the smallest normal number is rounded to a multiple of the smallest subnormal
TINY = {U64: float(np.finfo(np.float64).tiny), U32: float(np.finfo(np.float32).tiny),
        UNITS["float16"]: float(np.finfo(np.float16).tiny), UNITS["bfloat16"]: float(np.finfo(np.float32).tiny)}
SAFETY = 32  # a correct implementation's error stays far below this multiple of the spread (tests/test_verify.py)
SAMPLES = 3
OTHER_KEYS = 0.1  # the share of the largest sum's absolute accuracy every entry keeps (see perturbation_tolerance)
ROUNDINGS = 4  # each perturbation is up to this many units of rounding
BOUNDED = frozenset({"tanh", "sigmoid", "sin", "cos"})  # computed to an absolute accuracy (see above)
EXACT = frozenset({"relu", "step", "tie_step", "abs", "sgn", "maximum", "minimum"})  # no rounding
# every other function (exp, log, a registered one) is computed to a relative accuracy


class Rounding:
    """Random perturbations of the size of rounding errors, for one unit roundoff.

    One instance per unit (:meth:`for_unit`): the rounded twins of generated code are compiled once
    per block and unit and draw from it; :meth:`reset` makes each spread reproducible."""

    _by_unit: dict = {}

    def __init__(self, unit, seed=0):
        self.unit, self.rng = unit, np.random.default_rng(seed)
        self._twins = weakref.WeakKeyDictionary()  # BlockCode -> its rounded twin

    @classmethod
    def for_unit(cls, unit, seed=0):
        rounding = cls._by_unit.setdefault(unit, cls(unit))
        rounding.reset(seed)
        return rounding

    def reset(self, seed):
        self.rng = np.random.default_rng(seed)

    def relative(self, a):
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.floating):
            return a  # class indices are exact
        return a * (1 + ROUNDINGS * self.unit * self.rng.uniform(-1, 1, size=a.shape))

    def function(self, numpy, absolute):
        def rounded(*args, out=None):
            value = np.asarray(numpy(*args))
            scale = np.abs(value) + 1.0 if absolute else np.abs(value)
            value = value + ROUNDINGS * self.unit * scale * self.rng.uniform(-1, 1, size=value.shape)
            if out is None:
                return value
            out[...] = value
            return out
        return rounded

    def functions(self) -> dict:
        return {name: self.function(rule.numpy, name in BOUNDED) for name, rule in RULES.items()
                if name not in EXACT}

    def block(self, code):
        """``code`` (a :class:`~symrnn.engine.codegen.BlockCode`) with its function values and cached values rounded
        (compiled once per block)."""
        if code not in self._twins:
            self._twins[code] = self._block(code)
        return self._twins[code]

    def _block(self, code):
        twin = code.with_functions(self.functions())
        forward = twin.forward

        def rounded_forward(*args, **kwargs):
            cache = forward(*args, **kwargs)
            for key, value in list(cache.items()):
                if not key.startswith(("S_", "C_")):
                    continue
                if value.flags.writeable:
                    value *= 1 + ROUNDINGS * self.unit * self.rng.uniform(-1, 1, size=value.shape)
                else:  # a let of parameters, computed once (a view over all steps): its one value rounds once
                    once = value[(0,) * (value.ndim - 1)]
                    once = once * (1 + ROUNDINGS * self.unit * self.rng.uniform(-1, 1, size=once.shape))
                    cache[key] = np.broadcast_to(once, value.shape)
            return cache
        twin.forward = rounded_forward
        return twin

    def model(self, model, loss=False):
        """A copy of ``model`` whose generated code rounds as described in the module docstring (and,
        with ``loss``, whose loss Hessian rounds: :class:`RoundedLoss`)."""
        if loss:
            return model.with_blocks(self, loss=lambda rule: RoundedLoss(rule, self))
        return model.with_blocks(self)

    def __call__(self, code):
        """:meth:`block`: a rounding is the transform of a model's blocks (``model.with_blocks``)."""
        return self.block(code)


class RoundedLoss:
    """A loss rule whose Hessian-vector product is off by rounding: each entry moves by up to
    ``4 u`` times the absolute values of the terms it sums (``hessian_vector_terms``)."""

    def __init__(self, rule, rounding):
        self.rule, self.rounding = rule, rounding

    def __getattr__(self, name):
        return getattr(self.rule, name)

    def hessian_vector(self, O, Y, dO, reduction, mask=None):
        value = self.rule.hessian_vector(O, Y, dO, reduction, mask)
        terms = self.rule.hessian_vector_terms(O, Y, dO, reduction, mask)
        return value + ROUNDINGS * self.rounding.unit * terms * self.rounding.rng.uniform(-1, 1, size=value.shape)


@dataclass
class Spread:
    """How far rounding moves the exact answer: per gradient entry, per forward state entry."""

    grads: dict
    states: dict = field(default_factory=dict)
    loss: float = 0.0


def rounding_spread(model, problem, ex, unit, samples=SAMPLES, seed=12345) -> Spread:
    """The largest change of the exact gradients and states over ``samples`` rounded recomputations."""
    rounding = Rounding.for_unit(unit, seed)
    twin = rounding.model(model)
    grads = {k: np.zeros(np.shape(v)) for k, v in ex.grads.items()}
    states = {s: np.zeros(np.shape(v)) for s, v in ex.states.items()}
    loss = 0.0
    for _ in range(samples):
        jittered = replace(problem, params={k: rounding.relative(v) for k, v in problem.params.items()},
                           x=rounding.relative(problem.x), targets=rounding.relative(problem.targets),
                           h0={s: rounding.relative(v) for s, v in problem.h0.items()},
                           final_grads=None if problem.final_grads is None else
                           {s: rounding.relative(v) for s, v in problem.final_grads.items()})
        with np.errstate(all="ignore"):
            other = exact(twin, jittered)
        for k in grads:
            grads[k] = np.maximum(grads[k], np.abs(other.grads[k] - ex.grads[k]))
        for s in states:
            if s in other.states:
                states[s] = np.maximum(states[s], np.abs(other.states[s] - ex.states[s]))
        loss = max(loss, abs(other.loss - ex.loss))
    return Spread(grads, states, loss)


def perturbation_tolerance(model, problem, ex, unit, spread=None) -> dict:
    """Each entry's tolerance for the error model with unit roundoff ``unit`` (see the module docstring)."""
    spread = rounding_spread(model, problem, ex, unit) if spread is None else spread
    terms = term_scales(model, problem)
    floor = 8 * unit * np.sqrt(length_factor(model, problem.T))
    underflow = UNDERFLOW * length_factor(model, problem.T) * TINY[unit]
    scales = {k: terms.get(k, np.abs(g)) for k, g in ex.grads.items()}
    # an entry that is exactly 0 here (an invariance: LRU's phase at T = 1, sLSTM's b_i) may be reached by
    # correct code along another route whose terms cancel only up to rounding: every entry keeps the
    # absolute accuracy of a sum of the problem's size
    overall = OTHER_KEYS * max((float(np.max(a, initial=0.0)) for a in scales.values()), default=0.0)
    return {k: SAFETY * spread.grads[k] + 8 * unit * np.abs(g) + floor * (scales[k] + overall) + underflow
            for k, g in ex.grads.items()}


def term_scales(model, problem) -> dict:
    """Sum of |terms| of each entry's last sums (over time, batch, gates and the readout's classes)."""
    from .mutants import backward, readout_upstream

    if not model.one_cell:  # several cells wired: the entries' own size stands in
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
    tested: bool = True  # the exact block is not all zero in this case (a zero block is right by any code)


@dataclass
class GradientVerdict:
    name: str  # the user's name (dWx, dh0 ...)
    user_norm: float
    exact_norm: float
    max_abs_error: float  # the largest error of any entry
    tolerance: float  # at the worst entry (the largest error / tolerance)
    ok: bool
    worst_index: tuple = ()
    user_value: float = 0.0  # at the worst entry
    exact_value: float = 0.0
    blocks: list = field(default_factory=list)  # per gate block, for stacked gradients
    worst_error: float = 0.0  # the error at the worst entry, beside its tolerance
    not_finite: int = 0  # entries of the user's gradient that are NaN or infinite
    first_not_finite: tuple = ()  # the first of them in index order
    size: int = 0  # entries in all

    def to_json(self):
        return {"name": self.name, "max_abs_error": self.max_abs_error, "tolerance": self.tolerance,
                "ok": self.ok, "user_norm": self.user_norm, "exact_norm": self.exact_norm,
                "worst_index": list(self.worst_index), "user_value": self.user_value,
                "exact_value": self.exact_value, "worst_error": self.worst_error,
                "not_finite": self.not_finite, "first_not_finite": list(self.first_not_finite),
                "blocks": [{"block": b.block, "max_abs_error": b.max_abs_error, "ok": b.ok, "tested": b.tested}
                           for b in self.blocks]}


def judge_array(name, user, exact, tol, blocks=None) -> GradientVerdict:
    with np.errstate(all="ignore"):  # the user's inf and NaN are judged, not warned about
        return _judge_array(name, user, exact, tol, blocks)


def _judge_array(name, user, exact, tol, blocks=None) -> GradientVerdict:
    user, exact, tol = (np.asarray(a, dtype=np.float64) for a in (user, exact, tol))
    error = np.abs(user - exact)
    bad = ~np.isfinite(user)
    ratio = np.where(bad, np.inf, error / np.maximum(tol, np.finfo(float).tiny))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
    verdict = GradientVerdict(
        name, float(np.linalg.norm(user)), float(np.linalg.norm(exact)),  # NaN or inf when the user's is
        float(np.max(np.where(bad, np.inf, error), initial=0.0)), float(tol[worst]) if ratio.size else 0.0,
        bool(np.all(ratio <= 1.0)), tuple(int(i) for i in worst),
        float(user[worst]) if ratio.size else 0.0, float(exact[worst]) if ratio.size else 0.0,
        worst_error=float(np.inf if bad[worst] else error[worst]) if ratio.size else 0.0,
        size=int(user.size), not_finite=int(bad.sum()),
        first_not_finite=tuple(int(i) for i in np.argwhere(bad)[0]) if bad.any() else ())
    for block, index in (blocks or []):
        verdict.blocks.append(BlockVerdict(block, float(np.max(np.where(bad, np.inf, error)[index], initial=0.0)),
                                           bool(np.all(ratio[index] <= 1.0)),
                                           bool(np.max(np.abs(exact[index]), initial=0.0) > 0)))
    return verdict

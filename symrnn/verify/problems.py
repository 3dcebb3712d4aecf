"""The problems a verification runs, and symrnn's exact answers to them.

A :class:`Problem` is one call of the user's code in symrnn's canonical form:
parameters by symrnn's names, time-major inputs, initial states, and either
upstream gradients (layer and step modes) or targets (loss mode).  The
:class:`Exact` answer holds the forward states, the loss, the exact float64
gradients (and, once the error model is chosen, each entry's tolerance:
:func:`symrnn.verify.judge.perturbation_tolerance`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..models.clipping import clip_gradients
from ..models.truncated import truncated_loss_and_grads


#: the end of the label of the long case (:data:`symrnn.verify.api.LONG_T` steps), which the
#: localisation probes only when no shorter case fails
LONG_MARK = "(a long sequence)"


@dataclass
class Problem:
    label: str
    params: dict
    x: np.ndarray  # (T, N, D)
    h0: dict  # state -> (N, size)
    targets: np.ndarray  # upstream dL/dh (T, N, H) or loss targets
    mask: np.ndarray | None = None
    final_grads: dict | None = None  # state -> dL/ds_T from outside (dnext_c)
    truncation: object = None  # a symrnn.models.truncated.Truncation: the exact gradient is truncated BPTT's
    clip: object = None  # a symrnn.models.clipping.Clipping applied to the exact parameter gradients

    @property
    def T(self):
        return self.x.shape[0]

    @property
    def N(self):
        return self.x.shape[1]

    def arrays(self) -> dict:
        """Every array of the case, flat, for saving (``np.savez``)."""
        out = {f"param_{k}": v for k, v in self.params.items()}
        out.update({"x": self.x, "targets": self.targets})
        out.update({f"state0_{k}": v for k, v in self.h0.items()})
        if self.mask is not None:
            out["mask"] = self.mask
        out.update({f"final_grad_{k}": v for k, v in (self.final_grads or {}).items()})
        return out


@dataclass
class Exact:
    loss: float
    grads: dict  # canonical keys: params, input name, "h0", "c0"
    states: dict  # state -> (T, N, size), the states after each step
    tol: dict = field(default_factory=dict)  # same keys as grads: each entry's tolerance


def padding_mask(rng, T: int, N: int):
    """A ``(T, N)`` padding mask of lengths drawn from ``rng`` in ``1..T``, the first sequence full."""
    lengths = rng.integers(1, T + 1, size=N)
    lengths[0] = T
    return np.arange(T)[:, None] < lengths[None, :]


def exact(model, problem: Problem) -> Exact:
    if not model.one_cell:  # several cells wired: their loss and gradients (no states compared)
        loss, grads = loss_and_grads(model, problem)
        return Exact(loss, grads if problem.clip is None else clip_gradients(grads, problem.clip, model.param_shapes,
                                                                             initial_state_keys(model)), {})
    if problem.truncation is not None:
        loss, grads = loss_and_grads(model, problem)
        cache = model.run_cell(problem.params, problem.x, problem.h0)[2]
    else:
        loss, grads, cache = model._loss_grads_and_cache(problem.params, problem.x, problem.targets, problem.h0,
                                                         problem.mask, problem.final_grads)
    if problem.clip is not None:
        grads = clip_gradients(grads, problem.clip, model.param_shapes, initial_state_keys(model))
    states = {s: cache[f"S_{s}"][1:].copy() for s in model.state_names}
    return Exact(loss, grads, states)


def initial_state_keys(model) -> list:
    """The keys of the initial states' gradients (``h0``, ``c0``)."""
    return [model.initial_state_key(s) for s in getattr(model, "state_names", ())] \
        if hasattr(model, "initial_state_key") else []


def loss_and_grads(model, problem: Problem, params=None, x=None, targets=None, h0=None, final_grads=None):
    """The declared loss and gradients of ``problem`` (truncated BPTT's when it declares a truncation),
    with any of its arrays replaced (the error model's perturbations)."""
    params = problem.params if params is None else params
    x = problem.x if x is None else x
    targets = problem.targets if targets is None else targets
    h0 = problem.h0 if h0 is None else h0
    if problem.truncation is not None:
        return truncated_loss_and_grads(model, params, x, targets, problem.truncation, h0, problem.mask)
    return model.loss_and_grads(params, x, targets, h0, problem.mask,
                                problem.final_grads if final_grads is None else final_grads or None)


@dataclass
class Plan:
    """Sizes and values of the problems; the verifier picks what is not given."""

    T: int = 8
    N: int = 3
    scale: float | None = None  # weights uniform in [-scale, scale]; default 1/sqrt(H), as PyTorch
    seed: int = 0
    lengths: tuple = (1, 2, 3)  # shorter sequences also run: bugs of the first steps show there


def positive_states(cell) -> tuple:
    """The states a cell divides by (sLSTM's normaliser ``n``: ``h_t = o_t c_t / n_t``): their initial
    values are drawn positive, as every step of such a cell keeps them (``n_t = f'_t n_{t-1} + i'_t``),
    away from the pole at 0."""
    import sympy as sp

    states = getattr(cell, "state_names", ())  # a wired model's cell is its name only
    names = {f"{s}[t]": s for s in states} | {f"{s}[t-1]": s for s in states}
    found = {names[str(p.base)] for eq in getattr(cell, "equations", ()) for p in eq.rhs.atoms(sp.Pow)
             if p.exp.is_negative and str(p.base) in names}
    return tuple(s for s in states if s in found)


def states_read_back(cell) -> tuple:
    """The states whose previous value the cell reads (``h[t-1]``): those a backward message reaches
    (mLSTM's ``C``, ``n``, ``m``; not its ``h``, read by the readout only)."""
    return getattr(cell, "states_read_back", ())  # a wired model's: none


def in_domain(model, h0: dict) -> dict:
    """Drawn initial states moved into the cell's domain: a state it divides by is ``0.5 + |v|``
    (:func:`positive_states`); the others are as drawn."""
    positive = positive_states(model.cell)
    return {s: 0.5 + np.abs(v) if s in positive else v for s, v in h0.items()}


def draw(model, plan: Plan, T: int, label: str, seed: int, zero_states=(), upstream="all", loss_targets=None,
         final=(), scale=None) -> Problem:
    """One problem: weights from ``model.init_params``, standard normal inputs and upstream gradients."""
    rng = np.random.default_rng(seed)
    params = model.init_params(seed, scale=plan.scale if scale is None else scale)
    N, D = plan.N, model.sizes["D"]
    x = rng.normal(size=(T, N, D))
    h0 = in_domain(model, {s: rng.normal(size=(N, model.state_size(s))) * 0.5 for s in model.state_names})
    h0 = {s: np.zeros_like(v) if s in zero_states else v for s, v in h0.items()}
    if loss_targets is not None:
        targets = loss_targets(rng, T, N)
    else:
        targets = rng.normal(size=(T, N, model.state_size(model.out)))
        if upstream != "all":  # gradient arriving at one step only
            keep = np.zeros((T, 1, 1))
            keep[upstream] = 1
            targets = targets * keep
    final_grads = {s: rng.normal(size=(N, model.state_size(s))) for s in final} or None
    return Problem(label, params, x, h0, targets, None, final_grads)


def settle_clipping(adapter, problems):
    """``problems`` with a global-norm clipping declared without its epsilon settled to the convention
    the code's gradients follow (PyTorch's ``c / (norm + 1e-6)`` or ``c / norm``, see
    :mod:`symrnn.models.clipping`): on the first problem where the two differ, the one nearer the
    gradients the code returns (``c / norm`` when the code fails there, which the run then reports)."""
    clip = problems[0].clip if problems else None
    if clip is None or len(clip.conventions()) == 1:
        return problems
    chosen = clip.conventions()[0]
    for problem in problems:
        exacts = [exact(adapter.model, replace(problem, clip=c)).grads for c in clip.conventions()]
        keys = [k for k in adapter.model.param_shapes if k in exacts[0]]
        if all(np.array_equal(exacts[0][k], exacts[1][k]) for k in keys):
            continue  # the clipping does not act here
        try:
            user = adapter.run(problem, []).grads
            errors = [max(float(np.max(np.abs(np.asarray(user[k], dtype=float) - e[k]), initial=0)) for k in keys)
                      for e in exacts]
        except Exception:  # noqa: BLE001 - the code fails here: the run of the cases reports it
            break
        chosen = clip.conventions()[int(np.argmin(errors))]
        break
    return [replace(p, clip=chosen) for p in problems]

"""Judge a hand-written Hessian-vector (or Gauss-Newton-vector) product, and say where it is wrong.

The user's function ``fn(params, x, y, v) -> {name: (H v)[name]}`` (or ``G v``) is called on cases of
growing length ``T`` (1, 2, 3 and the main length) and on directions ``v`` that are random over every
parameter and then zero but in one parameter.  Each product is compared, key by key, with the exact
one derived by :mod:`symrnn.engine.second_order` (forward over reverse, checked against torch's
double backward in the tests).  A failure is localised the way the gradient verifier localises:

* the **shortest length** that fails (``T = 1`` passing and ``T = 2`` failing points to the
  recurrence: what the adjoint carries to the step before, or its tangent);
* the **Hessian blocks** ``H[row, column]`` that are wrong, from the one-parameter directions
  (``row``: the key of the product that is wrong, ``column``: the parameter the direction moves);
* the **worst entry** of the worst block, with the user's and the exact value.

Parameters use symrnn's canonical names and the column convention (:class:`symrnn.Model`'s
``params``), inputs are time-major.

**The error model** (the way gradients are judged, :mod:`symrnn.verify.judge`): a correct product
differs from the exact one by the rounding of the user's arithmetic, in the dtype the code returns
(unit roundoff ``u``), and nothing else.  For each key the tolerance is

1. ``8 x`` the spread of the exact product recomputed three times with the inputs, parameters and
   direction moved by up to ``4u`` relative, every function value and kept state of the generated
   code rounded as :mod:`symrnn.verify.judge` rounds them, and each entry of the loss's Hessian
   product moved by ``4u`` times the absolute values of its terms (a saturated softmax cancels
   them): what the problem's conditioning makes of rounding, large at long lengths and large
   weights; plus
2. ``64 u sqrt(L)`` times the key's largest exact entry plus a hundredth of the largest over every
   key and over the product along a random direction (a sum of ``L = T N (D + H + K)`` rounded terms,
   grouped in any order; an entry that is exactly 0 by an invariance of the model, as sLSTM's ``b_i``
   or LRU's phase at ``T = 1``, is reached by correct code along routes whose terms cancel only up to
   rounding), plus the smallest normal number times ``L`` (underflow).

So a product that is right up to rounding passes at every scale and length, and an approximate one
(central differences of gradients, a term off by one part in a billion) is wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError, UserCodeError
from ..models.model import Model
from .judge import Rounding

#: recomputations for the spread, and the factors of the two parts of the tolerance (module docstring)
SPREAD_RUNS, SPREAD_FACTOR, ROUNDING_FACTOR, OTHER_KEYS = 3, 8.0, 64.0, 1e-2


@dataclass
class ProductCase:
    """One call of the user's function: its length, the direction (``"random"`` or a parameter's name),
    whether every key is within tolerance, the wrong keys, and the worst error over its tolerance."""

    T: int
    direction: str
    ok: bool
    wrong: list = field(default_factory=list)
    worst: float = 0.0

    def to_json(self):
        return {"T": self.T, "direction": self.direction, "ok": self.ok, "wrong": self.wrong, "worst": self.worst}


@dataclass
class SecondOrderVerification:
    """What :func:`verify_hvp` returns: ``ok``; every case; for a failure the shortest failing length
    ``first_T``, the wrong Hessian blocks ``blocks`` at that length (``(row, column)`` pairs; ``all_blocks``
    at any length) and the worst entry
    ``worst`` (key, index, user value, exact value); ``symmetry`` the user's ``|u.Hv - v.Hu|``
    relative (a product of a symmetric matrix must be symmetric)."""

    ok: bool
    product: str
    cell: str
    cases: list
    first_T: int | None = None
    blocks: list = field(default_factory=list)
    all_blocks: list = field(default_factory=list)
    worst: dict = field(default_factory=dict)
    symmetry: float = 0.0

    @property
    def worst_ratio(self) -> float:
        """The largest error over tolerance of any case (at most 1 when ``ok``)."""
        return max((c.worst for c in self.cases), default=0.0)

    def summary(self) -> str:
        if self.ok:
            return (f"OK: the {self.product} of {self.cell} is right on {len(self.cases)} cases: it differs from the "
                    f"exact one by no more than rounding (worst error {self.worst_ratio:.2g} of the tolerance).")
        rows = sorted({r for r, _ in self.blocks})
        cols = sorted({c for _, c in self.blocks})
        return (f"WRONG: the {self.product} of {self.cell} first fails at T = {self.first_T}; wrong blocks "
                f"H[row, column] with rows {rows} and columns (directions) {cols}.")

    def __str__(self):
        lines = [self.summary()]
        if not self.ok:
            if self.first_T is not None and self.first_T > 1:
                lines.append(f"  T = {self.first_T - 1} passes and T = {self.first_T} fails: the mistake is in "
                             f"what one step sends back to the step before (the carried adjoint or its tangent).")
            for r, c in self.blocks:
                lines.append(f"  block H[{r}, {c}] is wrong")
            later = [b for b in self.all_blocks if b not in self.blocks]
            if later:
                lines.append("  and at longer lengths: " + ", ".join(f"H[{r}, {c}]" for r, c in later))
            w = self.worst
            if w:
                lines.append(f"  worst entry: {w['key']}{list(w['index'])} along {w['direction']} at T = {w['T']}: "
                             f"yours {w['user']:.10g}, exact {w['exact']:.10g}")
        lines.append(f"  symmetry of yours: |u.Hv - v.Hu| / |u.Hv| = {self.symmetry:.2e}")
        lines += [f"  case T={c.T:<3d} direction {c.direction:<10s} {'ok' if c.ok else 'WRONG ' + ', '.join(c.wrong)}"
                  for c in self.cases]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "product": self.product, "cell": self.cell, "first_T": self.first_T,
                           "blocks": [list(b) for b in self.blocks],
                           "all_blocks": [list(b) for b in self.all_blocks], "worst": self.worst,
                           "symmetry": self.symmetry, "cases": [c.to_json() for c in self.cases]})


def _call(fn, params, x, y, v, shapes):
    try:
        out = fn({k: a.copy() for k, a in params.items()}, x.copy(), y.copy(), {k: a.copy() for k, a in v.items()})
    except Exception as exc:  # the user's code failed: say so with its own message
        raise UserCodeError(f"Your product function raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, dict):
        raise UserCodeError(f"Your product function returned a {type(out).__name__}; expected a dict "
                            f"{{parameter name: array}} with the keys {sorted(shapes)}.")
    missing = sorted(set(shapes) - set(out))
    if missing:
        raise UserCodeError(f"Your product function returned no value for {missing}; expected every parameter: "
                            f"{sorted(shapes)}.")
    result = {}
    for k, shape in shapes.items():
        a = np.asarray(out[k])
        if a.shape != shape:
            raise UserCodeError(f"Your product's [{k!r}] has shape {a.shape}; expected {shape} (the parameter's).")
        result[k] = a
    return result


def verify_hvp(fn, cell="rnn-tanh", *, D=3, H=4, K=3, T=6, N=2, loss="cross-entropy", reduction="sum",
               gauss_newton=False, scale=None, seed=0, lengths=(1, 2, 3)) -> SecondOrderVerification:
    """Verify a hand-written Hessian-vector product (or Gauss-Newton product) of an RNN's loss.

    Parameters
    ----------
    fn : callable
        ``fn(params, x, y, v) -> dict``: the product ``H v`` (``G v`` with ``gauss_newton=True``) of
        the loss with respect to the parameters, one array per parameter name.  ``params`` and ``v``
        are dicts with symrnn's names (``U``, ``W``, ``b``, ``V``, ``c`` for the vanilla RNN),
        ``x`` is ``(T, N, D)``, ``y`` the targets ``(T, N)`` (cross-entropy) or ``(T, N, K)``;
        initial states are zero.
    cell : str or Cell
        The cell the code implements.
    D, H, K, T, N : int
        Sizes of the main case.
    loss, reduction : str
        The loss (as :class:`symrnn.Model`).
    gauss_newton : bool
        Judge ``G v = J^T H_L J v`` instead of ``H v``.
    scale : float, optional
        Half-width of the uniform weights (default ``1/sqrt(H)``).
    seed : int
    lengths : tuple of int
        Shorter lengths tried before ``T`` (localise a mistake in the recurrence).

    Returns
    -------
    SecondOrderVerification

    Examples
    --------
    >>> import symrnn as sr
    >>> from symrnn.verify import verify_hvp
    >>> model = sr.Model("rnn-tanh", D=3, H=4, K=3)
    >>> correct = lambda p, x, y, v: model.hessian_vector_product(p, v, x, y)[2]
    >>> verify_hvp(correct).ok
    True
    >>> wrong = lambda p, x, y, v: {k: 1.01 * a if k == "W" else a for k, a in correct(p, x, y, v).items()}
    >>> print(verify_hvp(wrong).summary())  # doctest: +ELLIPSIS
    WRONG: the Hessian-vector product of rnn-tanh first fails at T = 2; wrong blocks H[row, column] with rows ['W'] ...
    """
    if not callable(fn):
        raise UserCodeError(f"fn must be a function fn(params, x, y, v) -> dict, got {type(fn).__name__}.")
    for name, value in (("D", D), ("H", H), ("K", K), ("T", T), ("N", N)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ShapeError(f"{name} must be a positive integer, got {value!r}.")
    model = Model(cell, D=D, H=H, K=K, loss=loss, reduction=reduction)
    product = "Gauss-Newton product" if gauss_newton else "Hessian-vector product"
    shapes = model.param_shapes
    rng = np.random.default_rng(seed)
    params = model.init_params(seed, scale=scale)
    cases, failures, symmetry = [], [], 0.0
    for length in sorted({t for t in lengths if t < T} | {T}):
        x = rng.normal(size=(length, N, D))
        if loss == "cross-entropy":
            y = rng.integers(0, K, size=(length, N))
        else:
            y = rng.normal(size=(length, N, K if model.readout is not None else H))
        randoms = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(2)]
        directions = [("random", randoms[0])] + [(p, {k: (randoms[1][k] if k == p else np.zeros(s))
                                                      for k, s in shapes.items()}) for p in shapes]
        reference = 0.0  # the random direction's largest entry: the scale of every product at this length
        for label, v in directions:
            exact = model.hessian_vector_product(params, v, x, y, gauss_newton=gauss_newton)[2]
            user = _call(fn, params, x, y, v, shapes)
            if label == "random":
                user_random = user
                reference = max(np.abs(e).max(initial=0.0) for e in exact.values())
            problem = (model, params, x, y, v, gauss_newton)
            tolerance = _tolerance(problem, exact, np.result_type(*user.values()), seed + len(cases), reference)
            case, found = _judge(length, label, exact, user, tolerance)
            cases.append(case)
            failures += found
        symmetry = max(symmetry, _symmetry(_call(fn, params, x, y, randoms[1], shapes), randoms[1],
                                           user_random, randoms[0]))
    return _result(product, model.cell.name, cases, failures, symmetry)


def _tolerance(problem, exact, dtype, seed, reference=0.0) -> dict:
    """``{key: array}``: what rounding in ``dtype`` can make of each entry (the module docstring's
    error model): the spread of rounded recomputations, and the rounding of the sums (``reference``:
    the largest entry of the product along a random direction, for a direction whose product is 0 or
    nearly: an invariance of the model)."""
    model, params, x, y, v, gauss_newton = problem
    u = float(np.finfo(dtype if np.issubdtype(dtype, np.floating) else np.float64).eps) / 2
    rounding = Rounding.for_unit(u, seed)
    twin = rounding.model(model, loss=True)  # its function values, kept values and loss Hessian rounded
    spread = {k: np.zeros_like(e) for k, e in exact.items()}
    for _ in range(SPREAD_RUNS):
        with np.errstate(all="ignore"):
            again = twin.hessian_vector_product({k: rounding.relative(a) for k, a in params.items()},
                                                {k: rounding.relative(a) for k, a in v.items()},
                                                rounding.relative(x), rounding.relative(y),
                                                gauss_newton=gauss_newton)[2]
        spread = {k: np.maximum(spread[k], np.abs(again[k] - exact[k])) for k in exact}
    T, N, D = x.shape
    H, K = model.sizes["H"], model.sizes.get("K")
    terms = T * N * (D + H + (K or H))
    overall = max(max(np.abs(e).max(initial=0.0) for e in exact.values()), reference)
    floor = float(np.finfo(np.float64 if u < 1e-10 else np.float32).tiny) * terms
    return {k: SPREAD_FACTOR * spread[k] + floor + ROUNDING_FACTOR * u * np.sqrt(terms)
            * (np.abs(exact[k]).max(initial=0.0) + OTHER_KEYS * overall) for k in exact}


def _judge(length, label, exact, user, tolerance):
    """One case: its :class:`ProductCase` and a failure record per wrong key (its worst entry)."""
    wrong, worst, failures = [], 0.0, []
    for k in exact:
        err = np.abs(user[k] - exact[k])
        ratio = np.where(np.isfinite(err), err / tolerance[k], np.inf)
        worst = max(worst, float(ratio.max(initial=0.0)))
        if np.any(ratio > 1):
            wrong.append(k)
            idx = np.unravel_index(int(np.argmax(ratio)), err.shape)
            failures.append({"T": length, "direction": label, "key": k, "index": tuple(int(i) for i in idx),
                             "user": float(user[k][idx]), "exact": float(exact[k][idx]),
                             "rel": float(ratio[idx])})
    return ProductCase(length, label, not wrong, wrong, worst), failures


def _symmetry(user_u, u, user_v, v):
    """``|u.Hv - v.Hu|`` relative, from the user's own products (a symmetric H gives 0)."""
    a = sum(float((u[k] * user_v[k]).sum()) for k in u)
    b = sum(float((v[k] * user_u[k]).sum()) for k in v)
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _result(product, cell, cases, failures, symmetry):
    """The verification, built once: a failure's shortest length, its blocks and worst entry."""
    ok = all(c.ok for c in cases)
    if ok:
        return SecondOrderVerification(ok, product, cell, cases, symmetry=symmetry)
    first_T = min(c.T for c in cases if not c.ok)
    at_first = [f for f in failures if f["T"] == first_T]
    return SecondOrderVerification(
        ok, product, cell, cases, first_T=first_T, symmetry=symmetry,
        blocks=sorted({(f["key"], f["direction"]) for f in at_first if f["direction"] != "random"}),
        all_blocks=sorted({(f["key"], f["direction"]) for f in failures if f["direction"] != "random"}),
        worst=max(at_first, key=lambda f: f["rel"]))

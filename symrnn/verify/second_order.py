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
``params``), inputs are time-major.  The tolerance of a key is ``rtol`` times the larger of the
key's largest exact value and a tenth of the largest exact value over every key (``rtol`` 1e-8 for
float64 code, 1e-3 for float32): a correct float64 product differs from the exact one by rounding,
orders of magnitude below it, and a wrong term by orders of magnitude above it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError, UserCodeError
from ..models.model import Model

RTOL = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-3}


@dataclass
class ProductCase:
    """One call of the user's function: its length, the direction (``"random"`` or a parameter's name),
    whether every key is within tolerance, the wrong keys, and the worst relative error."""

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

    def summary(self) -> str:
        if self.ok:
            return f"OK: the {self.product} of {self.cell} is exact on {len(self.cases)} cases."
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
        user_random = []
        for label, v in directions:
            exact = model.hessian_vector_product(params, v, x, y, gauss_newton=gauss_newton)[2]
            user = _call(fn, params, x, y, v, shapes)
            if label == "random":
                user_random.append((v, user))
            rtol = RTOL.get(np.result_type(*user.values()), 1e-3)
            overall = max(np.abs(e).max(initial=0.0) for e in exact.values())
            wrong, worst = [], 0.0
            for k in shapes:
                err = np.abs(user[k] - exact[k])
                bound = rtol * max(np.abs(exact[k]).max(initial=0.0), 0.1 * overall, 1e-300)
                rel = float(err.max(initial=0.0) / bound) * rtol
                worst = max(worst, rel)
                if not np.all(np.isfinite(user[k])) or err.max(initial=0.0) > bound:
                    wrong.append(k)
                    idx = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
                    failures.append({"T": length, "direction": label, "key": k, "index": tuple(int(i) for i in idx),
                                     "user": float(user[k][idx]), "exact": float(exact[k][idx]), "rel": rel})
            cases.append(ProductCase(length, label, not wrong, wrong, worst))
        # the user's product against itself: u.H v = v.H u for a symmetric H
        u = randoms[1]
        user_u = _call(fn, params, x, y, u, shapes)
        v, user_v = user_random[0]
        a = sum(float((u[k] * user_v[k]).sum()) for k in shapes)
        b = sum(float((v[k] * user_u[k]).sum()) for k in shapes)
        symmetry = max(symmetry, abs(a - b) / max(abs(a), abs(b), 1e-300))
    ok = all(c.ok for c in cases)
    result = SecondOrderVerification(ok, product, model.cell.name, cases, symmetry=symmetry)
    if not ok:
        result.first_T = min(c.T for c in cases if not c.ok)
        at_first = [f for f in failures if f["T"] == result.first_T]
        result.blocks = sorted({(f["key"], f["direction"]) for f in at_first if f["direction"] != "random"})
        result.all_blocks = sorted({(f["key"], f["direction"]) for f in failures if f["direction"] != "random"})
        result.worst = max(at_first, key=lambda f: f["rel"])
    return result

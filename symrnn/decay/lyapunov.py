"""Norms of Jacobian products and Lyapunov exponents, streamed in log space.

One forward pass of ``T`` steps, evaluated chunk by chunk
(:class:`~symrnn.decay.jacobian_stream.JacobianStream`), feeds two
accumulators, both in float64 with their scale kept as a natural log:

* the running product ``M_k = ds_{t0+k}/ds_{t0}`` of the whole state, rescaled
  to unit Frobenius norm after every step (``ln`` of the scale summed), read at
  the recorded lags: ``ln ||M_k||_2``, ``ln ||M_k||_F``, each block
  (``dc_T/dc_t`` of the LSTM), ``ln ||M_k^T g||`` for a unit loss gradient ``g``
  on the output state (``dL_{t0+k}/ds_{t0}``), and each state's direct path
  (the terms of ``ds_t/ds_{t-1}`` without a weight matrix: ``prod f`` for the
  LSTM's ``c``, ``prod z`` for the GRU), whose product is diagonal;
* an orthonormal frame ``Q`` (S x k) evolved by ``Q <- J_t Q`` and
  re-orthonormalised by QR, ``lambda_i = sum ln|R_ii| / steps``: the first k
  Lyapunov exponents, natural log per step.

Lag ``k`` is counted from the start step ``t0`` forwards (``ds_{t0+k}/ds_{t0}``),
which a stream can do in memory that does not depend on ``T``; for a stationary
input it measures the same as ``dh_T/dh_{T-k}``.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, ShapeError
from .bounds import log_step_norms, pascanu_bound
from .jacobian_stream import InputSource, JacobianStream

UNITS = "natural log per step"
#: the accuracy the exponents are held to, natural log per step: the sum of the whole spectrum
#: against the mean of ``ln|det J_t|`` (the same number by another route), checked while it runs
ACCURACY = 1e-6
#: largest spread of ``ln|R_ii|`` one QR interval may build up: the smallest ``R_ii`` then keeps a
#: relative accuracy of about ``eps * 1e4 = 2e-12``; an interval that exceeds it is done again
#: with a QR every step
MAX_LOG_SPREAD = np.log(1e4)
MAX_INTERVAL = 16


@dataclass
class DecayProfile:
    """What one run of :func:`decay_profile` measured.  Every logarithm is natural; rates are per step.

    Attributes
    ----------
    cell : str
    T : int
    state_names : list of str
    state_size : int
        ``S``, the whole state's size (``2H`` for an LSTM).
    lags : ndarray
        The lags ``k`` of the norm curve.
    log_spectral, log_frobenius : ndarray
        ``ln ||ds_{t0+k}/ds_{t0}||`` (spectral, Frobenius) of the whole state, per lag.
    log_grad : ndarray
        ``ln ||dL/ds_{t0}||`` for a unit loss gradient on ``h`` at step ``t0 + k``.
    blocks : dict
        ``"c<-c"``: (spectral, Frobenius) arrays of that block of the product.
    direct : dict
        Per state: (spectral, Frobenius) of the direct path (the Jacobian terms with no weight
        matrix: ``prod f`` for the LSTM's ``c``).
    exponents : ndarray
        The first ``k`` Lyapunov exponents, descending.
    exponent_steps, qr_count : int
        Steps the exponents average over (after the transient); QR factorisations made.
    log_bound : ndarray or None
        The Pascanu bound ``k ln(gamma sigma_max(W))`` of a vanilla cell.
    bound_rate, gamma, sigma_max : float or None
    log_step_bound : ndarray or None
        ``ln prod ||J_t||_2``, a bound for every cell.
    units : str
    meta : dict
    accuracy : dict or None
        How accurate the exponents are: ``sum_identity_error`` (with the whole spectrum, ``k = S``:
        ``|sum_i lambda_i - mean_t ln|det J_t||``, natural log per step, the two routes to the same
        number), ``target`` (:data:`ACCURACY`, 1e-6) and ``met``; ``qr_every``, ``qr_count``,
        ``intervals_redone`` (adaptive intervals done again with a QR every step),
        ``max_interval_spread`` (the largest spread of ``ln|R_ii|`` one QR saw) and
        ``rounding_estimate`` (``eps * e^spread``: a worst-case estimate of each QR's relative error
        in the smallest ``R_ii``, the only figure when ``k < S``).
    overflow : dict or None
        When the forward overflowed: ``step`` (the first step whose state or Jacobian is not finite),
        ``kind`` (``"state"`` or ``"jacobian"``), ``state``, ``steps_run``.  The run stops there;
        the exponents are the estimate over the steps before it (or ``+inf`` if none counted).
    notes : list of str
        What a reader must know about this run (a zero Jacobian, an overflow, the accuracy).
    """

    cell: str
    T: int
    state_names: list
    state_size: int
    lags: np.ndarray
    log_spectral: np.ndarray = None  # ln ||ds_{t0+k}/ds_{t0}||_2, whole state
    log_frobenius: np.ndarray = None
    log_grad: np.ndarray = None  # ln ||dL_{t0+k}/ds_{t0}|| for a unit dL/dh at t0+k
    blocks: dict = field(default_factory=dict)  # "c<-c": (spectral, frobenius)
    direct: dict = field(default_factory=dict)  # state: (spectral, frobenius) of the direct path
    exponents: np.ndarray = None  # first k Lyapunov exponents, descending
    exponent_steps: int = 0  # steps the exponents average over (after the transient)
    qr_count: int = 0
    log_bound: np.ndarray = None  # Pascanu bound ln (gamma sigma_max(W))^k, or None
    bound_rate: float = None
    gamma: float = None
    sigma_max: float = None
    log_step_bound: np.ndarray = None  # ln prod_t ||J_t||_2 (trajectory bound), or None
    units: str = UNITS
    meta: dict = field(default_factory=dict)
    accuracy: dict = None  # what is known of the exponents' accuracy (see the class docstring)
    overflow: dict = None  # where the forward overflowed, when it did
    notes: list = field(default_factory=list)  # sentences a report prints with the run

    @property
    def top_exponent(self) -> float:
        """The largest Lyapunov exponent (None when none was computed)."""
        return float(self.exponents[0]) if self.exponents is not None else None

    def to_dict(self) -> dict:
        """Every field as plain lists and numbers (JSON-ready)."""
        def arr(v):
            return None if v is None else [float(x) for x in np.asarray(v)]
        return dict(
            cell=self.cell, T=self.T, states=self.state_names, state_size=self.state_size, units=self.units,
            lags=[int(x) for x in self.lags], log_spectral=arr(self.log_spectral),
            log_frobenius=arr(self.log_frobenius), log_grad=arr(self.log_grad),
            blocks={k: dict(spectral=arr(a), frobenius=arr(b)) for k, (a, b) in self.blocks.items()},
            direct={k: dict(spectral=arr(a), frobenius=arr(b)) for k, (a, b) in self.direct.items()},
            exponents=arr(self.exponents), exponent_steps=self.exponent_steps, qr_count=self.qr_count,
            log_bound=arr(self.log_bound), bound_rate=self.bound_rate, gamma=self.gamma, sigma_max=self.sigma_max,
            log_step_bound=arr(self.log_step_bound), accuracy=self.accuracy, overflow=self.overflow,
            notes=list(self.notes), meta=self.meta)


class LogSum:
    """A running sum of logarithms with Neumaier's compensation: 10^5 terms of ~1 keep
    an absolute error of a few ulps instead of ~1e-8 (the norms at T = 100000 are
    checked against closed forms to 1e-12 relative)."""

    def __init__(self, shape=()):
        self.s = np.zeros(shape)
        self.c = np.zeros(shape)

    def add(self, x):
        s = self.s
        t = s + x
        with np.errstate(invalid="ignore"):
            big = np.abs(s) >= np.abs(x)
            self.c = self.c + np.where(big, (s - t) + x, (x - t) + s)
        self.c = np.where(np.isfinite(t), self.c, 0.0)
        self.s = t

    @property
    def value(self):
        return self.s + self.c


def _norm(a) -> float:
    """The Frobenius norm, scaled so that the squares of tiny (1e-170) or huge entries neither
    underflow nor overflow."""
    m = float(np.max(np.abs(a))) if a.size else 0.0
    if m == 0.0 or not math.isfinite(m):
        return m
    return m * math.sqrt(float(np.sum(np.square(a / m))))


class _Product:
    """The running product ``M = e^{log_scale} U B`` of step Jacobians.

    ``B`` is ``None`` (``M = e^{log_scale} U``, U square) until a reading finds
    singular values below ``TRUNCATE`` times the largest; those directions are
    dropped (they are at the level of float64's rounding of the product itself: a
    dense product carries only noise there, and no norm changes by more than that) and
    the product continues as the thin ``U`` (S x r) times ``B`` (r x S): a
    contracting LSTM's product soon has rank one or two, and a step costs
    ``S x S x r`` instead of ``S x S x S``.
    """

    TRUNCATE = 1e-14

    def __init__(self, S):
        self.U = np.eye(S)
        self.B = None
        self._s = 0.0  # log_scale = _s + _c (Neumaier)
        self._c = 0.0
        self.S = S

    @property
    def log_scale(self):
        return self._s + self._c

    def _add_log(self, x):
        s = self._s
        t = s + x
        if not math.isfinite(t):
            self._s, self._c = t, 0.0
            return
        self._c += (s - t) + x if abs(s) >= abs(x) else (x - t) + s
        self._s = t

    def step(self, chunk, i):
        if not np.isfinite(self.log_scale):
            return
        self.U = chunk.apply(i, self.U)
        nrm = _norm(self.U)
        if nrm > 0 and np.isfinite(nrm):
            self.U /= nrm
            self._add_log(math.log(nrm))
        elif nrm == 0:
            self._s, self._c = -np.inf, 0.0

    def read(self):
        """``(sigma, log_scale)``: the singular values of ``M / e^{log_scale}``; re-factors ``M``."""
        if not np.isfinite(self.log_scale):
            return np.zeros(1), self.log_scale
        if self.B is None:
            sig, Vt = np.linalg.svd(self.U, full_matrices=False)[1:]
            keep = sig > self.TRUNCATE * sig[0]
            if keep.all():
                return sig, self.log_scale
            V = Vt[keep].T
            U_new = self.U @ V
        else:
            R = np.linalg.qr(self.U)[1]
            sig, Vt = np.linalg.svd(R @ self.B, full_matrices=False)[1:]
            keep = sig > self.TRUNCATE * sig[0]
            V = Vt[keep].T
            U_new = self.U @ (self.B @ V)
        # M ~ (M V) V^T with V the kept right singular vectors: the new U is a product of the old factors,
        # not an orthonormal basis, so entries far below the largest keep their relative accuracy (a
        # later step may kill the large ones: a state that copies another)
        top = sig[0]
        self.U = U_new / top
        self.B = Vt[keep]
        self._add_log(math.log(top))
        return sig / top, self.log_scale

    def block_norms(self, rows, cols):
        """``(||M[rows, cols]||_2, ||M[rows, cols]||_F) / e^{log_scale}``."""
        if self.B is None:
            sub = self.U[rows, cols]
        else:  # M[rows, cols] = U_r B_c = Q (R B_c): the norms of the small R B_c
            U_r = self.U[rows]
            sub = np.linalg.qr(U_r)[1] @ self.B[:, cols] if U_r.shape[1] < U_r.shape[0] else U_r @ self.B[:, cols]
        sig = np.linalg.svd(sub, compute_uv=False)
        return sig[0], np.sqrt(np.sum(sig ** 2))

    def transpose_times(self, g):
        """``M^T g / e^{log_scale}``."""
        v = self.U.T @ g
        return v if self.B is None else self.B.T @ v

    @property
    def rank(self):
        return self.U.shape[1]


def default_lags(T: int) -> np.ndarray:
    """Every lag up to 200 (all of them when ``T <= 2000``), then 300 geometrically spaced ones.

    Examples
    --------
    >>> from symrnn.decay import default_lags
    >>> len(default_lags(100)), len(default_lags(100_000)) <= 500
    (100, True)
    """
    if T <= 2000:
        return np.arange(1, T + 1)
    return np.unique(np.concatenate([np.arange(1, 201), np.round(np.geomspace(200, T, 300)).astype(int)]))


def _blas_one_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency, but never required for correctness
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _check(T, k, S, lags, start):
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ShapeError(f"T must be an integer >= 1 (the number of steps), got {T!r}.")
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= S):
        raise ShapeError(f"k = {k!r} exponents asked for, but the state has size {S}; "
                         f"give 0 <= k <= {S} (k = {S} is the whole spectrum).")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ShapeError(f"start must be an integer >= 0 (steps run before lag 0), got {start!r}.")
    if lags is not None:
        lags = np.unique(np.asarray(lags, dtype=int))
        if lags.size and (lags[0] < 1 or lags[-1] > T - start):
            raise ShapeError(f"lags must lie in 1 .. T - start = {T - start}, got {lags[0]} .. {lags[-1]}.")
    return lags


def _log(x):
    with np.errstate(divide="ignore"):
        return np.log(x)


def _spread(logs):
    """The spread ``max - min`` of the finite ``ln|R_ii|`` of one QR."""
    finite = logs[np.isfinite(logs)]
    return float(finite.max() - finite.min()) if finite.size > 1 else 0.0


class _Frame:
    """The orthonormal frame ``Q`` (S x k) of the Lyapunov exponents, re-orthonormalised by QR.

    ``qr_every=None`` (adaptive): an interval between two QRs lasts as many steps as keep the
    spread of ``ln|R_ii|`` it builds under :data:`MAX_LOG_SPREAD` (estimated from the interval
    before, at most :data:`MAX_INTERVAL` steps, never across a chunk); an interval whose spread
    exceeds it all the same (units that saturate for a few steps) is done again from its start with
    a QR every step.  With the whole spectrum (``k = S``), ``ln|det J_t|`` is summed beside it:
    the exponents must add up to its mean, checked at the end of every chunk; a drift beyond a
    tenth of :data:`ACCURACY` makes the rest of the run take a QR every step.
    """

    def __init__(self, S, k, seed, qr_every, transient):
        self.k, self.qr_every, self.transient = k, qr_every, transient
        self.Q = np.linalg.qr(np.random.default_rng([seed, 13]).standard_normal((S, k)))[0]
        self.sums, self.counted = LogSum(k), 0
        self.all_sums, self.all_steps = LogSum(k), 0  # the transient included: for a run cut short
        self.identity = k == S and S > 1
        self.logdet = LogSum()
        self.interval = qr_every or 1
        self.steps = 0  # steps in the current interval
        self.start = None  # (Q, chunk index, step) at the interval's start
        self.qr_count = self.redone = 0
        self.max_spread = 0.0
        self.every_step_from = None  # the step from which the identity's drift forced a QR every step
        self.dets = None

    def begin_chunk(self, chunk):
        if self.identity:
            with np.errstate(divide="ignore", invalid="ignore"):
                self.dets = np.linalg.slogdet(chunk.full()[:chunk.C])[1]

    def step(self, chunk, i, t, last):
        """``Q <- J_t Q`` (``t``: the step from ``s_t`` to ``s_{t+1}``); a QR when the interval ends
        (``last``: the chunk's or the run's last step)."""
        if self.steps == 0:
            self.start = (self.Q, i, t)
        self.Q = chunk.apply(i, self.Q)
        self.steps += 1
        if self.steps >= self.interval or last or t + 1 == self.transient:  # a QR ends the transient
            self._close(chunk)
        if last and self.identity and self.qr_every is None and self.every_step_from is None:
            if self.counted and self.identity_error() > ACCURACY / 10:
                self.every_step_from = t + 1
                self.interval = 1

    def _qr(self, Q):
        self.qr_count += 1
        if self.k == 1:
            r = _norm(Q)
            return (Q / r if r > 0 else Q), _log(np.array([r]))
        Q, R = np.linalg.qr(Q)
        return Q, _log(np.abs(np.diagonal(R)))

    def _close(self, chunk):
        Q0, i0, t0 = self.start
        n = self.steps
        Q, logs = self._qr(self.Q)
        spread = _spread(logs)
        if self.qr_every is None and n > 1 and spread > MAX_LOG_SPREAD:
            self.redone += 1
            Q, per_step = Q0, 0.0
            for j in range(n):
                Q, logs = self._qr(chunk.apply(i0 + j, Q))
                per_step = max(per_step, _spread(logs))
                self._count(logs, i0 + j, t0 + j, 1)
            self.max_spread = max(self.max_spread, per_step)
        else:
            self._count(logs, i0, t0 + n - 1, n)
            self.max_spread = max(self.max_spread, spread)
            per_step = spread / n
        self.Q = Q
        self.steps = 0
        if self.qr_every is None and self.every_step_from is None:
            self.interval = int(np.clip(MAX_LOG_SPREAD / per_step, 1, MAX_INTERVAL)) if per_step > 0 else MAX_INTERVAL

    def _count(self, logs, i0, t, n):
        """Add the ``ln|R_ii|`` of an interval of ``n`` steps that ends with step ``t`` (chunk index
        ``i0`` its first); an interval lies wholly in the transient or wholly after it."""
        self.all_sums.add(logs)
        self.all_steps += n
        if t + 1 > self.transient:
            self.sums.add(logs)
            self.counted += n
            if self.identity:
                self.logdet.add(np.sum(self.dets[i0:i0 + n]))

    def identity_error(self):
        """``|sum_i lambda_i - mean ln|det J_t||`` per step, or nan (not the whole spectrum, no step
        counted, or a zero exponent)."""
        if not self.identity or not self.counted:
            return float("nan")
        total, logdet = float(np.sum(self.sums.value)), float(self.logdet.value)
        if not (math.isfinite(total) and math.isfinite(logdet)):
            return float("nan")
        return abs(total - logdet) / self.counted

    def exponents(self):
        """The exponents, descending, and the steps they average over (the transient included when
        no step after it was run)."""
        if self.counted:
            e, n = self.sums.value / self.counted, self.counted
        elif self.all_steps:
            e, n = self.all_sums.value / self.all_steps, self.all_steps
        else:
            return np.full(self.k, np.nan), 0
        return np.sort(e)[::-1], n

    def accuracy(self):
        """What the exponents' accuracy is known to be (see :attr:`DecayProfile.accuracy`)."""
        eps = np.finfo(np.float64).eps
        err = self.identity_error()
        return dict(
            target=ACCURACY,
            sum_identity_error=None if math.isnan(err) else err,
            met=None if math.isnan(err) else bool(err <= ACCURACY),
            qr_every="adaptive" if self.qr_every is None else int(self.qr_every),
            qr_count=int(self.qr_count), intervals_redone=int(self.redone),
            every_step_from=self.every_step_from,
            max_interval_spread=float(self.max_spread),
            rounding_estimate=float(eps * math.exp(min(self.max_spread, 700.0))))


def _accuracy_text(acc, k, S):
    if acc is None:
        return "no exponents computed"
    if acc.get("zero_jacobian"):
        return "exact: the step Jacobian is zero"
    if acc["sum_identity_error"] is not None:
        verdict = "meets" if acc["met"] else "MISSES"
        return (f"sum of the exponents vs mean ln|det J_t|: {acc['sum_identity_error']:.1e} per step ({verdict} "
                f"the target {acc['target']:g})")
    if k == S:
        return "sum identity not checkable (an exponent is -inf: some step Jacobian is singular)"
    return (f"k = {k} < S = {S}: the sum identity needs the whole spectrum; rounding estimate "
            f"{acc['rounding_estimate']:.1e} per step")


def _initial_state(model, h0, N, seed):
    lay = [(s, model.sizes[model.cell.states[s]]) for s in model.cell.states]
    if h0 is None or (isinstance(h0, str) and h0 == "zero"):
        return {s: np.zeros((N, n)) for s, n in lay}
    if isinstance(h0, str) and h0 == "random":
        rng = np.random.default_rng([seed, 7])
        return {s: rng.uniform(-1, 1, (N, n)) for s, n in lay}
    if isinstance(h0, str):
        raise ParameterError(f"h0={h0!r}: give 'zero', 'random' or a dict {{state: array (N, size)}}.")
    names = [s for s, _ in lay]
    if isinstance(h0, (tuple, list)) and len(lay) > 1:
        raise ShapeError(f"h0 is a {type(h0).__name__} of {len(h0)}; the cell has the states {names}: pass a dict "
                         f"{{{', '.join(repr(s) + ': array' for s in names)}}} (a state left out starts at zero).")
    given = dict(h0) if isinstance(h0, dict) else {model.out: h0}
    unknown = sorted(str(k) for k in set(given) - set(names))
    if unknown:
        raise ShapeError(f"h0 names {unknown}, which are not states of the cell {model.cell.name!r}; "
                         f"its states are {names}.")
    out = {}
    for s, n in lay:
        if s not in given:
            out[s] = np.zeros((N, n))
            continue
        try:
            a = np.asarray(given[s], dtype=np.float64)
        except (TypeError, ValueError):
            raise ShapeError(f"h0[{s!r}] is not an array of numbers (got {type(given[s]).__name__}).") from None
        if a.shape not in ((n,), (N, n)):
            raise ShapeError(f"h0[{s!r}] has shape {a.shape}; the state {s!r} has size {n}: give an array of shape "
                             f"({n},) or ({N}, {n}).")
        out[s] = np.broadcast_to(a, (N, n)).copy()
    return out


def decay_profile(model, params, T, *, k=1, curve=True, lags=None, inputs="random", input_scale=1.0,
                  h0=None, seed=0, start=0, transient=None, qr_every=None, step_bound="auto",
                  progress=False, stream=None) -> DecayProfile:
    """Measure gradient decay of ``model``'s cell with ``params`` over ``T`` steps.

    Parameters
    ----------
    model : symrnn.Model
        Only its cell and sizes matter (``sr.Model(cell, D=D, H=H, loss="upstream")``).
    T : int
        Steps of the forward pass (``T = 100000`` is fine: memory does not grow with T).
    k : int
        Lyapunov exponents to compute (0 .. state size; the state of an LSTM is ``(h, c)``, 2H).
    curve : bool
        Record the norms of ``ds_{t0+k}/ds_{t0}`` at ``lags`` (default :func:`default_lags`).
    inputs : "random", "zero" or an array (T, 1, D)
        Random inputs are standard normal times ``input_scale``, drawn from ``seed``.
    h0 : None / "zero", "random" (uniform in [-1, 1] from ``seed``), an array (the output state)
        or a dict ``{state: array (size,) or (1, size)}`` (states left out start at zero)
    start : int
        Steps run before lag 0 (``t0 = start``), to leave an initial transient.
    transient : int
        Steps whose ``ln|R_ii|`` are not counted in the exponents (default ``min(T // 10, 1000)``).
    qr_every : int
        Steps between QR factorisations; default adaptive: intervals of at most 16 steps that keep
        the spread of ``ln|R_ii|`` under ``ln 1e4``, an interval that exceeds it done again with a QR
        every step.  The accuracy reached is reported in :attr:`DecayProfile.accuracy`.
    step_bound : bool or "auto"
        Also accumulate ``ln prod ||J_t||_2`` (an SVD per step; "auto": when ``T S^3 <= 2e9``).

    Returns
    -------
    DecayProfile
        The norm curve against the lag, block and direct-path norms, the exponents and the
        bounds; every logarithm natural.  A forward that overflows ends the run at the step
        where it did (:attr:`DecayProfile.overflow`); a cell whose update never reads its state
        has a zero step Jacobian, exponents ``-inf`` and a note that says so.

    See Also
    --------
    lyapunov_spectrum : the exponents alone.
    sweep : profiles over cells, scales and seeds.

    Examples
    --------
    >>> import numpy as np, symrnn as sr
    >>> from symrnn.decay import decay_profile, make_params
    >>> model = sr.Model("rnn-tanh", D=2, H=8, loss="upstream")
    >>> params = make_params(model, init="orthogonal", scale=0.5, scale_by="sigma", seed=0)
    >>> p = decay_profile(model, params, T=3000, k=8)
    >>> bool(p.top_exponent < p.bound_rate)      # under the Pascanu bound ln(0.5)
    True
    >>> bool(np.all(p.log_spectral <= p.log_bound + 1e-9))
    True
    >>> p.accuracy["met"]                        # sum of the exponents vs mean ln|det J_t|, within 1e-6
    True
    """
    stream = stream or JacobianStream(model)
    S = stream.state_size
    lags = _check(T, k, S, lags, start)
    if qr_every is not None and (isinstance(qr_every, bool) or not isinstance(qr_every, (int, np.integer))
                                 or qr_every < 1):
        raise ShapeError(f"qr_every must be an integer >= 1 (steps between QR factorisations) or None "
                         f"(adaptive), got {qr_every!r}.")
    if curve and lags is None:
        lags = default_lags(T - start) if T > start else np.array([], dtype=int)
    lags = np.asarray(lags if curve else [], dtype=int)
    if transient is None:
        transient = min(T // 10, 1000)
    if step_bound == "auto":
        step_bound = curve and T * S ** 3 <= 2e9
    lay = stream.layout
    D = model.sizes["D"]
    source = inputs if isinstance(inputs, InputSource) else InputSource(inputs, T, 1, D, seed, input_scale)
    if source.array is not None:
        if source.array.ndim != 3 or source.array.shape[0] < T or source.array.shape[2] != D:
            raise ShapeError(f"inputs has shape {source.array.shape}; expected (T, 1, D) = ({T}, 1, {D}).")
        source.array = source.array[:, :1]
    source.T = T
    state = _initial_state(model, h0, 1, seed)
    out = lay.slice(model.out)
    rng = np.random.default_rng([seed, 11])
    g = np.zeros(S)
    g[out] = rng.standard_normal(out.stop - out.start)
    g /= np.linalg.norm(g)
    meta = dict(start=int(start), transient=int(transient), seed=int(seed), inputs=source.kind,
                input_scale=float(input_scale), qr_every=("adaptive" if qr_every is None else int(qr_every)),
                loss_gradient="unit vector on the output state at step t0+k, drawn from seed")
    if stream.zero:
        return _zero_profile(model, stream, T, k, lags, meta)

    n_lags = len(lags)
    res = dict(spec=np.full(n_lags, np.nan), frob=np.full(n_lags, np.nan), grad=np.full(n_lags, np.nan),
               step=np.full(n_lags, np.nan) if step_bound else None)
    block_keys = [(s, p) for s in lay.names for p in lay.names] if len(lay.names) > 1 else []
    blocks = {key: (np.full(n_lags, np.nan), np.full(n_lags, np.nan)) for key in block_keys}
    direct_states = [s for s, b in stream.direct.items() if b is not None]
    direct = {s: (np.full(n_lags, np.nan), np.full(n_lags, np.nan)) for s in direct_states}
    direct_log = {s: LogSum(lay.sizes[lay.names.index(s)]) for s in direct_states}

    M = _Product(S) if n_lags else None
    ranks = []
    log_step = LogSum()
    next_lag = 0
    frame = _Frame(S, k, seed, qr_every, transient) if k else None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=T, desc=f"{model.cell.name} T={T}", unit="step", leave=False)
    last = lags[-1] if n_lags else 0
    with _blas_one_thread():
        for t0, chunk, _ in stream.stream(params, source, state, progress=bar):
            step_logs = log_step_norms(chunk)[:chunk.C] if step_bound and t0 + chunk.C > start else None
            if frame is not None:
                frame.begin_chunk(chunk)
            for i in range(chunk.C):
                t = t0 + i  # the step from s_t to s_{t+1}
                if frame is not None:
                    frame.step(chunk, i, t, last=i == chunk.C - 1 or t == T - 1)
                if M is None or t < start or t - start >= last:
                    continue
                M.step(chunk, i)
                for s in direct_states:
                    with np.errstate(divide="ignore"):
                        direct_log[s].add(np.log(np.abs(chunk.direct[s][i, 0])))
                if step_logs is not None:
                    log_step.add(step_logs[i])
                lag = t - start + 1
                if next_lag < n_lags and lag == lags[next_lag]:
                    j = next_lag
                    sig, log_scale = M.read()
                    ranks.append(M.rank)
                    with np.errstate(divide="ignore"):
                        res["spec"][j] = log_scale + np.log(sig[0])
                        res["frob"][j] = log_scale + 0.5 * np.log(np.sum(sig ** 2))
                        res["grad"][j] = log_scale + np.log(_norm(M.transpose_times(g)))
                        if res["step"] is not None:
                            res["step"][j] = log_step.value
                        for (s, p), (bs, bf) in blocks.items():
                            n2, nf = M.block_norms(lay.slice(s), lay.slice(p))
                            bs[j] = log_scale + np.log(n2)
                            bf[j] = log_scale + np.log(nf)
                    for s, (ds, df) in direct.items():
                        L = direct_log[s].value
                        ds[j] = L.max()
                        top = L.max()
                        df[j] = top + 0.5 * np.log(np.sum(np.exp(2 * (L - top)))) if np.isfinite(top) else -np.inf
                    next_lag += 1
    if bar is not None:
        bar.close()
    exponents, counted, accuracy = None, 0, None
    if frame is not None:
        exponents, counted = frame.exponents()
        accuracy = frame.accuracy()
    meta["final_product_rank"] = int(ranks[-1]) if ranks else None
    profile = DecayProfile(
        cell=model.cell.name, T=int(T), state_names=list(lay.names), state_size=S, lags=lags,
        log_spectral=res["spec"] if n_lags else None, log_frobenius=res["frob"] if n_lags else None,
        log_grad=res["grad"] if n_lags else None,
        blocks={f"{s}<-{p}": v for (s, p), v in blocks.items()}, direct=direct,
        exponents=exponents, exponent_steps=int(counted), qr_count=frame.qr_count if frame else 0,
        log_step_bound=res["step"] if n_lags else None, accuracy=accuracy, meta=meta)
    if accuracy is not None:
        profile.notes.append(f"Exponents' accuracy: {_accuracy_text(accuracy, k, S)}.")
    if stream.stopped is not None:
        _record_overflow(profile, stream.stopped, frame)
    _add_bound(profile, model, params, lags)
    return profile


def _add_bound(profile, model, params, lags):
    bound = pascanu_bound(model)
    if bound is not None:
        profile.gamma = bound.gamma
        profile.sigma_max = bound.sigma_max(params)
        profile.bound_rate = bound.rate(params)
        if len(lags):
            profile.log_bound = bound.log_bound(params, lags)


def _record_overflow(profile, stopped, frame):
    """The run stopped where the forward overflowed: say where, and keep what was measured before."""
    step, kind, state = stopped["step"], stopped["kind"], stopped["state"]
    profile.overflow = dict(stopped, steps_run=step - 1)
    what = (f"the state {state} overflowed (became infinite or NaN) at step {step}" if kind == "state" else
            f"the step Jacobian J_{step} is not finite (a derivative infinite at its argument, or an overflow)")
    if frame is None:
        estimate = "no exponents were asked for"
    elif profile.exponent_steps:
        estimate = (f"the exponents are the last finite estimate, over the {profile.exponent_steps} steps before it"
                    + (" (the transient included)" if frame.counted == 0 else ""))
    else:
        profile.exponents = np.full(frame.k, np.nan)
        profile.exponents[0] = np.inf
        estimate = "no step before it could be counted: the top exponent is recorded as +inf"
    profile.notes.insert(0, f"The forward stopped: {what}. This is the study's own forward pass with these weights, "
                            f"not a problem of the data; {estimate}. Norms at later lags are not measured (nan).")


def _zero_profile(model, stream, T, k, lags, meta):
    """The profile of a cell whose update never reads its state: every step Jacobian is zero."""
    lay = stream.layout
    n = len(lags)
    minus = np.full(n, -np.inf)
    blocks = {f"{s}<-{p}": (minus.copy(), minus.copy()) for s in lay.names for p in lay.names} \
        if len(lay.names) > 1 else {}
    profile = DecayProfile(
        cell=model.cell.name, T=int(T), state_names=list(lay.names), state_size=lay.size, lags=lags,
        log_spectral=minus.copy() if n else None, log_frobenius=minus.copy() if n else None,
        log_grad=minus.copy() if n else None, blocks=blocks,
        exponents=np.full(k, -np.inf) if k else None, exponent_steps=int(T) if k else 0,
        log_step_bound=minus.copy() if n else None,
        accuracy=dict(target=ACCURACY, zero_jacobian=True, sum_identity_error=None, met=True) if k else None,
        meta=dict(meta, zero_jacobian=True))
    profile.notes.append(
        f"The step Jacobian ds_t/ds_(t-1) of {model.cell.name!r} is zero: its update never reads the previous "
        f"state ({', '.join(lay.names)}), so no gradient flows through time. Every norm at lag >= 1 is exactly 0 "
        f"(ln = -inf) and every exponent is -inf; nothing was integrated.")
    return profile


def lyapunov_spectrum(model, params, T, k=None, **kwargs) -> np.ndarray:
    """The first ``k`` Lyapunov exponents (default all), natural log per step, descending.

    Other keyword arguments are those of :func:`decay_profile`; no norm curve is recorded.

    Examples
    --------
    >>> import symrnn as sr
    >>> from symrnn.decay import lyapunov_spectrum, make_params
    >>> model = sr.Model("gru", D=2, H=4, loss="upstream")
    >>> exponents = lyapunov_spectrum(model, make_params(model, seed=0), T=2000)
    >>> exponents.shape, bool(exponents[0] >= exponents[-1])
    ((4,), True)
    """
    stream = kwargs.pop("stream", None) or JacobianStream(model)
    k = stream.state_size if k is None else k
    return decay_profile(model, params, T, k=k, curve=False, stream=stream, **kwargs).exponents

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
#: largest spread of ln|R_ii| allowed to build up between two QR factorisations (the smallest
#: R_ii then keeps a relative accuracy of about 1e-4, an error of 1e-4/steps in its exponent)
MAX_LOG_SPREAD = np.log(1e12)


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
            log_step_bound=arr(self.log_step_bound), meta=self.meta)


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
        nrm = np.sqrt(np.dot(self.U.ravel(), self.U.ravel()))
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
            P, sig, Vt = np.linalg.svd(self.U, full_matrices=False)
            keep = sig > self.TRUNCATE * sig[0]
            if keep.all():
                return sig, self.log_scale
            U_new = P[:, keep]
        else:
            Q, R = np.linalg.qr(self.U)
            P, sig, Vt = np.linalg.svd(R @ self.B, full_matrices=False)
            keep = sig > self.TRUNCATE * sig[0]
            U_new = Q @ P[:, keep]
        top = sig[0]
        self.U = U_new
        self.B = (sig[keep] / top)[:, None] * Vt[keep]
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


def _initial_state(model, h0, N, seed):
    lay = [(s, model.sizes[model.cell.states[s]]) for s in model.cell.states]
    if h0 is None or (isinstance(h0, str) and h0 == "zero"):
        return {s: np.zeros((N, n)) for s, n in lay}
    if isinstance(h0, str) and h0 == "random":
        rng = np.random.default_rng([seed, 7])
        return {s: rng.uniform(-1, 1, (N, n)) for s, n in lay}
    if isinstance(h0, str):
        raise ParameterError(f"h0={h0!r}: give 'zero', 'random' or a dict {{state: array (N, size)}}.")
    given = dict(h0) if isinstance(h0, dict) else {model.out: h0}
    return {s: np.broadcast_to(np.asarray(given.get(s, np.zeros(n)), dtype=np.float64), (N, n)).copy()
            for s, n in lay}


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
    h0 : None / "zero", "random" (uniform in [-1, 1] from ``seed``) or {state: array}
    start : int
        Steps run before lag 0 (``t0 = start``), to leave an initial transient.
    transient : int
        Steps whose ``ln|R_ii|`` are not counted in the exponents (default ``min(T // 10, 1000)``).
    qr_every : int
        Steps between QR factorisations; default adaptive: as many as keep the spread of
        ``ln|R_ii|`` between two factorisations under ``ln 1e12`` (at most 16).
    step_bound : bool or "auto"
        Also accumulate ``ln prod ||J_t||_2`` (an SVD per step; "auto": when ``T S^3 <= 2e9``).

    Returns
    -------
    DecayProfile
        The norm curve against the lag, block and direct-path norms, the exponents and the
        bounds; every logarithm natural.

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
    >>> p = decay_profile(model, params, T=3000, k=2)
    >>> bool(p.top_exponent < p.bound_rate)      # under the Pascanu bound ln(0.5)
    True
    >>> bool(np.all(p.log_spectral <= p.log_bound + 1e-9))
    True
    """
    stream = stream or JacobianStream(model)
    S = stream.state_size
    lags = _check(T, k, S, lags, start)
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
    Q = None
    if k:
        Q, _ = np.linalg.qr(np.random.default_rng([seed, 13]).standard_normal((S, k)))
    sums = LogSum(k)
    counted = 0
    qr_count = 0
    interval = qr_every or 1
    since_qr = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=T, desc=f"{model.cell.name} T={T}", unit="step", leave=False)
    last = lags[-1] if n_lags else 0
    with _blas_one_thread():
        for t0, chunk, _ in stream.stream(params, source, state, progress=bar):
            step_logs = log_step_norms(chunk) if step_bound and t0 + chunk.C > start else None
            for i in range(chunk.C):
                t = t0 + i  # the step from s_t to s_{t+1}
                if Q is not None:
                    Q = chunk.apply(i, Q)
                    since_qr += 1
                    if since_qr >= interval or t == T - 1:
                        if k == 1:
                            r = np.linalg.norm(Q)
                            diag = np.array([r])
                            Q = Q / r if r > 0 else Q
                        else:
                            Q, R = np.linalg.qr(Q)
                            diag = np.abs(np.diagonal(R))
                        qr_count += 1
                        with np.errstate(divide="ignore"):
                            logs = np.log(diag)
                        if t + 1 > transient:
                            counted_here = min(since_qr, t + 1 - transient)
                            # steps before the transient's end inside this interval are counted pro rata
                            sums.add(logs * (counted_here / since_qr))
                            counted += counted_here
                        if qr_every is None:
                            finite = logs[np.isfinite(logs)]
                            spread = (finite.max() - finite.min()) / since_qr if finite.size > 1 else 0.0
                            interval = int(np.clip(MAX_LOG_SPREAD / spread, 1, 16)) if spread > 0 else 16
                        since_qr = 0
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
                        res["grad"][j] = log_scale + np.log(np.linalg.norm(M.transpose_times(g)))
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
    exponents = None
    if k:
        exponents = sums.value / counted if counted else np.full(k, np.nan)
        exponents = np.sort(exponents)[::-1]
    bound = pascanu_bound(model)
    profile = DecayProfile(
        cell=model.cell.name, T=int(T), state_names=list(lay.names), state_size=S, lags=lags,
        log_spectral=res["spec"] if n_lags else None, log_frobenius=res["frob"] if n_lags else None,
        log_grad=res["grad"] if n_lags else None,
        blocks={f"{s}<-{p}": v for (s, p), v in blocks.items()}, direct=direct,
        exponents=exponents, exponent_steps=int(counted), qr_count=qr_count,
        log_step_bound=res["step"] if n_lags else None,
        meta=dict(start=int(start), transient=int(transient), seed=int(seed),
                  inputs=source.kind, input_scale=float(input_scale),
                  qr_every=("adaptive" if qr_every is None else int(qr_every)),
                  final_product_rank=(int(ranks[-1]) if ranks else None),
                  loss_gradient="unit vector on the output state at step t0+k, drawn from seed"))
    if bound is not None:
        profile.gamma = bound.gamma
        profile.sigma_max = bound.sigma_max(params)
        profile.bound_rate = bound.rate(params)
        if n_lags:
            profile.log_bound = bound.log_bound(params, lags)
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

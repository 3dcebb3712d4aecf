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
from .accumulators import ACCURACY, Frame, LogSum, Product, frobenius_norm
from .bounds import log_step_norms, pascanu_bound
from .jacobian_stream import InputSource, JacobianStream

UNITS = "natural log per step"


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


def initial_state(model, h0, N, seed):
    """The initial states of a run: ``h0`` (None, "zero", "random", an array or a dict) as arrays (N, size)."""
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
    k : int or None
        Lyapunov exponents to compute (0 .. state size; the state of an LSTM is ``(h, c)``, 2H); None: all
        of them (the whole spectrum).
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
    k = S if k is None else k  # None: the whole spectrum, as lyapunov_spectrum and `symrnn decay` take it
    lags, transient, step_bound = _options(T, k, S, lags, start, curve, transient, qr_every, step_bound)
    source = _input_source(inputs, T, model.sizes["D"], seed, input_scale)
    state = initial_state(model, h0, 1, seed)
    meta = dict(start=int(start), transient=int(transient), seed=int(seed), inputs=source.kind,
                input_scale=float(input_scale), qr_every=("adaptive" if qr_every is None else int(qr_every)),
                loss_gradient="unit vector on the output state at step t0+k, drawn from seed")
    if stream.zero:
        return _zero_profile(model, stream, T, k, lags, meta)
    curve_ = _Curve(stream, model, lags, start, seed, step_bound)
    with _blas_one_thread():  # the frame's first QR too: threads on a 128 x 128 QR cost more than they give
        frame = Frame(S, k, seed, qr_every, transient) if k else None
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=T, desc=f"{model.cell.name} T={T}", unit="step", leave=False)
    with _blas_one_thread():
        # a few columns (the top exponents, no determinants): J_t applied term by term (the step bound,
        # when asked for, forms each J_t from its terms)
        implicit = frame is None or (not frame.identity and 4 * k <= S)
        for t0, chunk, _ in stream.stream(params, source, state, progress=bar, implicit=implicit):
            _run_chunk(stream, chunk, t0, T, curve_, frame)
    if bar is not None:
        bar.close()
    return _profile(model, params, stream, T, k, curve_, frame, meta)


def _run_chunk(stream, chunk, t0, T, curve, frame):
    """The steps of one chunk: compiled loops when the stream has them, else a Python step each."""
    curve.begin_chunk(chunk, t0)
    if frame is not None:
        frame.begin_chunk(chunk)
    if stream.compiled is not None:
        from .compiled_steps import curve_chunk, frame_chunk
        if frame is not None:
            frame_chunk(frame, chunk, t0, T, stream.compiled)
        curve_chunk(curve, chunk, t0, stream.compiled)
        return
    for i in range(chunk.C):
        if frame is not None:
            frame.step(chunk, i, t0 + i, last=i == chunk.C - 1 or t0 + i == T - 1)
        curve.step(chunk, i, t0 + i)


def _options(T, k, S, lags, start, curve, transient, qr_every, step_bound):
    """The checked lags and the defaults of ``transient`` and ``step_bound``."""
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
    return lags, transient, step_bound


def _input_source(inputs, T, D, seed, input_scale):
    source = inputs if isinstance(inputs, InputSource) else InputSource(inputs, T, 1, D, seed, input_scale)
    if source.array is not None:
        if source.array.ndim != 3 or source.array.shape[0] < T or source.array.shape[2] != D:
            raise ShapeError(f"inputs has shape {source.array.shape}; expected (T, 1, D) = ({T}, 1, {D}).")
        source.array = source.array[:, :1]
    source.T = T
    return source


class _Curve:
    """The norms of ``ds_{t0+k}/ds_{t0}`` read at the lags: the whole product, its blocks, the
    direct paths, ``dL/ds_{t0}`` for a unit loss gradient, and the step bound."""

    def __init__(self, stream, model, lags, start, seed, step_bound):
        lay = self.lay = stream.layout
        self.lags, self.start, self.step_bound = lags, start, step_bound
        n = len(lags)
        out = lay.slice(model.out)
        self.g = np.zeros(stream.state_size)
        self.g[out] = np.random.default_rng([seed, 11]).standard_normal(out.stop - out.start)
        self.g /= np.linalg.norm(self.g)
        self.res = dict(spec=np.full(n, np.nan), frob=np.full(n, np.nan), grad=np.full(n, np.nan),
                        step=np.full(n, np.nan) if step_bound else None)
        keys = [(s, p) for s in lay.names for p in lay.names] if len(lay.names) > 1 else []
        self.blocks = {key: (np.full(n, np.nan), np.full(n, np.nan)) for key in keys}
        self.direct_states = [s for s, b in stream.direct.items() if b is not None]
        self.direct = {s: (np.full(n, np.nan), np.full(n, np.nan)) for s in self.direct_states}
        self.direct_log = {s: LogSum(lay.sizes[lay.names.index(s)]) for s in self.direct_states}
        self.M = Product(stream.state_size) if n else None
        self.ranks, self.log_step, self.next_lag = [], LogSum(), 0
        self.last = lags[-1] if n else 0
        self.step_logs = None

    def begin_chunk(self, chunk, t0):
        self.step_logs = (log_step_norms(chunk)[:chunk.C] if self.step_bound and t0 + chunk.C > self.start
                          else None)

    def step(self, chunk, i, t):
        """The step from ``s_t`` to ``s_{t+1}``, chunk index ``i``."""
        if self.M is None or t < self.start or t - self.start >= self.last:
            return
        self.M.step(chunk, i)
        for s in self.direct_states:
            with np.errstate(divide="ignore"):
                self.direct_log[s].add(np.log(np.abs(chunk.direct[s][i, 0])))
        if self.step_logs is not None:
            self.log_step.add(self.step_logs[i])
        if self.next_lag < len(self.lags) and t - self.start + 1 == self.lags[self.next_lag]:
            self._read(self.next_lag)
            self.next_lag += 1

    def _read(self, j):
        res, M, lay = self.res, self.M, self.lay
        sig, log_scale = M.read()
        self.ranks.append(M.rank)
        with np.errstate(divide="ignore"):
            res["spec"][j] = log_scale + np.log(sig[0])
            res["frob"][j] = log_scale + 0.5 * np.log(np.sum(sig ** 2))
            res["grad"][j] = log_scale + np.log(frobenius_norm(M.transpose_times(self.g)))
            if res["step"] is not None:
                res["step"][j] = self.log_step.value
            for (s, p), (bs, bf) in self.blocks.items():
                n2, nf = M.block_norms(lay.slice(s), lay.slice(p))
                bs[j] = log_scale + np.log(n2)
                bf[j] = log_scale + np.log(nf)
        for s, (ds, df) in self.direct.items():
            L = self.direct_log[s].value
            ds[j] = top = L.max()
            df[j] = top + 0.5 * np.log(np.sum(np.exp(2 * (L - top)))) if np.isfinite(top) else -np.inf


def _profile(model, params, stream, T, k, curve, frame, meta):
    """The :class:`DecayProfile` of a finished run, with its notes and the bounds."""
    exponents, counted, accuracy = None, 0, None
    unread, null = _unread(stream)
    if frame is not None:
        exponents, counted = frame.exponents(null_from=stream.state_size - null if null else None)
        accuracy = frame.accuracy()
    meta["final_product_rank"] = int(curve.ranks[-1]) if curve.ranks else None
    res, lay, n = curve.res, curve.lay, len(curve.lags)
    profile = DecayProfile(
        cell=model.cell.name, T=int(T), state_names=list(lay.names), state_size=stream.state_size,
        lags=curve.lags, log_spectral=res["spec"] if n else None, log_frobenius=res["frob"] if n else None,
        log_grad=res["grad"] if n else None,
        blocks={f"{s}<-{p}": v for (s, p), v in curve.blocks.items()}, direct=curve.direct,
        exponents=exponents, exponent_steps=int(counted), qr_count=frame.qr_count if frame else 0,
        log_step_bound=res["step"] if n else None, accuracy=accuracy, meta=meta,
        notes=[f"Exponents' accuracy: {_accuracy_text(accuracy, k, stream.state_size)}."] if accuracy else [])
    if stream.stopped is not None:
        _record_overflow(profile, stream.stopped, frame)
    if null and frame is not None and frame.k > stream.state_size - null:
        profile.notes.append(f"The update never reads the previous {', '.join(unread)} ({null} of the "
                             f"{stream.state_size} directions): every step Jacobian is zero on them, so the frame's "
                             f"last {null} columns have exponents -inf exactly (QR alone gives them as rounding "
                             f"noise, about ln(1e-16) per step).")
    _add_bound(profile, model, params, curve.lags)
    return profile


def _unread(stream):
    """The states no update reads (every block ``ds_t/dp_{t-1}`` of ``p`` is zero in the derivation) and their
    total size: an exact null space of every step Jacobian."""
    lay = stream.layout
    unread = [p for p in lay.names if all(stream.blocks[(s, p)].plan[0] == "zero" for s in lay.names)]
    return unread, sum(lay.sizes[lay.names.index(p)] for p in unread)


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

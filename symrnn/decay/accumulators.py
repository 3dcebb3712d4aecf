"""The accumulators of a decay run: products of step Jacobians and the Lyapunov frame, in log space.

:class:`LogSum` adds logarithms with compensation; :class:`Product` keeps the running product
``ds_{t0+k}/ds_{t0}`` at unit scale (its scale a logarithm beside it, its rank cut where
float64 carries only noise); :class:`Frame` evolves the orthonormal frame of the first ``k``
Lyapunov exponents with QR at adaptive intervals.  :mod:`symrnn.decay.lyapunov` feeds them step
by step from a :class:`~symrnn.decay.jacobian_stream.JacobianStream`.
"""
from __future__ import annotations

import math

import numpy as np

#: the accuracy the exponents are held to, natural log per step: the sum of the whole spectrum
#: against the mean of ``ln|det J_t|`` (the same number by another route), checked while it runs
ACCURACY = 1e-6
#: largest spread of ``ln|R_ii|`` one QR interval may build up: the smallest ``R_ii`` then keeps a
#: relative accuracy of about ``eps * 1e4 = 2e-12``; an interval that exceeds it is done again
#: with a QR every step
MAX_LOG_SPREAD = np.log(1e4)
MAX_INTERVAL = 16


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


def frobenius_norm(a) -> float:
    """The Frobenius norm, scaled so that the squares of tiny (1e-170) or huge entries neither
    underflow nor overflow."""
    m = float(np.max(np.abs(a))) if a.size else 0.0
    if m == 0.0 or not math.isfinite(m):
        return m
    return m * math.sqrt(float(np.sum(np.square(a / m))))


class Product:
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
        nrm = frobenius_norm(self.U)
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
        elif self.U.shape[1] == 1:  # rank one, M = u b: sigma = |u| |b|, u / |u| and b / |b| its factors
            nu, nb = frobenius_norm(self.U), frobenius_norm(self.B)
            self.U, self.B = self.U / nu, self.B / nb
            self._add_log(math.log(nu * nb))
            return np.ones(1), self.log_scale
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
        elif self.U.shape[1] == 1:  # rank one: both norms are |u_rows| |b_cols|
            n = frobenius_norm(self.U[rows]) * frobenius_norm(self.B[:, cols])
            return n, n
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


def _log(x):
    with np.errstate(divide="ignore"):
        return np.log(x)


def _spread(logs):
    """The spread ``max - min`` of the finite ``ln|R_ii|`` of one QR."""
    finite = logs[np.isfinite(logs)]
    return float(finite.max() - finite.min()) if finite.size > 1 else 0.0


class Frame:
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
            self.dets = log_abs_dets(chunk)

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
            r = frobenius_norm(Q)
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

    def exponents(self, null_from=None):
        """The exponents, descending, and the steps they average over (the transient included when
        no step after it was run).  ``null_from``: the frame's columns from this one on lie in an exact
        null space of every step Jacobian (states never read): their ``R_ii`` are zero but for
        rounding, and their exponents ``-inf``."""
        if self.counted:
            e, n = self.sums.value / self.counted, self.counted
        elif self.all_steps:
            e, n = self.all_sums.value / self.all_steps, self.all_steps
        else:
            return np.full(self.k, np.nan), 0
        if null_from is not None:
            e = np.where(np.arange(self.k) >= null_from, -np.inf, e)
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


def log_abs_dets(chunk, n=0):
    """``ln|det J_t|`` of every usable step of a chunk (batch element ``n``).

    When the previous states whose blocks are all diagonal (``chunk.diag_prev``, the LSTM's ``c``)
    only feed themselves diagonally, ``J = [[A, B], [C, F]]`` with ``F`` and ``B`` diagonal, and
    ``det J = det F det(A - B F^-1 C)`` (the Schur complement: an LU of the dense states' size, not of
    the whole state's); steps where ``F`` has a zero, or the complement is not finite, take the whole
    ``J``'s LU."""
    C, lay = chunk.C, chunk.layout
    G, D = chunk.diag_prev, chunk.dense_prev
    if (not G or not D or chunk.dense is None or any((s, p) in chunk.diag for s in G for p in G if s != p)
            or any((p, p) not in chunk.diag for p in G)):
        return _full_log_dets(chunk, n, np.arange(C))
    rows_d = np.concatenate([np.arange(lay.slice(s).start, lay.slice(s).stop) for s in D])
    J = chunk.dense[:C, n]
    schur = J[:, rows_d, :]  # a copy (fancy indexing)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = {p: chunk.diag[(p, p)][:C, n] for p in G}
        start = 0
        for s in D:
            size = lay.sizes[lay.names.index(s)]
            for p in G:
                if (s, p) in chunk.diag:
                    schur[:, start:start + size, :] -= (chunk.diag[(s, p)][:C, n] / d[p])[..., None] * J[:, lay.slice(p), :]
            start += size
        out = np.sum(np.log(np.abs(np.concatenate([d[p] for p in G], axis=1))), axis=1)
        bad = ~np.isfinite(out) | ~np.isfinite(schur).reshape(C, -1).all(axis=1)
        if not bad.all():
            ok = ~bad
            out[ok] += np.linalg.slogdet(schur[ok])[1]
    if bad.any():
        out[bad] = _full_log_dets(chunk, n, np.flatnonzero(bad))
    return out


def _full_log_dets(chunk, n, steps):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.linalg.slogdet(chunk.full(n)[:chunk.C][steps])[1]

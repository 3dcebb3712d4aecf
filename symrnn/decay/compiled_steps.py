"""The per-step accumulators of a decay run as compiled loops over a chunk's steps (Numba).

The NumPy route (:mod:`symrnn.decay.accumulators`, driven step by step by
:func:`symrnn.decay.lyapunov.decay_profile`) pays a few dozen Python calls per time step; here
the same arithmetic runs as one Numba function per chunk: ``J_t M`` from the chunk's dense
columns and diagonal blocks, the running product's rescaling with its Neumaier-compensated log
scale, the direct paths' log sums, and the Lyapunov frame's steps, QR factorisations (at the
same adaptive intervals, an interval redone with a QR every step when its spread is too wide)
and log sums.  What the NumPy route reads between steps (the norms at the lags, the identity
check) stays in Python: the compiled loop stops at each lag.

The functions below are plain Python; :func:`kernels` compiles them with Numba (cached on
disk) the first time a run needs them.
"""
from __future__ import annotations

import math

import numpy as np

from .accumulators import MAX_INTERVAL, MAX_LOG_SPREAD

#: below this many columns ``J_t M`` is a matrix-vector product per column (BLAS's gemm costs
#: about 12 us on a 256 x 64 by 64 x 2 product, against 1.6 us for each gemv)
NARROW = 8


def neumaier(s, c, x):
    """``LogSum.add`` in place on the arrays ``s``, ``c`` (the sum and its compensation)."""
    for i in range(s.shape[0]):
        t = s[i] + x[i]
        if abs(s[i]) >= abs(x[i]):
            c[i] = c[i] + ((s[i] - t) + x[i])
        else:
            c[i] = c[i] + ((x[i] - t) + s[i])
        if not math.isfinite(t):
            c[i] = 0.0
        s[i] = t


def apply(J, n, i, M):
    """``J_i M`` for batch element ``n``.  ``J``: :func:`operator`'s tuple; from the chunk's dense
    columns (``rows``: the rows of ``M`` they read, ``nd`` of them) or, without them, term by term
    (:func:`apply_terms`); then the diagonal blocks (``entries``: row, column, length, offset in ``DV``)."""
    implicit, dense, nd, rows, DV, entries = J[0], J[1], J[2], J[3], J[4], J[5]
    if implicit:
        out = apply_terms(J[6], n, i, J[7], J[8], J[9], J[10], J[11], J[12], M)
    else:
        out = np.zeros((M.shape[0], M.shape[1]))
        if nd and M.shape[1] < NARROW:  # a few columns: one matrix-vector product each
            x = np.empty(nd)
            for q in range(M.shape[1]):
                for r in range(nd):
                    x[r] = M[rows[r], q]
                out[:, q] = np.dot(dense[i, n], x)
        elif nd:
            Md = np.empty((nd, M.shape[1]))
            for r in range(nd):
                Md[r] = M[rows[r]]
            np.dot(dense[i, n], Md, out)
    for e in range(entries.shape[0]):
        row, col, length, off = entries[e, 0], entries[e, 1], entries[e, 2], entries[e, 3]
        for r in range(length):
            d = DV[i, n, off + r]
            for q in range(M.shape[1]):
                out[row + r, q] += d * M[col + r, q]
    return out


def _combine(out, q, V, g, terms, coef, y):
    """``out[:, q] += c l * y[rows]`` for the terms of group ``g`` (``y``: the group's product)."""
    for e in range(terms.shape[0]):
        if terms[e, 1] != g:
            continue
        row, y0, length, left, c = terms[e, 0], terms[e, 2], terms[e, 3], terms[e, 4], coef[e]
        if left >= 0:
            for r in range(length):
                out[row + r, q] += c * V[left, r] * y[y0 + r]
        else:
            for r in range(length):
                out[row + r, q] += c * y[y0 + r]


def apply_terms(VS, n, i, groups, W, terms, coef, DD, diagonals, M):
    """``J_i M`` from the step's vectors ``VS[i, n]``, the terms ``c Diag(l) W Diag(r)`` never
    multiplied out.  ``groups``: (first column of ``M``, columns, ``r`` or -1, offset in ``W``, rows)
    of each stack of weight matrices that read the same columns through the same ``r``, one BLAS
    product each; ``terms``: (row, group, row in the group's product, length, ``l`` or -1) with
    ``coef``; ``diagonals``: (row, column, length, offset in ``DD``) of the terms without a matrix."""
    k = M.shape[1]
    out = np.zeros((M.shape[0], k))
    V = VS[i, n]
    for g in range(groups.shape[0]):
        col, cols, right, off, nrows = groups[g, 0], groups[g, 1], groups[g, 2], groups[g, 3], groups[g, 4]
        Wg = W[off:off + nrows * cols].reshape((nrows, cols))
        if k < NARROW:  # a few columns: one matrix-vector product each (BLAS's gemm is slow on them)
            x = np.empty(cols)
            for q in range(k):
                for r in range(cols):
                    x[r] = (V[right, r] if right >= 0 else 1.0) * M[col + r, q]
                y = np.dot(Wg, x)
                _combine(out, q, V, g, terms, coef, y)
        else:
            X = np.empty((cols, k))
            for r in range(cols):
                a = V[right, r] if right >= 0 else 1.0
                for q in range(k):
                    X[r, q] = a * M[col + r, q]
            Y = np.dot(Wg, X)
            for q in range(k):
                _combine(out, q, V, g, terms, coef, Y[:, q])
    for e in range(diagonals.shape[0]):
        row, col, length, off = diagonals[e, 0], diagonals[e, 1], diagonals[e, 2], diagonals[e, 3]
        for r in range(length):
            d = DD[i, n, off + r]
            for q in range(k):
                out[row + r, q] += d * M[col + r, q]
    return out


def frobenius(a):
    """:func:`symrnn.decay.accumulators.frobenius_norm` of a 2-d array, summed in order."""
    m = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            x = abs(a[i, j])
            if math.isnan(x) or x > m:
                m = x
    if m == 0.0 or not math.isfinite(m):
        return m
    total = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            total += (a[i, j] / m) ** 2
    return m * math.sqrt(total)


def add_log(scale, x):
    """``Product._add_log``: ``scale = [sum, compensation]``."""
    s = scale[0]
    t = s + x
    if not math.isfinite(t):
        scale[0], scale[1] = t, 0.0
        return
    scale[1] += ((s - t) + x) if abs(s) >= abs(x) else ((x - t) + s)
    scale[0] = t


def product_steps(J, n, DR, direct, U, scale, i0, i1, dsum, dcomp, logs, lsum):
    """Steps ``i0 .. i1 - 1`` of the running product ``U`` (``Product.step``), the direct paths'
    log sums (``direct``: offset and length in ``DR`` of each) and the step bound's log sum
    (``logs``, empty when not kept); returns the new ``U``."""
    x = np.empty(1)
    for i in range(i0, i1):
        if math.isfinite(scale[0] + scale[1]):
            U = apply(J, n, i, U)
            nrm = frobenius(U)
            if nrm > 0 and math.isfinite(nrm):
                U /= nrm
                add_log(scale, math.log(nrm))
            elif nrm == 0:
                scale[0], scale[1] = -math.inf, 0.0
        for e in range(direct.shape[0]):
            off, length = direct[e, 0], direct[e, 1]
            v = np.empty(length)
            for r in range(length):
                a = abs(DR[i, n, off + r])
                v[r] = math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)
            neumaier(dsum[e, :length], dcomp[e, :length], v)
        if logs.shape[0]:
            x[0] = logs[i]
            neumaier(lsum[0:1], lsum[1:2], x)
    return U


def _qr(Q, k):
    """``Frame._qr``: the new frame and ``ln |R_ii|``."""
    if k == 1:
        r = frobenius(Q)
        logs = np.empty(1)
        logs[0] = math.log(r) if r > 0 else (-math.inf if r == 0 else math.nan)
        return (Q / r if r > 0 else Q), logs
    Qn, R = np.linalg.qr(Q)
    Qn = np.ascontiguousarray(Qn)  # LAPACK's Q is Fortran-ordered: one layout for every frame (typed 'C')
    logs = np.empty(k)
    for j in range(k):
        a = abs(R[j, j])
        logs[j] = math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)
    return Qn, logs


def _spread(logs):
    lo, hi, count = math.inf, -math.inf, 0
    for x in logs:
        if math.isfinite(x):
            lo, hi, count = min(lo, x), max(hi, x), count + 1
    return hi - lo if count > 1 else 0.0


def _count(logs, i0, t, n, ints, sums, dets, logdet, transient, identity):
    """``Frame._count``; ``sums``: (4, k) = all_sums (s, c), sums (s, c)."""
    neumaier(sums[0], sums[1], logs)
    ints[3] += n
    if t + 1 > transient:
        neumaier(sums[2], sums[3], logs)
        ints[2] += n
        if identity:
            x = np.zeros(1)
            for j in range(i0, i0 + n):
                x[0] += dets[j]
            neumaier(logdet[0:1], logdet[1:2], x)


def frame_steps(J, n, Q, C, t0, T, k, qr_every, transient, identity,
                ints, sums, logdet, dets, max_spread):
    """Every step of a chunk of the Lyapunov frame (``Frame.step`` and ``Frame._close``).
    ``ints``: steps, interval, counted, all_steps, qr_count, redone, every_step_from (-1: none)."""
    Q0, start_i, start_t = Q, 0, 0
    for i in range(C):
        t = t0 + i
        if ints[0] == 0:
            Q0, start_i, start_t = Q, i, t
        Q = apply(J, n, i, Q)
        ints[0] += 1
        last = i == C - 1 or t == T - 1
        if not (ints[0] >= ints[1] or last or t + 1 == transient):
            continue
        steps = ints[0]
        Qn, logs = _qr(Q, k)
        ints[4] += 1
        spread = _spread(logs)
        if qr_every == 0 and steps > 1 and spread > MAX_LOG_SPREAD:
            ints[5] += 1
            Qn, per_step = Q0, 0.0
            for j in range(steps):
                Qn, logs = _qr(apply(J, n, start_i + j, Qn), k)
                ints[4] += 1
                per_step = max(per_step, _spread(logs))
                _count(logs, start_i + j, start_t + j, 1, ints, sums, dets, logdet, transient, identity)
            max_spread[0] = max(max_spread[0], per_step)
        else:
            _count(logs, start_i, start_t + steps - 1, steps, ints, sums, dets, logdet, transient, identity)
            max_spread[0] = max(max_spread[0], spread)
            per_step = spread / steps
        Q = Qn
        ints[0] = 0
        if qr_every == 0 and ints[6] < 0:
            ints[1] = int(min(max(MAX_LOG_SPREAD / per_step, 1.0), MAX_INTERVAL)) if per_step > 0 else MAX_INTERVAL
    return Q


_KERNELS = {}


def kernels() -> dict:
    """``{"apply", "product_steps", "frame_steps"}`` compiled by Numba (once per process; machine code cached)."""
    if not _KERNELS:
        import numba
        jit = numba.njit(cache=True, error_model="numpy")
        g = globals()
        for name in ("neumaier", "_combine", "apply_terms", "apply", "frobenius", "add_log", "_qr", "_spread", "_count"):
            g[name] = jit(g[name])
        _KERNELS["apply"] = g["apply"]
        _KERNELS["product_steps"] = g["product_steps"] = jit(product_steps)
        _KERNELS["frame_steps"] = g["frame_steps"] = jit(frame_steps)
    return _KERNELS


# -- driving the compiled loops from a run's accumulators ------------------------------------
def packed(kernel, layout, dense_prev):
    """What the compiled loops need to read a stream's chunks: ``(nd, rows, entries)`` (the dense
    columns' count and the rows of ``M`` they read; each diagonal block's row, column, length and
    offset in the diagonal buffer)."""
    rows = np.concatenate([np.arange(layout.slice(p).start, layout.slice(p).stop) for p in dense_prev]
                          ) if dense_prev else np.zeros(0, dtype=np.int64)
    entries = np.array([[layout.slice(s).start, layout.slice(p).start, sl.stop - sl.start, sl.start]
                        for (s, p), sl in kernel.diag_slices.items()], dtype=np.int64).reshape(-1, 4)
    return len(rows), rows.astype(np.int64), entries


def operator(chunk, compiled):
    """The tuple :func:`apply` reads: a chunk's step Jacobians as dense columns, or as the
    vectors of their terms (a stream run with ``implicit=True``)."""
    nd, rows, entries = compiled.packed
    if chunk.vectors is not None:
        groups, W, terms, coef, diagonals = chunk.tables
        return (True, np.zeros((1, 1, 1, 1)), nd, rows, compiled.DV, entries, chunk.vectors, groups, W, terms,
                coef, chunk.dd, diagonals)
    dense = chunk.dense if chunk.dense is not None else np.zeros((chunk.C, 1, 1, 1))
    none = np.zeros((0, 5), dtype=np.int64)
    return (False, dense, nd, rows, compiled.DV, entries, np.zeros((1, 1, 1, 1)), none, np.zeros(0), none,
            np.zeros(0), np.zeros((1, 1, 1)), np.zeros((0, 4), dtype=np.int64))


def curve_chunk(curve, chunk, t0, compiled):
    """The steps of a chunk of :class:`symrnn.decay.lyapunov`'s curve, compiled between its lags."""
    if curve.M is None:
        return
    lo, hi = max(0, curve.start - t0), min(chunk.C, curve.start + curve.last - t0)
    if lo >= hi:
        return
    J = operator(chunk, compiled)
    k = kernels()
    states = curve.direct_states
    slices = compiled.kernel.direct_slices
    direct = np.array([[slices[s].start, slices[s].stop - slices[s].start] for s in states],
                      dtype=np.int64).reshape(-1, 2)
    width = max([1] + [int(n) for _, n in direct])
    dsum, dcomp = np.zeros((len(states), width)), np.zeros((len(states), width))
    logs = curve.step_logs if curve.step_logs is not None else np.zeros(0)
    M = curve.M
    i = lo
    while i < hi:
        stop = hi
        if curve.next_lag < len(curve.lags):
            stop = min(hi, curve.start + int(curve.lags[curve.next_lag]) - t0)
        for e, s in enumerate(states):
            n = direct[e, 1]
            dsum[e, :n], dcomp[e, :n] = curve.direct_log[s].s, curve.direct_log[s].c
        scale = np.array([M._s, M._c])
        lsum = np.array([float(curve.log_step.s), float(curve.log_step.c)])
        M.U = k["product_steps"](J, 0, compiled.DR, direct,
                                 np.ascontiguousarray(M.U), scale, i, stop, dsum, dcomp, logs, lsum)
        M._s, M._c = float(scale[0]), float(scale[1])
        curve.log_step.s, curve.log_step.c = np.float64(lsum[0]), np.float64(lsum[1])
        for e, s in enumerate(states):
            n = direct[e, 1]
            curve.direct_log[s].s, curve.direct_log[s].c = dsum[e, :n].copy(), dcomp[e, :n].copy()
        i = stop
        if curve.next_lag < len(curve.lags) and t0 + stop - curve.start == curve.lags[curve.next_lag]:
            curve._read(curve.next_lag)
            curve.next_lag += 1


def frame_chunk(frame, chunk, t0, T, compiled):
    """Every step of a chunk of a :class:`~symrnn.decay.accumulators.Frame`, compiled."""
    from .accumulators import ACCURACY
    J = operator(chunk, compiled)
    ints = np.array([frame.steps, frame.interval, frame.counted, frame.all_steps, frame.qr_count, frame.redone,
                     -1 if frame.every_step_from is None else frame.every_step_from], dtype=np.int64)
    sums = np.stack([frame.all_sums.s, frame.all_sums.c, frame.sums.s, frame.sums.c]).astype(np.float64)
    logdet = np.array([float(frame.logdet.s), float(frame.logdet.c)])
    dets = frame.dets if frame.identity and frame.dets is not None else np.zeros(chunk.C)
    max_spread = np.array([frame.max_spread])
    frame.Q = kernels()["frame_steps"](J, 0, np.ascontiguousarray(frame.Q),
                                       chunk.C, t0, T, frame.k, frame.qr_every or 0, frame.transient,
                                       frame.identity, ints, sums, logdet, np.ascontiguousarray(dets), max_spread)
    (frame.steps, frame.interval, frame.counted, frame.all_steps, frame.qr_count,
     frame.redone) = (int(x) for x in ints[:6])
    frame.all_sums.s, frame.all_sums.c, frame.sums.s, frame.sums.c = (a.copy() for a in sums)
    frame.logdet.s, frame.logdet.c = np.float64(logdet[0]), np.float64(logdet[1])
    frame.max_spread = float(max_spread[0])
    t = t0 + chunk.C - 1  # the chunk's last step closed an interval: the identity's check (Frame.step)
    if (frame.identity and frame.qr_every is None and frame.every_step_from is None and frame.counted
            and frame.identity_error() > ACCURACY / 10):
        frame.every_step_from = t + 1
        frame.interval = 1

"""Parallel ways to solve the diagonal linear recurrence ``s_t = a_t s_{t-1} + b_t`` (t = 1..T, axis 0),
as written in parallel-scan code: an associative (Hillis-Steele) scan, a chunked scan that carries the
state across chunk boundaries, and the log-space scan of the minGRU paper (Feng et al. 2024,
``log h_t = a*_t + logcumsumexp(log b - a*)``, ``a*`` the cumulative sum of ``log a``).  ``a`` and
``b`` may be complex (LRU).  ``bug=`` plants a mistake met in such code."""
import numpy as np


def associative_scan(a, b, s0):
    """Every ``s_t`` by the associative operator ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)`` in
    ``ceil(log2 T)`` rounds, each combining element ``t`` with element ``t - 2^k``."""
    dtype = np.result_type(a, b)
    A, B = a.astype(dtype), b.astype(dtype)
    shift = 1
    while shift < len(a):
        A_prev, B_prev = A[:-shift].copy(), B[:-shift].copy()
        B[shift:] = A[shift:] * B_prev + B[shift:]
        A[shift:] = A[shift:] * A_prev
        shift *= 2
    return A * s0 + B


def chunked_scan(a, b, s0, chunk=3, bug=None):
    """Each chunk solved from a zero state with its own cumulative products, then the carry (the state at
    the chunk's start) added through them.  ``bug="carry-dropped"``: every chunk after the first starts
    from the state the first chunk started from, so the carry is lost at each boundary."""
    out, carry = [], s0
    for start in range(0, len(a), chunk):
        a_c, b_c = a[start:start + chunk], b[start:start + chunk]
        local = associative_scan(a_c, b_c, np.zeros_like(b_c[0]))
        prods = np.cumprod(a_c, axis=0)
        states = prods * carry + local
        out.append(states)
        carry = s0 if bug == "carry-dropped" else states[-1]
    return np.concatenate(out)


def _log_part(v):
    """``log v`` where ``v > 0`` and ``-inf`` elsewhere."""
    with np.errstate(divide="ignore"):
        return np.where(v > 0, np.log(np.where(v > 0, v, 1.0)), -np.inf)


def log_space_scan(log_a, b, s0, bug=None):
    """The minGRU paper's log-space scan for real ``a_t = exp(log_a_t) > 0`` and a real ``b`` of either sign:
    the positive and the negative parts of ``b`` and ``s0`` are scanned apart (the paper's ``g(x) > 0``
    avoids the split), ``s_t = exp(a*_t) (s0 + sum_k b_k exp(-a*_k))`` with ``logaddexp.accumulate``.
    ``bug="cumsum-off-by-one"``: ``a*`` the exclusive cumulative sum (it leaves out ``log a_t``)."""
    a_star = np.cumsum(log_a, axis=0)
    if bug == "cumsum-off-by-one":
        a_star = a_star - log_a
    out = 0.0
    for sign in (1.0, -1.0):
        terms = np.concatenate([_log_part(sign * s0)[None], _log_part(sign * b) - a_star])
        out = out + sign * np.exp(a_star + np.logaddexp.accumulate(terms, axis=0)[1:])
    return out


def reverse_scan(a, g, scan=associative_scan):
    """The adjoint recurrence of the backward, ``gbar_t = g_t + a_{t+1} gbar_{t+1}`` (``gbar_T = g_T``), by
    the same forward scan run on the reversed sequence; returns every ``gbar_t``."""
    a_next = np.concatenate([a[1:], np.zeros_like(a[:1])])
    return scan(a_next[::-1], g[::-1], np.zeros_like(g[0]))[::-1]

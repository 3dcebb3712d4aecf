"""minGRU, minLSTM, LRU and S6 (.s6) layers whose forward and backward solve the linear recurrence in parallel
(tests/corpus_parallel/scans.py), in symrnn's names (layout ``NATIVE``), time-major, row vectors.

minGRU and minLSTM: ``forward(x, h0, params) -> (h, cache)``, ``backward(dh, cache) -> (dx, dh0, grads)``.
LRU (complex arithmetic, Orvieto et al. 2023): ``forward(x, s0, params) -> (y, states, cache)`` with
``s0`` and ``states`` dicts by symrnn's state names (``h_re``, ``h_im``, ``out``) and
``backward(dy, cache) -> (dx, ds0, grads)``.  Each forward writes the recurrence
``s_t = a_t s_{t-1} + b_t`` and hands it to a scan; each backward runs the adjoint recurrence
``G_t = g_t + conj(a_{t+1}) G_{t+1}`` through a reversed scan and reads every gradient off ``G``.
"""
import numpy as np

from .s6 import s6
from .scans import associative_scan, chunked_scan, log_space_scan, reverse_scan


def _sequential(a, b, s0):
    out, s = [], s0
    for a_t, b_t in zip(a, b):
        s = a_t * s + b_t
        out.append(s)
    return np.stack(out)


def solve(a, b, s0, form, bug=None, log_a=None):
    """``s_1 .. s_T`` by the named form; ``log_a`` for the log-space form (real ``a > 0``)."""
    if form == "sequential":
        return _sequential(a, b, s0)
    if form == "associative":
        return associative_scan(a, b, s0)
    if form == "chunked":
        return chunked_scan(a, b, s0, chunk=3, bug=bug)
    if form == "log-space":
        return log_space_scan(np.log(a) if log_a is None else log_a, b, s0, bug=bug)
    raise ValueError(form)


def adjoint(a, g, form, bug=None):
    """``G_t = g_t + a_{t+1} G_{t+1}``; the chunked form with ``bug="reverse-carry-dropped"`` loses the carry."""
    if form == "chunked":
        return reverse_scan(a, g, lambda a_, b_, s0: chunked_scan(
            a_, b_, s0, chunk=3, bug="carry-dropped" if bug == "reverse-carry-dropped" else None))
    return reverse_scan(a, g, _sequential if form == "sequential" else associative_scan)


def _sum_outer(g, x):
    return np.einsum("tnh,tnd->hd", g, x)


def _log_sigmoid(k):
    return -np.logaddexp(0.0, -k)


# -- minGRU: a = 1 - z (log a = log sigmoid(-k)), b = z htilde ---------------------------------
def min_gru(form, bug=None):
    def forward(x, h0, p):
        k = x @ p["U_z"].T + p["b_z"]
        z, ht = np.exp(_log_sigmoid(k)), x @ p["U_h"].T + p["b_h"]
        h = solve(1 - z, z * ht, h0, form, bug, log_a=_log_sigmoid(-k))
        return h, (x, h0, p, z, ht, h)

    def backward(dh, cache):
        x, h0, p, z, ht, h = cache
        G = adjoint(1 - z, dh, form, bug)
        h_prev = np.concatenate([h0[None], h[:-1]])
        dk, dht = G * (ht - h_prev) * z * (1 - z), G * z
        grads = {"U_z": _sum_outer(dk, x), "b_z": dk.sum((0, 1)), "U_h": _sum_outer(dht, x), "b_h": dht.sum((0, 1))}
        dh0 = G[0] if bug == "h0-decay-missing" else (1 - z[0]) * G[0]
        return dk @ p["U_z"] + dht @ p["U_h"], dh0, grads
    return forward, backward


# -- minLSTM: a = f / (f + i), b = i / (f + i) htilde (the paper's log f' = log f - log(f + i)) ------
def min_lstm(form, bug=None):
    def forward(x, h0, p):
        lf, li = _log_sigmoid(x @ p["U_f"].T + p["b_f"]), _log_sigmoid(x @ p["U_i"].T + p["b_i"])
        log_fp = lf - np.logaddexp(lf, li)
        f, i, ht = np.exp(lf), np.exp(li), x @ p["U_h"].T + p["b_h"]
        h = solve(np.exp(log_fp), i / (f + i) * ht, h0, form, bug, log_a=log_fp)
        return h, (x, h0, p, f, i, ht, h)

    def backward(dh, cache):
        x, h0, p, f, i, ht, h = cache
        s = f + i
        G = adjoint(f / s, dh, form, bug)
        h_prev = np.concatenate([h0[None], h[:-1]])
        dfp, dip = G * h_prev, G * ht
        daf, dai = i * (dfp - dip) / s ** 2 * f * (1 - f), f * (dip - dfp) / s ** 2 * i * (1 - i)
        dht = G * i / s
        grads = {}
        for name, d in (("f", daf), ("i", dai), ("h", dht)):
            grads[f"U_{name}"], grads[f"b_{name}"] = _sum_outer(d, x), d.sum((0, 1))
        return daf @ p["U_f"] + dai @ p["U_i"] + dht @ p["U_h"], (f[0] / s[0]) * G[0], grads
    return forward, backward


# -- LRU: a = lambda (constant), b = gamma (B x); y = Re(C s) + d x -----------------------------------
def _lru_constants(p):
    lam = np.exp(-np.exp(p["nu"]) + 1j * np.exp(p["theta"]))
    return lam, np.sqrt(1 - np.abs(lam) ** 2), p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]


def lru(form, bug=None, gamma_route="modulus"):
    """``gamma_route="lambda"``: gamma's gradient sent back through lambda, as the paper's
    ``gamma = sqrt(1 - |lambda|^2)`` reads (correct; the phase's share cancels only up to rounding)."""
    def forward(x, s0, p):
        lam, gamma, B, C = _lru_constants(p)
        u = x @ B.T
        s = solve(np.broadcast_to(lam, u.shape), gamma * u, s0["h_re"] + 1j * s0["h_im"], form, bug)
        y = (s @ C.T).real + p["d"] * x
        return y, {"h_re": s.real, "h_im": s.imag, "out": y}, (x, s0, p, u, s)

    def backward(dy, cache):
        x, s0, p, u, s = cache
        lam, gamma, B, C = _lru_constants(p)
        a = np.broadcast_to(lam if bug == "conjugation-error" else np.conj(lam), u.shape)
        G = adjoint(a, dy @ np.conj(C), form, bug)  # G = dL/dRe(s) + i dL/dIm(s)
        s_prev = np.concatenate([(s0["h_re"] + 1j * s0["h_im"])[None], s[:-1]])
        g_w = np.conj(lam) * (np.conj(s_prev) * G).sum((0, 1))  # w = log lambda = -exp(nu) + i exp(theta)
        d_gamma = (np.conj(u) * G).real.sum((0, 1))
        r2 = np.abs(lam) ** 2
        if gamma_route == "lambda":  # dL/dlambda += d_gamma * dgamma/dlambda, then w = log lambda
            g_w = g_w + np.conj(lam) * (d_gamma * (-lam / gamma))
        d_nu = -g_w.real * np.exp(p["nu"])
        if bug != "gamma-path-dropped" and gamma_route != "lambda":
            d_nu = d_nu + d_gamma * r2 * np.exp(p["nu"]) / gamma
        g_u = gamma * G
        g_B = _sum_outer(g_u, x)
        grads = {"nu": d_nu, "theta": g_w.imag * np.exp(p["theta"]), "B_re": g_B.real, "B_im": g_B.imag,
                 "C_re": np.einsum("tnk,tnh->kh", dy, s.real), "C_im": -np.einsum("tnk,tnh->kh", dy, s.imag),
                 "d": (dy * x).sum((0, 1))}
        g0 = a[0] * G[0]
        ds0 = {"h_re": g0.real, "h_im": g0.imag, "out": np.zeros_like(s0["out"])}
        return (g_u @ np.conj(B)).real + dy * p["d"], ds0, grads
    return forward, backward


#: (cell, form) -> the layer maker
LAYERS = {("min-gru", "log-space"): min_gru, ("min-gru", "associative"): min_gru, ("min-gru", "chunked"): min_gru,
          ("min-lstm", "log-space"): min_lstm, ("min-lstm", "chunked"): min_lstm,
          ("lru", "sequential"): lru, ("lru", "associative"): lru, ("lru", "chunked"): lru,
          ("s6", "sequential"): s6, ("s6", "associative"): s6, ("s6", "chunked"): s6, ("s6", "log-space"): s6}

#: planted mistakes: (cell, form) -> {bug: "forward" or "backward" (where it is)}
BUGS = {("min-gru", "log-space"): {"cumsum-off-by-one": "forward", "h0-decay-missing": "backward"},
        ("min-gru", "chunked"): {"carry-dropped": "forward", "reverse-carry-dropped": "backward"},
        ("min-lstm", "log-space"): {"cumsum-off-by-one": "forward"},
        ("lru", "sequential"): {"gamma-path-dropped": "backward", "conjugation-error": "backward"},
        ("lru", "chunked"): {"carry-dropped": "forward", "reverse-carry-dropped": "backward"},
        ("s6", "log-space"): {"cumsum-off-by-one": "forward"},
        ("s6", "chunked"): {"carry-dropped": "forward", "reverse-carry-dropped": "backward"}}


def make(cell, form, bug=None):
    """The (forward, backward) of ``cell`` solved by ``form`` with ``bug`` planted (None: correct)."""
    return LAYERS[cell, form](form, bug)

"""A hand-written NumPy S6 layer (the selective scan of Mamba, Gu and Dao 2023), written from the paper's
equations in symrnn's names (layout ``NATIVE``, time-major, row vectors), solved step by step or in
parallel (tests/corpus_parallel/scans.py).

Per step, with the channels ``u_t = W_u x_t`` (the block's input projection):
``Delta_t = softplus(W_dt u_t + b_dt)``, ``B_t = W_B u_t``, ``C_t = W_C u_t``, ``A = -exp(A_log)`` (``H x N``),
``Abar_t = exp(Delta_t A)`` and ``Bbar_t u_t = (Delta_t * u_t) B_t^T`` (an ``H x N`` outer product),
``s_t = Abar_t * s_{t-1} + Bbar_t u_t`` and ``y_t = s_t C_t + d * u_t`` (each channel's row read by ``C_t``).

``forward(x, s0, params) -> (y, states, cache)`` with ``s0`` and ``states`` dicts by symrnn's state names
(``s``: ``(N, H*N_state)`` flattened row-major, ``h``: the output ``y``); ``backward(dy, cache) -> (dx, ds0,
grads)``.  The forward hands ``s_t = a_t s_{t-1} + b_t`` to a scan (the log-space form scans
``cumsum(Delta A)``, as the chunked code of Mamba-2 does); the backward runs the adjoint
``G_t = g_t + Abar_{t+1} G_{t+1}`` (``g_t = dy_t C_t^T``) and reads every gradient off ``G``.
``bug=`` plants one mistake (:data:`S6_BUGS` for the step-by-step layer; the scan mistakes of
:mod:`corpus_parallel.layers` for the parallel forms).
"""
import numpy as np

#: mistakes of the backward of the step-by-step layer -> the parameters whose gradients they make wrong
#: (``x`` stands for dx; every other gradient stays right).  The transposed outer product is shape-valid
#: only when ``H`` equals the state size (and is verified there), which is how it slips through in code.
S6_BUGS = {
    "delta-path-through-abar-dropped": {"W_dt", "b_dt", "W_u", "x"},  # Delta only through Bbar
    "softplus-derivative-missing": {"W_dt", "b_dt", "W_u", "x"},  # dDelta taken for d(pre-activation)
    "b-outer-product-transposed": {"W_B", "W_u", "x"},  # dB reduced over the state axis, not the channels
    "a-log-chain-missing": {"A_log"},  # dA taken for dA_log (A = -exp(A_log))
    "adjoint-decay-off-by-one": None,  # G_t = g_t + Abar_t G_{t+1}: every message from the last step on
}


def _sum_outer(g, x):
    return np.einsum("tnh,tnd->hd", g, x)


def _sigmoid(a):
    return 0.5 * np.tanh(0.5 * a) + 0.5


def _discretised(x, p):
    """The channels and the per-step quantities: (u, pre, Delta, B, C, A, log Abar, Bbar u)."""
    u = x @ p["W_u"].T
    pre = u @ p["W_dt"].T + p["b_dt"]
    delta = np.logaddexp(0.0, pre)  # softplus
    B, C = u @ p["W_B"].T, u @ p["W_C"].T
    A = -np.exp(p["A_log"]).reshape(u.shape[-1], -1)
    log_a = delta[..., None] * A
    return u, pre, delta, B, C, A, log_a, (delta * u)[..., None] * B[..., None, :]


def s6(form, bug=None):
    from .layers import adjoint, solve  # the scans and the reversed scan of the other layers

    def forward(x, s0, p):
        u, pre, delta, B, C, A, log_a, bx = _discretised(x, p)
        N, H = u.shape[1:]
        s = solve(np.exp(log_a), bx, s0["s"].reshape(N, H, -1), form, bug, log_a=log_a)
        y = (s * C[..., None, :]).sum(-1) + p["d"] * u
        return y, {"s": s.reshape(len(x), N, -1), "h": y}, (x, s0, p, s)

    def backward(dy, cache):
        x, s0, p, s = cache
        u, pre, delta, B, C, A, log_a, bx = _discretised(x, p)
        a = np.exp(log_a)
        carried = np.concatenate([a[:1], a[:-1]]) if bug == "adjoint-decay-off-by-one" else a
        G = adjoint(carried, dy[..., None] * C[..., None, :], form, bug)  # dL/ds_t
        s_prev = np.concatenate([s0["s"].reshape(s[:1].shape), s[:-1]])
        d_log_a = G * s_prev * a
        d_A = (d_log_a * delta[..., None]).sum((0, 1))
        d_delta = 0 * delta if bug == "delta-path-through-abar-dropped" else (d_log_a * A).sum(-1)
        if bug == "b-outer-product-transposed":
            d_B = (G * (delta * u)[..., None, :]).sum(-1)
        else:
            d_B = (G * (delta * u)[..., None]).sum(-2)
        d_du = (G * B[..., None, :]).sum(-1)  # dL/d(Delta * u)
        d_C = (dy[..., None] * s).sum(-2)
        d_delta = d_delta + d_du * u
        d_pre = d_delta if bug == "softplus-derivative-missing" else d_delta * _sigmoid(pre)
        d_u = d_du * delta + dy * p["d"] + d_pre @ p["W_dt"] + d_B @ p["W_B"] + d_C @ p["W_C"]
        grads = {"W_u": _sum_outer(d_u, x), "W_dt": _sum_outer(d_pre, u), "b_dt": d_pre.sum((0, 1)),
                 "W_B": _sum_outer(d_B, u), "W_C": _sum_outer(d_C, u),
                 "A_log": (d_A if bug == "a-log-chain-missing" else d_A * A).reshape(-1), "d": (dy * u).sum((0, 1))}
        ds0 = {"s": (a[0] * G[0]).reshape(s0["s"].shape), "h": np.zeros_like(s0["h"])}
        return d_u @ p["W_u"], ds0, grads
    return forward, backward

"""A hand-written NumPy mLSTM layer (Beck et al. 2024) in symrnn's names (layout ``NATIVE``), heads of
size 2, zero initial memory, normaliser and stabiliser: ``forward(x, h0, params) -> (h, cache)``,
``backward(dh, cache, bug=None) -> (dx, dh0, grads)``.  The memory is an array ``(N, heads, d, d)``
and every product with it an ``einsum``.  ``bug=`` plants one mistake (:data:`MLSTM_BUGS`)."""
import numpy as np

D_HEAD = 2
MLSTM_BUGS = ["normaliser-path-dropped", "stabiliser-subtraction-missing", "outer-product-transposed"]


def sig(a):
    return 0.5 * np.tanh(0.5 * a) + 0.5


def _heads(a):
    return a.reshape(a.shape[0], -1, D_HEAD)


def mlstm_forward(x, h0, p):
    N, H = h0.shape
    heads = H // D_HEAD
    C, n, m = np.zeros((N, heads, D_HEAD, D_HEAD)), np.zeros((N, heads, D_HEAD)), np.zeros((N, heads))
    hs, steps = [], []
    for xt in x:
        q = _heads(xt @ p["W_q"].T + p["b_q"])
        k = _heads(xt @ p["W_k"].T / np.sqrt(D_HEAD) + p["b_k"])
        v = _heads(xt @ p["W_v"].T + p["b_v"])
        it, ft = xt @ p["W_i"].T + p["b_i"], xt @ p["W_f"].T + p["b_f"]
        o = sig(xt @ p["W_o"].T + p["b_o"])
        logf = -np.logaddexp(0.0, -ft)
        m_new = np.maximum(logf + m, it)
        ip, fp = np.exp(it - m_new), np.exp(logf + m - m_new)
        C_new = fp[..., None, None] * C + ip[..., None, None] * v[..., :, None] * k[..., None, :]
        n_new = fp[..., None] * n + ip[..., None] * k
        Cq = np.einsum("zhab,zhb->zha", C_new, q)
        nq = (n_new * q).sum(-1)
        den = np.maximum(np.abs(nq), np.exp(-m_new))
        ht = (Cq / den[..., None]).reshape(N, H)
        steps.append((xt, C, n, m, q, k, v, it, ft, o, logf, m_new, ip, fp, C_new, n_new, Cq, nq, den, ht))
        C, n, m = C_new, n_new, m_new
        hs.append(o * ht)
    return np.stack(hs), (steps, p)


def _step_backward(gh, s, carry, bug):
    """The adjoints of one step: (the pre-activations' adjoints, the carries to the step before)."""
    xt, Cp, n_p, mp, q, k, v, it, ft, o, logf, m_new, ip, fp, C, n, Cq, nq, den, ht = s
    carry_C, carry_n, carry_m = carry
    dht = _heads(gh * o)
    dCq = dht / den[..., None]
    dden = -(dht * Cq).sum(-1) / den ** 2
    tie = np.heaviside(np.abs(nq) - np.exp(-m_new), 0.5)
    dnq = 0 * dden if bug == "normaliser-path-dropped" else dden * tie * np.sign(nq)
    dm_new = -dden * (1 - tie) * np.exp(-m_new) + carry_m
    dC = carry_C + np.einsum("zha,zhb->zhab", dCq, q)
    dn = carry_n + dnq[..., None] * q
    dq = np.einsum("zhab,zha->zhb", C, dCq) + dnq[..., None] * n
    dfp = (dC * Cp).sum((-1, -2)) + (dn * n_p).sum(-1)
    dip = (dC * v[..., :, None] * k[..., None, :]).sum((-1, -2)) + (dn * k).sum(-1)
    if bug == "outer-product-transposed":  # as if the memory were k v^T
        dv = ip[..., None] * np.einsum("zhab,zha->zhb", dC, k)
        dk = ip[..., None] * (np.einsum("zhab,zhb->zha", dC, v) + dn)
    else:
        dv = ip[..., None] * np.einsum("zhab,zhb->zha", dC, k)
        dk = ip[..., None] * (np.einsum("zhab,zha->zhb", dC, v) + dn)
    dm_new = dm_new - dfp * fp - dip * ip
    dlogf, dmp = dfp * fp, dfp * fp
    dit = dip * (np.exp(it) if bug == "stabiliser-subtraction-missing" else ip)
    tie2 = np.heaviside(logf + mp - it, 0.5)
    dlogf, dmp, dit = dlogf + dm_new * tie2, dmp + dm_new * tie2, dit + dm_new * (1 - tie2)
    N = gh.shape[0]
    d = {"q": dq.reshape(N, -1), "k": dk.reshape(N, -1), "v": dv.reshape(N, -1), "i": dit,
         "f": dlogf * (1 - sig(ft)), "o": gh * ht * o * (1 - o)}
    if bug == "carry-not-decayed":  # the memory's and normaliser's messages not times f' (tryout7)
        return d, (dC, dn, dmp)
    return d, (fp[..., None, None] * dC, fp[..., None] * dn, dmp)


def mlstm_backward(dh, cache, bug=None):
    steps, p = cache
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx = []
    N, H = dh.shape[1], dh.shape[2]
    heads = H // D_HEAD
    carry = (np.zeros((N, heads, D_HEAD, D_HEAD)), np.zeros((N, heads, D_HEAD)), np.zeros((N, heads)))
    for t in reversed(range(len(steps))):
        d, carry = _step_backward(dh[t], steps[t], carry, bug)
        xt = steps[t][0]
        d_in = {**d, "k": d["k"] / np.sqrt(D_HEAD)}
        for key in "qkvifo":
            g[f"W_{key}"] += d_in[key].T @ xt
            g[f"b_{key}"] += d[key].sum(0)
        dx.append(sum(d_in[key] @ p[f"W_{key}"] for key in "qkvifo"))
    return np.stack(dx[::-1]), np.zeros_like(dh[0]), g


def make_mlstm(bug=None):
    def planted(dh, cache):
        return mlstm_backward(dh, cache, bug=bug)
    planted.__name__ = "mlstm_backward"
    return mlstm_forward, planted

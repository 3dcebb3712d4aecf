"""NumPy forward and backward passes of minGRU, minLSTM, IndRNN, SRU and sLSTM, written from the
papers' equations (see tests/test_modern_cells.py for the equations' sources)."""
import numpy as np


def sig(a):
    return 0.5 * np.tanh(0.5 * a) + 0.5


def lin(x, U, b=0.0):
    return x @ U.T + b


# -- minGRU: z = sig(U_z x + b_z), htilde = U_h x + b_h, h = (1 - z) h_prev + z htilde ------------
def min_gru_forward(x, h0, p):
    h, hs, steps = h0, [], []
    for xt in x:
        z, ht = sig(lin(xt, p["U_z"], p["b_z"])), lin(xt, p["U_h"], p["b_h"])
        steps.append((xt, h, z, ht))
        h = (1 - z) * h + z * ht
        hs.append(h)
    return np.stack(hs), (steps, p)


def min_gru_backward(dh, cache, bug=None):
    steps, p = cache
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx, carry = [], np.zeros_like(dh[0])
    for t in reversed(range(len(steps))):
        xt, hp, z, ht = steps[t]
        gt = dh[t] + carry
        dz = gt * (ht - hp) * (z if bug == "gate-derivative-as-output" else z * (1 - z))
        dht = gt * z
        carry = gt if bug == "decay-path-dropped" else gt * (1 - z)
        g["U_z"] += dz.T @ xt
        g["b_z"] += dz.sum(0)
        g["U_h"] += dht.T @ xt
        g["b_h"] += dht.sum(0)
        dx.append(dz @ p["U_z"] + dht @ p["U_h"])
    return np.stack(dx[::-1]), carry, g


# -- minLSTM: f, i = sig(...), f' = f / (f + i), i' = i / (f + i), h = f' h_prev + i' htilde --------
def min_lstm_forward(x, h0, p):
    h, hs, steps = h0, [], []
    for xt in x:
        f, i = sig(lin(xt, p["U_f"], p["b_f"])), sig(lin(xt, p["U_i"], p["b_i"]))
        ht = lin(xt, p["U_h"], p["b_h"])
        steps.append((xt, h, f, i, ht))
        h = f / (f + i) * h + i / (f + i) * ht
        hs.append(h)
    return np.stack(hs), (steps, p)


def min_lstm_backward(dh, cache, bug=None):
    steps, p = cache
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx, carry = [], np.zeros_like(dh[0])
    for t in reversed(range(len(steps))):
        xt, hp, f, i, ht = steps[t]
        s = f + i
        gt = dh[t] + carry
        dfp, dip = gt * hp, gt * ht
        if bug == "normalisation-dropped":  # differentiates h = f h_prev + i htilde
            df, di = dfp, dip
        else:
            df, di = i * (dfp - dip) / s ** 2, f * (dip - dfp) / s ** 2
        daf, dai, dht = df * f * (1 - f), di * i * (1 - i), gt * i / s
        carry = gt * f / s
        for k, d in (("f", daf), ("i", dai), ("h", dht)):
            g[f"U_{k}"] += d.T @ xt
            g[f"b_{k}"] += d.sum(0)
        dx.append(daf @ p["U_f"] + dai @ p["U_i"] + dht @ p["U_h"])
    return np.stack(dx[::-1]), carry, g


# -- IndRNN: h = relu(U x + w * h_prev + b) ------------------------------------------------------------
def indrnn_forward(x, h0, p):
    h, hs, steps = h0, [], []
    for xt in x:
        a = lin(xt, p["U"], p["b"]) + p["w"] * h
        steps.append((xt, h, a))
        h = np.maximum(a, 0)
        hs.append(h)
    return np.stack(hs), (steps, p)


def indrnn_backward(dh, cache, bug=None):
    steps, p = cache
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx, carry = [], np.zeros_like(dh[0])
    for t in reversed(range(len(steps))):
        xt, hp, a = steps[t]
        da = (dh[t] + carry) * (a > 0)
        g["U"] += da.T @ xt
        g["b"] += da.sum(0)
        g["w"] += (da * hp).sum(0) if bug != "recurrent-vector-summed-over-units" else (da.sum(0) * hp.sum(0))
        carry = da if bug == "recurrent-weight-missing" else da * p["w"]
        dx.append(da @ p["U"])
    return np.stack(dx[::-1]), carry, g


# -- SRU: f, r = sig(U_. x + v_. * c_prev + b_.), c = f c_prev + (1 - f) U x, h = r c + (1 - r) U_x x ----
def sru_forward(x, h0, c0, p):
    c, hs, steps = c0, [], []
    for xt in x:
        f = sig(lin(xt, p["U_f"], p["b_f"]) + p["v_f"] * c)
        r = sig(lin(xt, p["U_r"], p["b_r"]) + p["v_r"] * c)
        xt_, xh = lin(xt, p["U"]), lin(xt, p["U_x"])
        steps.append((xt, c, f, r, xt_, xh))
        c = f * c + (1 - f) * xt_
        hs.append(r * c + (1 - r) * xh)
    return np.stack(hs), (steps, p)


def sru_backward(dh, cache, bug=None):
    steps, p = cache
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx, carry = [], np.zeros_like(dh[0])
    for t in reversed(range(len(steps))):
        xt, cp, f, r, xt_, xh = steps[t]
        c = f * cp + (1 - f) * xt_
        gh = dh[t]
        gc = gh * r + carry
        dr = gh * (c - xh) if bug != "highway-gate-sign" else gh * (xh - c)
        dxh = gh * (1 - r)
        df = gc * (cp - xt_)
        dxt = gc * (1 - f)
        daf, dar = df * f * (1 - f), dr * r * (1 - r)
        carry = gc * f + (0 if bug == "c-to-gate-path-dropped" else daf * p["v_f"] + dar * p["v_r"])
        for k, d in (("f", daf), ("r", dar)):
            g[f"U_{k}"] += d.T @ xt
            g[f"b_{k}"] += d.sum(0)
            g[f"v_{k}"] += (d * cp).sum(0)
        g["U"] += dxt.T @ xt
        g["U_x"] += dxh.T @ xt
        dx.append(daf @ p["U_f"] + dar @ p["U_r"] + dxt @ p["U"] + dxh @ p["U_x"])
    return np.stack(dx[::-1]), np.zeros_like(carry), carry, g


# -- sLSTM (sigmoid forget gate), zero c0, n0, m0 ---------------------------------------------------------
def slstm_forward(x, h0, p):
    h = h0
    c = n = m = np.zeros_like(h0)
    hs, steps = [], []
    for xt in x:
        pre = {k: lin(xt, p[f"U_{k}"], p[f"b_{k}"]) + h @ p[f"W_{k}"].T for k in "zifo"}
        z, o = np.tanh(pre["z"]), sig(pre["o"])
        logf = -np.logaddexp(0.0, -pre["f"])
        m_new = np.maximum(logf + m, pre["i"])
        ip, fp = np.exp(pre["i"] - m_new), np.exp(logf + m - m_new)
        steps.append((xt, h, c, n, m, pre, z, o, logf, m_new, ip, fp))
        c, n, m = fp * c + ip * z, fp * n + ip, m_new
        h = o * c / n
        hs.append(h)
    return np.stack(hs), (steps, p)


def slstm_backward(dh, cache, bug=None):
    steps, p = cache
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx = []
    carry_h = carry_c = carry_n = carry_m = np.zeros_like(dh[0])
    for t in reversed(range(len(steps))):
        xt, hp, cp, np_, mp, pre, z, o, logf, m_new, ip, fp = steps[t]
        c, n = fp * cp + ip * z, fp * np_ + ip
        gt = dh[t] + carry_h
        do = gt * c / n
        dc = gt * o / n + carry_c
        dn = (0 * gt if bug == "normaliser-path-dropped" else -gt * o * c / n ** 2) + carry_n
        dfp, dip, dz = dc * cp + dn * np_, dc * z + dn, dc * ip
        carry_c, carry_n = dc * fp, dn * fp
        dlogf = dfp * fp
        dmp = dfp * fp
        dpi = dip * (np.exp(pre["i"]) if bug == "stabiliser-subtraction-missing" else ip)
        if bug == "m-detached":  # correct: h does not depend on m_t for t >= 1 (the stabiliser cancels)
            dm_new = 0 * gt
        else:
            dm_new = -dfp * fp - dip * ip + carry_m
        tie = np.heaviside(logf + mp - pre["i"], 0.5)
        dlogf, dmp, dpi = dlogf + dm_new * tie, dmp + dm_new * tie, dpi + dm_new * (1 - tie)
        carry_m = dmp
        d = {"z": dz * (1 - z ** 2), "i": dpi, "f": dlogf * (1 - sig(pre["f"])), "o": do * o * (1 - o)}
        carry_h = sum(d[k] @ p[f"W_{k}"] for k in "zifo")
        for k in "zifo":
            g[f"U_{k}"] += d[k].T @ xt
            g[f"W_{k}"] += d[k].T @ hp
            g[f"b_{k}"] += d[k].sum(0)
        dx.append(sum(d[k] @ p[f"U_{k}"] for k in "zifo"))
    return np.stack(dx[::-1]), carry_h, g


LAYERS = {"min-gru": (min_gru_forward, min_gru_backward), "min-lstm": (min_lstm_forward, min_lstm_backward),
          "indrnn": (indrnn_forward, indrnn_backward), "sru": (sru_forward, sru_backward),
          "slstm": (slstm_forward, slstm_backward)}

BUGS = {"min-gru": ["gate-derivative-as-output", "decay-path-dropped"],
        "min-lstm": ["normalisation-dropped"],
        "indrnn": ["recurrent-weight-missing", "recurrent-vector-summed-over-units"],
        "sru": ["highway-gate-sign", "c-to-gate-path-dropped"],
        "slstm": ["normaliser-path-dropped", "stabiliser-subtraction-missing"]}

CORRECT_VARIANTS = {"slstm": ["m-detached"]}


def make(cell, bug=None):
    """``(forward, backward)`` of ``cell`` with ``bug`` planted in the backward."""
    forward, backward = LAYERS[cell]

    def planted(*args):
        return backward(*args, bug=bug)
    planted.__name__ = backward.__name__
    return forward, planted

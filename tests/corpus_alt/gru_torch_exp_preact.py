"""GRU in PyTorch's layout (cell "gru"); sigmoid as exp(-logaddexp(0, -u)), tanh as
1 - 2 / (exp(2u) + 1), only pre-activations cached and every derivative recomputed from them
(s(u)(1 - s(u)), 1 / cosh(u)^2); per-gate weight slices, dW by einsum over (t, n) at the end."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "gru", "pytorch", "layer", "float64"
FORWARD, BACKWARD = "gru_forward", "gru_backward"
SIGNATURE = (("x", "h0", "Wx", "Wh", "b", "b_hh"), ("h", "cache"),
             ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b", "b_hh"))
FORMULATION = "PyTorch GRU: logaddexp sigmoid, 1-2/(exp(2u)+1) tanh, derivatives from pre-activations, einsum dW"


def sigmoid(u):
    return np.exp(-np.logaddexp(0.0, -u))


def tanh(u):
    with np.errstate(over="ignore"):
        return 1.0 - 2.0 / (np.exp(2.0 * u) + 1.0)


def dtanh(u):
    with np.errstate(over="ignore"):
        return 1.0 / np.cosh(u) ** 2


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    T, N, _ = x.shape
    H = h0.shape[1]
    W_ir, W_iz, W_in = np.split(weight_ih, 3)
    W_hr, W_hz, W_hn = np.split(weight_hh, 3)
    b_ir, b_iz, b_in = np.split(bias_ih, 3)
    b_hr, b_hz, b_hn = np.split(bias_hh, 3)
    h, pre, prev = np.empty((T + 1, N, H)), np.empty((T, 4, N, H)), h0
    h[0] = h0
    for t in range(T):
        pre[t, 0] = x[t] @ W_ir.T + b_ir + prev @ W_hr.T + b_hr
        pre[t, 1] = x[t] @ W_iz.T + b_iz + prev @ W_hz.T + b_hz
        pre[t, 3] = prev @ W_hn.T + b_hn
        pre[t, 2] = x[t] @ W_in.T + b_in + sigmoid(pre[t, 0]) * pre[t, 3]
        z, n = sigmoid(pre[t, 1]), tanh(pre[t, 2])
        prev = h[t + 1] = (1 - z) * n + z * prev
    return h[1:].copy(), (x, weight_ih, weight_hh, pre, h)


def gru_backward(dh, cache):
    x, weight_ih, weight_hh, pre, h = cache
    T, N, H = dh.shape
    dgi, dgh, carry = np.empty((T, N, 3 * H)), np.empty((T, N, 3 * H)), np.zeros((N, H))
    for t in reversed(range(T)):
        ar, az, an, ghn = pre[t]
        r, z, n = sigmoid(ar), sigmoid(az), tanh(an)
        dht = dh[t] + carry
        dan = dht * (1 - z) * dtanh(an)
        daz = dht * (h[t] - n) * (sigmoid(az) * (1 - sigmoid(az)))
        dar = dan * ghn * (sigmoid(ar) * (1 - sigmoid(ar)))
        dgi[t] = np.concatenate([dar, daz, dan], axis=1)
        dgh[t] = np.concatenate([dar, daz, dan * r], axis=1)
        carry = dht * z + dgh[t] @ weight_hh
    return (np.einsum("tnk,kd->tnd", dgi, weight_ih), carry, np.einsum("tnk,tnd->kd", dgi, x),
            np.einsum("tnk,tnj->kj", dgh, h[:-1]), np.einsum("tnk->k", dgi), np.einsum("tnk->k", dgh))

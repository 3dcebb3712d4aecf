"""LSTM, CS231n layer functions; sigmoid(u) = exp(-logaddexp(0, -u)) and tanh = 2 sigmoid(2u) - 1
for the candidate and the cell output; derivatives from the outputs."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "sigmoid = exp(-logaddexp(0, -u)); tanh = 2*sigmoid(2u) - 1 (g and tanh(c))"


def sigmoid(u):
    return np.exp(-np.logaddexp(0.0, -u))


def tanh(u):
    return 2.0 * sigmoid(2.0 * u) - 1.0


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    h, cache, prev_h, prev_c = np.empty((N, T, H)), [], h0, np.zeros_like(h0)
    for t in range(T):
        a = x[:, t] @ Wx + prev_h @ Wh + b
        ifo, g = sigmoid(a[:, :3 * H]), tanh(a[:, 3 * H:])
        c = ifo[:, H:2 * H] * prev_c + ifo[:, :H] * g
        tc = tanh(c)
        cache.append((x[:, t], prev_h, prev_c, ifo, g, tc))
        prev_h, prev_c = ifo[:, 2 * H:] * tc, c
        h[:, t] = prev_h
    return h, (Wx, Wh, cache)


def lstm_backward(dh, cache):
    Wx, Wh, steps = cache
    N, T, H = dh.shape
    dx = np.empty((N, T, Wx.shape[0]))
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H)
    carry_h, carry_c = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        xt, h_prev, c_prev, ifo, g, tc = steps[t]
        i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
        dht = dh[:, t] + carry_h
        dc = dht * o * (1.0 - tc * tc) + carry_c
        dsig = np.concatenate([dc * g, dc * c_prev, dht * tc], axis=1) * ifo * (1.0 - ifo)
        da = np.concatenate([dsig, dc * i * (1.0 - g * g)], axis=1)
        dx[:, t] = da @ Wx.T
        dWx += xt.T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        carry_h, carry_c = da @ Wh.T, f * dc
    return dx, carry_h, dWx, dWh, db

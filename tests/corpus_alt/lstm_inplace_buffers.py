"""LSTM, CS231n layer functions; private work buffers written in place with out= (the
pre-activation, the gates through np.exp/np.reciprocal, the gradient blocks)."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "in-place buffers (out=): sigmoid as reciprocal(1 + exp(-u)) in place, da blocks in place"


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    gates, c, h = np.empty((N, T, 4 * H)), np.zeros((N, T + 1, H)), np.empty((N, T, H))
    tmp = np.empty((N, 4 * H))
    prev_h = h0
    for t in range(T):
        a = gates[:, t]
        np.matmul(x[:, t], Wx, out=a)
        np.matmul(prev_h, Wh, out=tmp)
        a += tmp
        a += b
        s = a[:, :3 * H]
        np.negative(s, out=s)
        with np.errstate(over="ignore"):
            np.exp(s, out=s)
        s += 1.0
        np.reciprocal(s, out=s)
        np.tanh(a[:, 3 * H:], out=a[:, 3 * H:])
        np.multiply(a[:, H:2 * H], c[:, t], out=c[:, t + 1])
        c[:, t + 1] += a[:, :H] * a[:, 3 * H:]
        np.tanh(c[:, t + 1], out=h[:, t])
        h[:, t] *= a[:, 2 * H:3 * H]
        prev_h = h[:, t]
    return h, (x, h0, Wx, Wh, gates, c, h)


def lstm_backward(dh, cache):
    x, h0, Wx, Wh, gates, c, h = cache
    N, T, H = h.shape
    dx, dWx, dWh, db = np.empty_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H)
    da, dht, dc, tc = np.empty((N, 4 * H)), np.empty((N, H)), np.zeros((N, H)), np.empty((N, H))
    carry_h = np.zeros((N, H))
    for t in reversed(range(T)):
        i, f, o, g = (gates[:, t, k * H:(k + 1) * H] for k in range(4))
        np.tanh(c[:, t + 1], out=tc)
        np.add(dh[:, t], carry_h, out=dht)
        dc += dht * o * (1 - tc * tc)          # dc held the carried dL/dc_t
        np.multiply(dc, g * i * (1 - i), out=da[:, :H])
        np.multiply(dc, c[:, t] * f * (1 - f), out=da[:, H:2 * H])
        np.multiply(dht, tc * o * (1 - o), out=da[:, 2 * H:3 * H])
        np.multiply(dc, i * (1 - g * g), out=da[:, 3 * H:])
        np.matmul(da, Wx.T, out=dx[:, t])
        dWx += x[:, t].T @ da
        dWh += (h[:, t - 1] if t else h0).T @ da
        db += da.sum(axis=0)
        np.matmul(da, Wh.T, out=carry_h)
        dc *= f
    return dx, carry_h.copy(), dWx, dWh, db

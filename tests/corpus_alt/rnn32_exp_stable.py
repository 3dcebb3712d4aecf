"""Tanh RNN, CS231n layer functions in float32 with tanh(a) = 1 - 2 / (exp(2a) + 1) and the
derivative recomputed from the pre-activation, 1 - tanh(a)^2 with the same hand-written tanh."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float32"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "float32: tanh = 1 - 2/(exp(2a)+1); tanh' = 1 - tanh(a)^2 recomputed from a"
F = np.float32


def _tanh(a):
    with np.errstate(over="ignore"):
        return F(1) - F(2) / (np.exp(F(2) * a) + F(1))


def rnn_forward(x, h0, Wx, Wh, b):
    x, h0, Wx, Wh, b = (np.asarray(v, F) for v in (x, h0, Wx, Wh, b))
    N, T, _ = x.shape
    a_all, prev = np.empty((N, T, Wh.shape[0]), F), h0
    h = np.empty_like(a_all)
    for t in range(T):
        a_all[:, t] = x[:, t] @ Wx + prev @ Wh + b
        prev = h[:, t] = _tanh(a_all[:, t])
    return h, (x, h0, Wx, Wh, h, a_all)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h, a_all = cache
    dh = np.asarray(dh, F)
    N, T, _ = x.shape
    dx = np.empty_like(x)
    dWx, dWh, db, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0], F), np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (F(1) - _tanh(a_all[:, t]) ** 2)
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += (h[:, t - 1] if t else h0).T @ da
        db += da.sum(axis=0)
        carry = da @ Wh.T
    return dx, carry, dWx, dWh, db

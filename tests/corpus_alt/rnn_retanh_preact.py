"""Tanh RNN, CS231n layer functions; the forward keeps only the pre-activations and the
backward recomputes tanh' = 1 - tanh(a)^2 from them (np.tanh twice, never the stored h)."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "np.tanh; tanh' = 1 - np.tanh(a)**2 recomputed from the cached pre-activation"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, pre, prev = np.empty((N, T, Wh.shape[0])), np.empty((N, T, Wh.shape[0])), h0
    for t in range(T):
        pre[:, t] = x[:, t] @ Wx + prev @ Wh + b
        prev = h[:, t] = np.tanh(pre[:, t])
    return h, (x, h0, Wx, Wh, pre)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, pre = cache
    N, T, _ = x.shape
    dx = np.empty_like(x)
    dWx, dWh, db, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0]), np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (1 - np.tanh(pre[:, t]) ** 2)
        h_prev = np.tanh(pre[:, t - 1]) if t else h0
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        carry = da @ Wh.T
    return dx, carry, dWx, dWh, db

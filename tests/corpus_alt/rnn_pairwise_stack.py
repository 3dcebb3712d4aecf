"""Tanh RNN, CS231n layer functions; per-step parameter gradients stacked into (T, ...) arrays
and reduced with np.sum (pairwise summation) and np.add.reduce."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "per-step gradients stacked, then np.sum(axis=0) (pairwise) and np.add.reduce for db"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, prev = np.empty((N, T, Wh.shape[0])), h0
    for t in range(T):
        prev = h[:, t] = np.tanh(prev @ Wh + (x[:, t] @ Wx + b))
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, _ = x.shape
    dx, carry = np.empty_like(x), np.zeros_like(h0)
    gWx, gWh, gb = np.empty((T, *Wx.shape)), np.empty((T, *Wh.shape)), np.empty((T, N, Wh.shape[0]))
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        dx[:, t] = da @ Wx.T
        gWx[t] = x[:, t].T @ da
        gWh[t] = (h[:, t - 1] if t else h0).T @ da
        gb[t] = da
        carry = da @ Wh.T
    return dx, carry, np.sum(gWx, axis=0), np.sum(gWh, axis=0), np.add.reduce(gb.reshape(T * N, -1), axis=0)

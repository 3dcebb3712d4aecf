"""Tanh RNN, CS231n layer functions, computed and returned entirely in float32 (weights cast
once, every product, activation and accumulation in float32): the textbook formulas."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float32"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "float32 throughout: np.tanh, tanh' = 1 - h^2, reverse-order accumulation"
F = np.float32


def rnn_forward(x, h0, Wx, Wh, b):
    x, h0, Wx, Wh, b = (np.asarray(v, F) for v in (x, h0, Wx, Wh, b))
    N, T, _ = x.shape
    h, prev = np.empty((N, T, Wh.shape[0]), F), h0
    for t in range(T):
        prev = h[:, t] = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache, plant=None):
    """plant=(t, factor) multiplies the message carried from step t to step t-1 (a planted error)."""
    x, h0, Wx, Wh, h = cache
    dh = np.asarray(dh, F)
    N, T, _ = x.shape
    dx = np.empty_like(x)
    dWx, dWh, db, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0], F), np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (F(1) - h[:, t] ** 2)
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += (h[:, t - 1] if t else h0).T @ da
        db += da.sum(axis=0)
        carry = da @ Wh.T
        if plant is not None and t == plant[0]:
            carry = carry * F(plant[1])
    return dx, carry, dWx, dWh, db

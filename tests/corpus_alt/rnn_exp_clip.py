"""Tanh RNN, CS231n layer functions; tanh written by hand from exponentials of a clipped
pre-activation (the CS231n solution of issue 19): tanh(a) = (e^a - e^-a) / (e^a + e^-a)."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "tanh = (e^a - e^-a)/(e^a + e^-a), a clipped to [-20, 20]; tanh' = 1 - h^2 from the output"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, prev = np.empty((N, T, Wh.shape[0])), h0
    for t in range(T):
        a = np.clip(x[:, t] @ Wx + prev @ Wh + b, -20.0, 20.0)
        ep, em = np.exp(a), np.exp(-a)
        prev = h[:, t] = (ep - em) / (ep + em)
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache, plant=None):
    """plant=(t, factor) multiplies the message carried from step t to step t-1 (a planted error)."""
    x, h0, Wx, Wh, h = cache
    N, T, _ = x.shape
    dx = np.empty_like(x)
    dWx, dWh, db, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0]), np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += (h[:, t - 1] if t else h0).T @ da
        db += da.sum(axis=0)
        carry = da @ Wh.T
        if plant is not None and t == plant[0]:
            carry = carry * plant[1]
    return dx, carry, dWx, dWh, db

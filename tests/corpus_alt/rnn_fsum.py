"""Tanh RNN, CS231n layer functions; every parameter-gradient entry an exactly rounded sum
(math.fsum) of its N*T products, the way a careful user removes summation error."""
import math

import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "math.fsum over all (n, t) terms of each dWx, dWh, db entry (correctly rounded sums)"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, prev = np.empty((N, T, Wh.shape[0])), h0
    for t in range(T):
        prev = h[:, t] = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
    return h, (x, h0, Wx, Wh, h)


def _fsum_outer(left, right):
    """sum over (n, t) of left[n, t, i] * right[n, t, j], each entry with math.fsum."""
    terms = left[..., :, None] * right[..., None, :]            # (N, T, I, J)
    flat = terms.reshape(-1, left.shape[-1] * right.shape[-1])
    return np.array([math.fsum(flat[:, k]) for k in range(flat.shape[1])]).reshape(left.shape[-1], right.shape[-1])


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, H = h.shape
    da, carry = np.empty_like(h), np.zeros_like(h0)
    for t in reversed(range(T)):
        da[:, t] = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        carry = da[:, t] @ Wh.T
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
    db = np.array([math.fsum(da[:, :, k].ravel()) for k in range(H)])
    return da @ Wx.T, carry, _fsum_outer(x, da), _fsum_outer(h_prev, da), db

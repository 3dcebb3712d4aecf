"""Tanh RNN, CS231n layer functions; each example backpropagated on its own with vectors and
np.outer, the per-example gradients summed over the batch at the end."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "one example at a time, np.outer per step, per-example gradients summed afterwards"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h = np.empty((N, T, Wh.shape[0]))
    for n in range(N):
        prev = h0[n]
        for t in range(T):
            prev = h[n, t] = np.tanh(x[n, t] @ Wx + prev @ Wh + b)
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, _ = x.shape
    dx, dh0 = np.empty_like(x), np.empty_like(h0)
    per_example = []
    for n in range(N):
        gWx, gWh, gb, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0]), np.zeros(Wh.shape[0])
        for t in reversed(range(T)):
            da = (dh[n, t] + carry) * (1 - h[n, t] ** 2)
            dx[n, t] = Wx @ da
            gWx += np.outer(x[n, t], da)
            gWh += np.outer(h[n, t - 1] if t else h0[n], da)
            gb += da
            carry = Wh @ da
        dh0[n] = carry
        per_example.append((gWx, gWh, gb))
    dWx, dWh, db = (sum(g[k] for g in per_example) for k in range(3))
    return dx, dh0, dWx, dWh, db

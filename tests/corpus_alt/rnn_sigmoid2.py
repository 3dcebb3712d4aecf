"""Tanh RNN, CS231n layer functions; tanh written as 2 sigmoid(2a) - 1 (the other example of
issue 19), sigmoid as 1 / (1 + exp(-u)); the derivative 1 - h*h from the output."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "tanh = 2*sigmoid(2a) - 1, sigmoid = 1/(1 + exp(-u)); tanh' = 1 - h*h"


def sigmoid(u):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-u))


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, prev = np.empty((N, T, Wh.shape[0])), h0
    for t in range(T):
        prev = h[:, t] = 2.0 * sigmoid(2.0 * (x[:, t] @ Wx + prev @ Wh + b)) - 1.0
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, _ = x.shape
    dx = np.empty_like(x)
    dWx, dWh, db, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0]), np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (1.0 - h[:, t] * h[:, t])
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += (h[:, t - 1] if t else h0).T @ da
        db += da.sum(axis=0)
        carry = da @ Wh.T
    return dx, carry, dWx, dWh, db

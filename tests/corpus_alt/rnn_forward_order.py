"""Tanh RNN, CS231n layer functions; the backward sweep stores da_t, then the parameter
gradients are accumulated in forward time order t = 0, 1, ... with np.dot."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "np.dot; parameter gradients summed over time in forward order after the sweep"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, prev = np.empty((N, T, Wh.shape[0])), h0
    for t in range(T):
        prev = h[:, t] = np.tanh(np.dot(x[:, t], Wx) + np.dot(prev, Wh) + b)
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, _ = x.shape
    das, carry = [None] * T, np.zeros_like(h0)
    for t in reversed(range(T)):
        das[t] = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        carry = np.dot(das[t], Wh.T)
    dx = np.stack([np.dot(da, Wx.T) for da in das], axis=1)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0])
    for t in range(T):
        dWx += np.dot(x[:, t].T, das[t])
        dWh += np.dot((h[:, t - 1] if t else h0).T, das[t])
        db += np.sum(das[t], axis=0)
    return dx, carry, dWx, dWh, db

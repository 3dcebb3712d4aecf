"""LSTM, CS231n step functions; sigmoid written as exp(-logaddexp(0, -u)), tanh as
(e^u - e^-u) / (e^u + e^-u) on a clipped argument, the tanh(c) derivative recomputed
from c as 1 / cosh(c)^2."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "step", "float64"
FORWARD, BACKWARD = "lstm_step_forward", "lstm_step_backward"
SIGNATURE = None
FORMULATION = "step: sigmoid = exp(-logaddexp(0,-u)); tanh by exp (clipped +-20); tanh'(c) = 1/cosh(c)^2"


def sigmoid(u):
    return np.exp(-np.logaddexp(0.0, -u))


def tanh(u):
    u = np.clip(u, -20.0, 20.0)
    return (np.exp(u) - np.exp(-u)) / (np.exp(u) + np.exp(-u))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    with np.errstate(over="ignore"):
        dc = dnext_c + dnext_h * o / np.cosh(next_c) ** 2
    da = np.hstack([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * tanh(next_c) * o * (1 - o),
                    dc * i * (1 - g * g)])
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)

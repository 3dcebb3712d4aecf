"""Tanh RNN, CS231n step functions in float32; tanh as 2 sigmoid(2a) - 1."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "step", "float32"
FORWARD, BACKWARD = "rnn_step_forward", "rnn_step_backward"
SIGNATURE = None
FORMULATION = "float32 step: tanh = 2/(1 + exp(-2a)) - 1; tanh' = 1 - h^2"
F = np.float32


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    x, prev_h, Wx, Wh, b = (np.asarray(v, F) for v in (x, prev_h, Wx, Wh, b))
    with np.errstate(over="ignore"):
        next_h = F(2) / (F(1) + np.exp(F(-2) * (x @ Wx + prev_h @ Wh + b))) - F(1)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = np.asarray(dnext_h, F) * (F(1) - next_h ** 2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)

"""Tanh RNN, CS231n step functions; tanh as 2 sigmoid(2a) - 1 with sigmoid via logaddexp,
the derivative written through the sigmoid: tanh' = 4 s (1 - s) with s = sigmoid(2a)."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "step", "float64"
FORWARD, BACKWARD = "rnn_step_forward", "rnn_step_backward"
SIGNATURE = None
FORMULATION = "step: tanh = 2*s - 1, s = exp(-logaddexp(0, -2a)); tanh' = 4*s*(1 - s)"


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    s = np.exp(-np.logaddexp(0.0, -2.0 * (x @ Wx + prev_h @ Wh + b)))
    return 2.0 * s - 1.0, (x, prev_h, Wx, Wh, s)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, s = cache
    da = dnext_h * 4.0 * s * (1.0 - s)
    return np.dot(da, Wx.T), np.dot(da, Wh.T), np.dot(x.T, da), np.dot(prev_h.T, da), np.add.reduce(da, axis=0)

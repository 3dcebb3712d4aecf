"""Tanh RNN, CS231n layer functions; one product of the concatenation [x_t, h_{t-1}] with the
stacked matrix [Wx; Wh], whose gradient is split into dWx and dWh afterwards."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "[x, h] @ vstack([Wx, Wh]); dW split into dWx, dWh; dx and dh_prev split from da @ W.T"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    W = np.vstack([Wx, Wh])
    h, xh, prev = np.empty((N, T, Wh.shape[0])), np.empty((N, T, D + Wh.shape[0])), h0
    for t in range(T):
        xh[:, t] = np.concatenate([x[:, t], prev], axis=1)
        prev = h[:, t] = np.tanh(xh[:, t] @ W + b)
    return h, (W, xh, h, D)


def rnn_backward(dh, cache):
    W, xh, h, D = cache
    N, T, _ = h.shape
    dW, db = np.zeros_like(W), np.zeros(W.shape[1])
    dx, carry = np.empty((N, T, D)), np.zeros((N, W.shape[1]))
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        dW += xh[:, t].T @ da
        db += da.sum(axis=0)
        dxh = da @ W.T
        dx[:, t], carry = dxh[:, :D], dxh[:, D:]
    return dx, carry, dW[:D], dW[D:], db

"""Tanh RNN, CS231n layer functions in float32 with the concatenated product [x, h] @ [Wx; Wh]
and the parameter gradient summed over time in forward order after the sweep."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float32"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "float32: [x, h] @ vstack([Wx, Wh]); dW summed in forward time order, then split"
F = np.float32


def rnn_forward(x, h0, Wx, Wh, b):
    x, h0, Wx, Wh, b = (np.asarray(v, F) for v in (x, h0, Wx, Wh, b))
    N, T, D = x.shape
    W = np.concatenate([Wx, Wh], axis=0)
    xh, h, prev = [], np.empty((N, T, Wh.shape[0]), F), h0
    for t in range(T):
        xh.append(np.concatenate([x[:, t], prev], axis=1))
        prev = h[:, t] = np.tanh(xh[t] @ W + b)
    return h, (W, xh, h, D)


def rnn_backward(dh, cache):
    W, xh, h, D = cache
    dh = np.asarray(dh, F)
    N, T, _ = h.shape
    das, carry = [None] * T, np.zeros((N, W.shape[1]), F)
    dx = np.empty((N, T, D), F)
    for t in reversed(range(T)):
        das[t] = (dh[:, t] + carry) * (F(1) - h[:, t] * h[:, t])
        dxh = das[t] @ W.T
        dx[:, t], carry = dxh[:, :D], dxh[:, D:]
    dW, db = np.zeros_like(W), np.zeros(W.shape[1], F)
    for t in range(T):
        dW += xh[t].T @ das[t]
        db += das[t].sum(axis=0)
    return dx, carry, dW[:D], dW[D:], db

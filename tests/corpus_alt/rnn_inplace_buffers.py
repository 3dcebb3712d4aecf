"""Tanh RNN, CS231n layer functions; private preallocated work buffers written with out=
(np.matmul, np.tanh, np.multiply, np.add), fresh result arrays for every call."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "in-place work buffers (out=) for products, activations and accumulations"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = Wh.shape[0]
    h, xw = np.empty((N, T, H)), np.empty((N, H))
    prev = h0
    for t in range(T):
        np.matmul(x[:, t], Wx, out=xw)
        out = h[:, t]
        np.matmul(prev, Wh, out=out)
        np.add(out, xw, out=out)
        np.add(out, b, out=out)
        np.tanh(out, out=out)
        prev = out
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, D = x.shape
    H = Wh.shape[0]
    dx, dWx, dWh, db = np.empty_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H)
    da, carry, deriv = np.empty((N, H)), np.zeros((N, H)), np.empty((N, H))
    gWx, gWh, gb = np.empty_like(Wx), np.empty_like(Wh), np.empty(H)
    for t in reversed(range(T)):
        np.multiply(h[:, t], h[:, t], out=deriv)
        np.subtract(1.0, deriv, out=deriv)
        np.add(dh[:, t], carry, out=da)
        np.multiply(da, deriv, out=da)
        np.matmul(da, Wx.T, out=dx[:, t])
        np.matmul(x[:, t].T, da, out=gWx)
        np.add(dWx, gWx, out=dWx)
        np.matmul((h[:, t - 1] if t else h0).T, da, out=gWh)
        np.add(dWh, gWh, out=dWh)
        np.sum(da, axis=0, out=gb)
        np.add(db, gb, out=db)
        np.matmul(da, Wh.T, out=carry)
    return dx, carry.copy(), dWx, dWh, db

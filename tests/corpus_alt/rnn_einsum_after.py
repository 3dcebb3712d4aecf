"""Tanh RNN, CS231n layer functions; every product an einsum, and the parameter gradients
computed after the loop by one contraction over (batch, time) of the stored da."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "rnn_forward", "rnn_backward"
SIGNATURE = None
FORMULATION = "einsum for every product; dWx = einsum('ntd,nth->dh') over all steps at once"


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, prev = np.empty((N, T, Wh.shape[0])), h0
    for t in range(T):
        prev = h[:, t] = np.tanh(np.einsum("nd,dh->nh", x[:, t], Wx) + np.einsum("nk,kh->nh", prev, Wh) + b)
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, H = h.shape
    da, carry = np.empty_like(h), np.zeros_like(h0)
    for t in reversed(range(T)):
        da[:, t] = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        carry = np.einsum("nh,kh->nk", da[:, t], Wh)
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
    dx = np.einsum("nth,dh->ntd", da, Wx)
    return (dx, carry, np.einsum("ntd,nth->dh", x, da), np.einsum("ntk,nth->kh", h_prev, da),
            np.einsum("nth->h", da))

"""LSTM, CS231n layer functions; einsum products, the backward sweep stores the gate gradients
da_t and the parameter gradients are contracted over (batch, time) after it."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "einsum everywhere; dWx, dWh, db one contraction over (n, t) after the sweep"


def sigmoid(u):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-u))


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    G, c, h = np.empty((N, T, 4 * H)), np.empty((N, T + 1, H)), np.empty((N, T, H))
    c[:, 0], prev_h = 0.0, h0
    for t in range(T):
        a = np.einsum("nd,dk->nk", x[:, t], Wx) + np.einsum("nj,jk->nk", prev_h, Wh) + b
        G[:, t, :3 * H], G[:, t, 3 * H:] = sigmoid(a[:, :3 * H]), np.tanh(a[:, 3 * H:])
        c[:, t + 1] = G[:, t, H:2 * H] * c[:, t] + G[:, t, :H] * G[:, t, 3 * H:]
        prev_h = h[:, t] = G[:, t, 2 * H:3 * H] * np.tanh(c[:, t + 1])
    return h, (x, h0, Wx, Wh, G, c, h)


def lstm_backward(dh, cache):
    x, h0, Wx, Wh, G, c, h = cache
    N, T, H = h.shape
    da = np.empty_like(G)
    carry_h, carry_c = np.zeros_like(h0), np.zeros_like(h0)
    for t in reversed(range(T)):
        i, f, o, g = (G[:, t, k * H:(k + 1) * H] for k in range(4))
        tc = np.tanh(c[:, t + 1])
        dht = dh[:, t] + carry_h
        dc = carry_c + dht * o * (1 - tc ** 2)
        da[:, t, :H] = dc * g * i * (1 - i)
        da[:, t, H:2 * H] = dc * c[:, t] * f * (1 - f)
        da[:, t, 2 * H:3 * H] = dht * tc * o * (1 - o)
        da[:, t, 3 * H:] = dc * i * (1 - g ** 2)
        carry_h, carry_c = np.einsum("nk,jk->nj", da[:, t], Wh), dc * f
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
    return (np.einsum("ntk,dk->ntd", da, Wx), carry_h, np.einsum("ntd,ntk->dk", x, da),
            np.einsum("ntj,ntk->jk", h_prev, da), np.einsum("ntk->k", da))

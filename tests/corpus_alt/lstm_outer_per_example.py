"""LSTM, CS231n layer functions; one example at a time with 1-D vectors, parameter gradients
accumulated with np.outer per step and summed over the batch at the end."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "per example, 1-D vectors, np.outer per step; sigmoid via tanh(u/2)"


def sigmoid(u):
    return 0.5 + 0.5 * np.tanh(0.5 * u)


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    h, steps = np.empty((N, T, H)), [[None] * T for _ in range(N)]
    for n in range(N):
        prev_h, prev_c = h0[n], np.zeros(H)
        for t in range(T):
            a = Wx.T @ x[n, t] + Wh.T @ prev_h + b
            i, f, o, g = sigmoid(a[:H]), sigmoid(a[H:2 * H]), sigmoid(a[2 * H:3 * H]), np.tanh(a[3 * H:])
            c = f * prev_c + i * g
            steps[n][t] = (prev_h, prev_c, i, f, o, g, c)
            prev_h, prev_c = o * np.tanh(c), c
            h[n, t] = prev_h
    return h, (x, Wx, Wh, steps)


def lstm_backward(dh, cache):
    x, Wx, Wh, steps = cache
    N, T, H = dh.shape
    dx, dh0, totals = np.empty_like(x), np.empty((N, H)), []
    for n in range(N):
        gWx, gWh, gb = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H)
        carry_h, carry_c = np.zeros(H), np.zeros(H)
        for t in reversed(range(T)):
            prev_h, prev_c, i, f, o, g, c = steps[n][t]
            tc = np.tanh(c)
            dht = dh[n, t] + carry_h
            dc = carry_c + dht * o * (1 - tc ** 2)
            da = np.concatenate([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dht * tc * o * (1 - o),
                                 dc * i * (1 - g ** 2)])
            dx[n, t] = Wx @ da
            gWx += np.outer(x[n, t], da)
            gWh += np.outer(prev_h, da)
            gb += da
            carry_h, carry_c = Wh @ da, dc * f
        dh0[n] = carry_h
        totals.append((gWx, gWh, gb))
    return (dx, dh0, *(np.sum([tot[k] for tot in totals], axis=0) for k in range(3)))

"""LSTM, CS231n layer functions (gates i, f, o, g; c0 = 0); sigmoid written through tanh,
sigmoid(u) = 0.5 (1 + tanh(u / 2)), derivatives from the outputs."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "sigmoid(u) = 0.5*(1 + tanh(u/2)); s' = s(1-s), tanh' = 1 - t^2 from outputs"


def sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    h, steps, prev_h, prev_c = np.empty((N, T, H)), [], h0, np.zeros_like(h0)
    for t in range(T):
        a = x[:, t] @ Wx + prev_h @ Wh + b
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
        g = np.tanh(a[:, 3 * H:])
        c = f * prev_c + i * g
        tc = np.tanh(c)
        prev_h = h[:, t] = o * tc
        steps.append((h[:, t - 1] if t else h0, prev_c, i, f, o, g, tc))
        prev_c = c
    return h, (x, Wx, Wh, steps)


def lstm_backward(dh, cache, plant=None):
    """plant=(t, factor) multiplies the dh message carried from step t to step t-1 (a planted error)."""
    x, Wx, Wh, steps = cache
    N, T, _ = x.shape
    dx = np.empty_like(x)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[1])
    carry_h = np.zeros((N, Wh.shape[0]))
    carry_c = np.zeros_like(carry_h)
    for t in reversed(range(T)):
        h_prev, c_prev, i, f, o, g, tc = steps[t]
        dht = dh[:, t] + carry_h
        dc = carry_c + dht * o * (1 - tc ** 2)
        da = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                             dht * tc * o * (1 - o), dc * i * (1 - g ** 2)], axis=1)
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        carry_h, carry_c = da @ Wh.T, dc * f
        if plant is not None and t == plant[0]:
            carry_h = carry_h * plant[1]
    return dx, carry_h, dWx, dWh, db

"""LSTM, CS231n layer functions, computed and returned entirely in float32; the textbook
formulas (sigmoid 1 / (1 + exp(-u)), derivatives from the outputs)."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float32"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "float32 throughout, textbook LSTM backward"
F = np.float32


def sigmoid(u):
    with np.errstate(over="ignore"):
        return F(1) / (F(1) + np.exp(-u))


def lstm_forward(x, h0, Wx, Wh, b):
    x, h0, Wx, Wh, b = (np.asarray(v, F) for v in (x, h0, Wx, Wh, b))
    N, T, _ = x.shape
    H = h0.shape[1]
    h, steps, prev_h, prev_c = np.empty((N, T, H), F), [], h0, np.zeros_like(h0)
    for t in range(T):
        a = x[:, t] @ Wx + prev_h @ Wh + b
        i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
        c = f * prev_c + i * g
        steps.append((prev_h, prev_c, i, f, o, g, c))
        prev_h, prev_c = o * np.tanh(c), c
        h[:, t] = prev_h
    return h, (x, Wx, Wh, steps)


def lstm_backward(dh, cache, plant=None):
    """plant=(t, factor) multiplies the dh message carried from step t to step t-1 (a planted error)."""
    x, Wx, Wh, steps = cache
    dh = np.asarray(dh, F)
    N, T, H = dh.shape
    dx = np.empty_like(x)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H, F)
    carry_h, carry_c = np.zeros((N, H), F), np.zeros((N, H), F)
    for t in reversed(range(T)):
        prev_h, prev_c, i, f, o, g, c = steps[t]
        tc = np.tanh(c)
        dht = dh[:, t] + carry_h
        dc = carry_c + dht * o * (F(1) - tc ** 2)
        da = np.concatenate([dc * g * i * (F(1) - i), dc * prev_c * f * (F(1) - f), dht * tc * o * (F(1) - o),
                             dc * i * (F(1) - g ** 2)], axis=1)
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += prev_h.T @ da
        db += da.sum(axis=0)
        carry_h, carry_c = da @ Wh.T, dc * f
        if plant is not None and t == plant[0]:
            carry_h = carry_h * F(plant[1])
    return dx, carry_h, dWx, dWh, db

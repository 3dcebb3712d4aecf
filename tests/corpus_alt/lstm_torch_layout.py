"""LSTM in PyTorch's layout (nn.LSTM's weights, one layer): time-major x (T, N, D), column
convention weight_ih (4H, D), weight_hh (4H, H), two biases, gate order i, f, g, o; c0 = 0.
Products written as x @ W.T with the two biases added separately, the backward with np.dot."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "pytorch", "layer", "float64"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = (("x", "h0", "Wx", "Wh", "b", "b_hh"), ("h", "cache"),
             ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b", "b_hh"))
FORMULATION = "PyTorch layout: (x W_ih^T + b_ih) + (h W_hh^T + b_hh), gates i,f,g,o; stable two-branch sigmoid"


def sigmoid(u):
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def lstm_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    T, N, _ = x.shape
    H = h0.shape[1]
    h, steps, prev_h, prev_c = np.empty((T, N, H)), [], h0, np.zeros_like(h0)
    for t in range(T):
        a = (np.dot(x[t], weight_ih.T) + bias_ih) + (np.dot(prev_h, weight_hh.T) + bias_hh)
        i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c = f * prev_c + i * g
        steps.append((prev_h, prev_c, i, f, g, o, c))
        prev_h, prev_c = o * np.tanh(c), c
        h[t] = prev_h
    return h, (x, weight_ih, weight_hh, steps)


def lstm_backward(dh, cache):
    x, weight_ih, weight_hh, steps = cache
    T, N, H = dh.shape
    dx = np.empty_like(x)
    dW_ih, dW_hh, db = np.zeros_like(weight_ih), np.zeros_like(weight_hh), np.zeros(4 * H)
    carry_h, carry_c = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        prev_h, prev_c, i, f, g, o, c = steps[t]
        tc = np.tanh(c)
        dht = dh[t] + carry_h
        dc = carry_c + dht * o * (1 - tc ** 2)
        da = np.concatenate([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dc * i * (1 - g ** 2),
                             dht * tc * o * (1 - o)], axis=1)
        dx[t] = np.dot(da, weight_ih)
        dW_ih += np.dot(da.T, x[t])
        dW_hh += np.dot(da.T, prev_h)
        db += da.sum(axis=0)
        carry_h, carry_c = np.dot(da, weight_hh), dc * f
    return dx, carry_h, dW_ih, dW_hh, db, db.copy()

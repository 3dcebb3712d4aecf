"""LSTM, CS231n layer functions; the numerically stable two-branch sigmoid (e^u / (1 + e^u) for
u < 0), only pre-activations and cell states cached, every derivative recomputed from them:
s(a)(1 - s(a)) and 1 / cosh(.)^2."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "two-branch stable sigmoid; s(a)*(1-s(a)) and 1/cosh(.)**2 recomputed from pre-activations"


def sigmoid(u):
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def dsigmoid(u):
    return sigmoid(u) * (1.0 - sigmoid(u))


def dtanh(u):
    with np.errstate(over="ignore"):
        return 1.0 / np.cosh(u) ** 2


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    h, A, C = np.empty((N, T, H)), np.empty((N, T, 4 * H)), np.empty((N, T + 1, H))
    C[:, 0], prev_h = 0.0, h0
    for t in range(T):
        a = A[:, t] = x[:, t] @ Wx + prev_h @ Wh + b
        C[:, t + 1] = sigmoid(a[:, H:2 * H]) * C[:, t] + sigmoid(a[:, :H]) * np.tanh(a[:, 3 * H:])
        prev_h = h[:, t] = sigmoid(a[:, 2 * H:3 * H]) * np.tanh(C[:, t + 1])
    return h, (x, h0, Wx, Wh, A, C, h)


def lstm_backward(dh, cache):
    x, h0, Wx, Wh, A, C, h = cache
    N, T, H = h.shape
    dx = np.empty_like(x)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H)
    carry_h, carry_c = np.zeros_like(h0), np.zeros_like(h0)
    for t in reversed(range(T)):
        a = A[:, t]
        ai, af, ao, ag = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        dht = dh[:, t] + carry_h
        dc = carry_c + dht * sigmoid(ao) * dtanh(C[:, t + 1])
        da = np.concatenate([dc * np.tanh(ag) * dsigmoid(ai), dc * C[:, t] * dsigmoid(af),
                             dht * np.tanh(C[:, t + 1]) * dsigmoid(ao), dc * sigmoid(ai) * dtanh(ag)], axis=1)
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += (h[:, t - 1] if t else h0).T @ da
        db += da.sum(axis=0)
        carry_h, carry_c = da @ Wh.T, dc * sigmoid(af)
    return dx, carry_h, dWx, dWh, db

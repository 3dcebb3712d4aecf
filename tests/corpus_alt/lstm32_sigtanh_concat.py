"""LSTM, CS231n layer functions in float32 with sigmoid = 0.5 (1 + tanh(u/2)), the product
[x, h] @ [Wx; Wh] concatenated and the weight gradient summed in forward time order."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float32"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "float32: sigmoid via tanh(u/2), [x, h] concatenated, dW summed in forward order"
F = np.float32


def sigmoid(u):
    return F(0.5) * (F(1) + np.tanh(F(0.5) * u))


def lstm_forward(x, h0, Wx, Wh, b):
    x, h0, Wx, Wh, b = (np.asarray(v, F) for v in (x, h0, Wx, Wh, b))
    N, T, D = x.shape
    H = h0.shape[1]
    W = np.concatenate([Wx, Wh], axis=0)
    h, steps, prev_h, prev_c = np.empty((N, T, H), F), [], h0, np.zeros_like(h0)
    for t in range(T):
        z = np.concatenate([x[:, t], prev_h], axis=1)
        a = z @ W + b
        i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
        c = f * prev_c + i * g
        steps.append((z, prev_c, i, f, o, g, np.tanh(c)))
        prev_h, prev_c = o * steps[-1][-1], c
        h[:, t] = prev_h
    return h, (W, D, steps)


def lstm_backward(dh, cache):
    W, D, steps = cache
    dh = np.asarray(dh, F)
    N, T, H = dh.shape
    dx, das = np.empty((N, T, D), F), [None] * T
    carry_h, carry_c = np.zeros((N, H), F), np.zeros((N, H), F)
    for t in reversed(range(T)):
        z, prev_c, i, f, o, g, tc = steps[t]
        dht = dh[:, t] + carry_h
        dc = carry_c + dht * o * (F(1) - tc * tc)
        das[t] = np.concatenate([dc * g * i * (F(1) - i), dc * prev_c * f * (F(1) - f),
                                 dht * tc * o * (F(1) - o), dc * i * (F(1) - g * g)], axis=1)
        dz = das[t] @ W.T
        dx[:, t], carry_h, carry_c = dz[:, :D], dz[:, D:], dc * f
    dW, db = np.zeros_like(W), np.zeros(4 * H, F)
    for t in range(T):
        dW += steps[t][0].T @ das[t]
        db += das[t].sum(axis=0)
    return dx, carry_h, dW[:D], dW[D:], db

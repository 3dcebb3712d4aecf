"""LSTM, CS231n layer functions; one product [x_t, h_{t-1}] @ [Wx; Wh] per step, the gate
blocks taken by np.split, and the stacked weight gradient split into dWx, dWh at the end."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "layer", "float64"
FORWARD, BACKWARD = "lstm_forward", "lstm_backward"
SIGNATURE = None
FORMULATION = "[x, h] @ vstack([Wx, Wh]), np.split gates, dW split afterwards; sigmoid 1/(1+exp(-u))"


def sigmoid(u):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-u))


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    W = np.concatenate([Wx, Wh], axis=0)
    h, steps, prev_h, prev_c = np.empty((N, T, h0.shape[1])), [], h0, np.zeros_like(h0)
    for t in range(T):
        z = np.concatenate([x[:, t], prev_h], axis=1)
        a_i, a_f, a_o, a_g = np.split(z @ W + b, 4, axis=1)
        i, f, o, g = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o), np.tanh(a_g)
        c = f * prev_c + i * g
        prev_h = h[:, t] = o * np.tanh(c)
        steps.append((z, prev_c, i, f, o, g, c))
        prev_c = c
    return h, (W, D, steps)


def lstm_backward(dh, cache):
    W, D, steps = cache
    N, T, H = dh.shape
    dW, db, dx = np.zeros_like(W), np.zeros(4 * H), np.empty((N, T, D))
    carry_h, carry_c = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        z, c_prev, i, f, o, g, c = steps[t]
        tc = np.tanh(c)
        dht = dh[:, t] + carry_h
        dc = carry_c + dht * o * (1 - tc ** 2)
        da = np.hstack([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dht * tc * o * (1 - o),
                        dc * i * (1 - g ** 2)])
        dW += z.T @ da
        db += da.sum(axis=0)
        dz = da @ W.T
        dx[:, t], carry_h, carry_c = dz[:, :D], dz[:, D:], dc * f
    return dx, carry_h, dW[:D], dW[D:], db

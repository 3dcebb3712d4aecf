"""GRU in Keras's layout with reset_after=False (the cell "gru-reset-before"): batch-major
x (N, T, D), kernel (D, 3H), recurrent_kernel (H, 3H), bias (3H,), gate order z, r, h;
hh = tanh(x K_h + (r * h) R_h + b_h), h' = z h + (1 - z) hh.  The z, r blocks as one product of
[x, h] with the stacked [K; R], the candidate as one product of [x, r * h]."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "gru-reset-before", "keras", "layer", "float64"
FORWARD, BACKWARD = "gru_forward", "gru_backward"
SIGNATURE = (("x", "h0", "Wx", "Wh", "b"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b"))
FORMULATION = "Keras GRU (reset before): [x, h] @ [K; R] for z, r and [x, r*h] @ [K_h; R_h]; sigmoid via tanh"


def sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def gru_forward(x, h0, kernel, recurrent_kernel, bias):
    N, T, D = x.shape
    H = h0.shape[1]
    W = np.concatenate([kernel, recurrent_kernel], axis=0)          # (D + H, 3H)
    h, steps, prev = np.empty((N, T, H)), [], h0
    for t in range(T):
        xh = np.concatenate([x[:, t], prev], axis=1)
        zr = sigmoid(xh @ W[:, :2 * H] + bias[:2 * H])
        xs = np.concatenate([x[:, t], zr[:, H:] * prev], axis=1)
        hh = np.tanh(xs @ W[:, 2 * H:] + bias[2 * H:])
        steps.append((xh, xs, zr, hh))
        prev = h[:, t] = zr[:, :H] * prev + (1 - zr[:, :H]) * hh
    return h, (W, D, steps)


def gru_backward(dh, cache):
    W, D, steps = cache
    N, T, H = dh.shape
    dW, db, dx, carry = np.zeros_like(W), np.zeros(3 * H), np.empty((N, T, D)), np.zeros((N, H))
    for t in reversed(range(T)):
        xh, xs, zr, hh = steps[t]
        prev, z, r = xh[:, D:], zr[:, :H], zr[:, H:]
        dht = dh[:, t] + carry
        dah = dht * (1 - z) * (1 - hh ** 2)
        dxs = dah @ W[:, 2 * H:].T                                   # d[x, r*h]
        dzr = np.concatenate([dht * (prev - hh), dxs[:, D:] * prev], axis=1) * zr * (1 - zr)
        dxh = dzr @ W[:, :2 * H].T
        dW[:, :2 * H] += xh.T @ dzr
        dW[:, 2 * H:] += xs.T @ dah
        db += np.concatenate([dzr, dah], axis=1).sum(axis=0)
        dx[:, t] = dxh[:, :D] + dxs[:, :D]
        carry = dht * z + dxs[:, D:] * r + dxh[:, D:]
    return dx, carry, dW[:D], dW[D:], db

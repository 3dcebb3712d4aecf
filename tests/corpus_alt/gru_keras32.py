"""GRU in Keras's layout with reset_after=False (cell "gru-reset-before") computed and returned
in float32 (Keras's default dtype); separate kernel and recurrent products per gate block."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "gru-reset-before", "keras", "layer", "float32"
FORWARD, BACKWARD = "gru_forward", "gru_backward"
SIGNATURE = (("x", "h0", "Wx", "Wh", "b"), ("h", "cache"), ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b"))
FORMULATION = "float32 Keras GRU (reset before), per-block products, sigmoid 1/(1+exp(-u))"
F = np.float32


def sigmoid(u):
    with np.errstate(over="ignore"):
        return F(1) / (F(1) + np.exp(-u))


def gru_forward(x, h0, kernel, recurrent_kernel, bias):
    x, h0, K, R, b = (np.asarray(v, F) for v in (x, h0, kernel, recurrent_kernel, bias))
    N, T, _ = x.shape
    H = h0.shape[1]
    h, steps, prev = np.empty((N, T, H), F), [], h0
    for t in range(T):
        z = sigmoid(x[:, t] @ K[:, :H] + prev @ R[:, :H] + b[:H])
        r = sigmoid(x[:, t] @ K[:, H:2 * H] + prev @ R[:, H:2 * H] + b[H:2 * H])
        hh = np.tanh(x[:, t] @ K[:, 2 * H:] + (r * prev) @ R[:, 2 * H:] + b[2 * H:])
        steps.append((prev, z, r, hh))
        prev = h[:, t] = z * prev + (F(1) - z) * hh
    return h, (x, K, R, steps)


def gru_backward(dh, cache):
    x, K, R, steps = cache
    dh = np.asarray(dh, F)
    N, T, H = dh.shape
    dx, dK, dR, db = np.empty_like(x), np.zeros_like(K), np.zeros_like(R), np.zeros(3 * H, F)
    carry = np.zeros((N, H), F)
    for t in reversed(range(T)):
        prev, z, r, hh = steps[t]
        dht = dh[:, t] + carry
        dah = dht * (F(1) - z) * (F(1) - hh * hh)
        ds = dah @ R[:, 2 * H:].T
        daz = dht * (prev - hh) * z * (F(1) - z)
        dar = ds * prev * r * (F(1) - r)
        da = np.concatenate([daz, dar, dah], axis=1)
        dx[:, t] = da @ K.T
        dK += x[:, t].T @ da
        dR[:, :2 * H] += prev.T @ da[:, :2 * H]
        dR[:, 2 * H:] += (r * prev).T @ dah
        db += da.sum(axis=0)
        carry = dht * z + ds * r + da[:, :2 * H] @ R[:, :2 * H].T
    return dx, carry, dK, dR, db

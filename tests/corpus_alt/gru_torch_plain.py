"""GRU in PyTorch's layout (nn.GRU's weights, one layer; the cell "gru", reset after the
recurrent product): time-major x (T, N, D), weight_ih (3H, D), weight_hh (3H, H), bias_ih,
bias_hh, gate order r, z, n; n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h.
The input and recurrent products gi, gh computed once per step (as PyTorch's own kernel)."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "gru", "pytorch", "layer", "float64"
FORWARD, BACKWARD = "gru_forward", "gru_backward"
SIGNATURE = (("x", "h0", "Wx", "Wh", "b", "b_hh"), ("h", "cache"),
             ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b", "b_hh"))
FORMULATION = "PyTorch GRU: gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh; h' = n + z (h - n)"


def sigmoid(u):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-u))


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    T, N, _ = x.shape
    H = h0.shape[1]
    h, steps, prev = np.empty((T, N, H)), [], h0
    for t in range(T):
        gi, gh = x[t] @ weight_ih.T + bias_ih, prev @ weight_hh.T + bias_hh
        r, z = sigmoid(gi[:, :H] + gh[:, :H]), sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        steps.append((prev, r, z, n, gh[:, 2 * H:]))
        prev = h[t] = n + z * (prev - n)
    return h, (x, weight_ih, weight_hh, steps)


def gru_backward(dh, cache):
    x, weight_ih, weight_hh, steps = cache
    T, N, H = dh.shape
    dx = np.empty_like(x)
    dW_ih, dW_hh = np.zeros_like(weight_ih), np.zeros_like(weight_hh)
    db_ih, db_hh, carry = np.zeros(3 * H), np.zeros(3 * H), np.zeros((N, H))
    for t in reversed(range(T)):
        prev, r, z, n, ghn = steps[t]
        dht = dh[t] + carry
        dan = dht * (1 - z) * (1 - n ** 2)
        daz = dht * (prev - n) * z * (1 - z)
        dar = dan * ghn * r * (1 - r)
        dgi = np.concatenate([dar, daz, dan], axis=1)
        dgh = np.concatenate([dar, daz, dan * r], axis=1)
        dx[t] = dgi @ weight_ih
        dW_ih += dgi.T @ x[t]
        dW_hh += dgh.T @ prev
        db_ih += dgi.sum(axis=0)
        db_hh += dgh.sum(axis=0)
        carry = dht * z + dgh @ weight_hh
    return dx, carry, dW_ih, dW_hh, db_ih, db_hh

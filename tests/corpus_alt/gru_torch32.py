"""GRU in PyTorch's layout (cell "gru") computed and returned in float32, as a float32 nn.GRU's
weights would be used; the textbook backward."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "gru", "pytorch", "layer", "float32"
FORWARD, BACKWARD = "gru_forward", "gru_backward"
SIGNATURE = (("x", "h0", "Wx", "Wh", "b", "b_hh"), ("h", "cache"),
             ("dh", "cache"), ("dx", "dh0", "Wx", "Wh", "b", "b_hh"))
FORMULATION = "float32 PyTorch GRU: h' = (1 - z) n + z h, derivatives from the outputs"
F = np.float32


def sigmoid(u):
    with np.errstate(over="ignore"):
        return F(1) / (F(1) + np.exp(-u))


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    x, h0, weight_ih, weight_hh, bias_ih, bias_hh = (np.asarray(v, F) for v in
                                                     (x, h0, weight_ih, weight_hh, bias_ih, bias_hh))
    T, N, _ = x.shape
    H = h0.shape[1]
    h, steps, prev = np.empty((T, N, H), F), [], h0
    for t in range(T):
        gi, gh = x[t] @ weight_ih.T + bias_ih, prev @ weight_hh.T + bias_hh
        r, z = sigmoid(gi[:, :H] + gh[:, :H]), sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        steps.append((prev, r, z, n, gh[:, 2 * H:]))
        prev = h[t] = (F(1) - z) * n + z * prev
    return h, (x, weight_ih, weight_hh, steps)


def gru_backward(dh, cache):
    x, weight_ih, weight_hh, steps = cache
    dh = np.asarray(dh, F)
    T, N, H = dh.shape
    dx = np.empty_like(x)
    dW_ih, dW_hh = np.zeros_like(weight_ih), np.zeros_like(weight_hh)
    db_ih, db_hh, carry = np.zeros(3 * H, F), np.zeros(3 * H, F), np.zeros((N, H), F)
    for t in reversed(range(T)):
        prev, r, z, n, ghn = steps[t]
        dht = dh[t] + carry
        dan = dht * (F(1) - z) * (F(1) - n * n)
        daz = dht * (prev - n) * z * (F(1) - z)
        dar = dan * ghn * r * (F(1) - r)
        dgi = np.concatenate([dar, daz, dan], axis=1)
        dgh = np.concatenate([dar, daz, dan * r], axis=1)
        dx[t] = dgi @ weight_ih
        dW_ih += dgi.T @ x[t]
        dW_hh += dgh.T @ prev
        db_ih += dgi.sum(axis=0)
        db_hh += dgh.sum(axis=0)
        carry = dht * z + dgh @ weight_hh
    return dx, carry, dW_ih, dW_hh, db_ih, db_hh

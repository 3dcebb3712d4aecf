"""LSTM with a softmax readout, CS231n loss mode (c0 = 0): loss(params, x, h0, y, mask), summed
over time and averaged over the batch; sigmoid = 0.5 (1 + tanh(u/2)), readout gradients
accumulated per step, log-softmax via logaddexp.reduce."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "lstm", "cs231n", "loss", "float64"
LOSS = "loss"
SIGNATURE = None
LOSS_OPTIONS = {"reduction": "batch-mean", "mask": True}
FORMULATION = "loss mode: sigmoid = 0.5*(1 + tanh(u/2)); log-softmax via np.logaddexp.reduce"


def sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def loss(params, x, h0, y, mask):
    Wx, Wh, b, Wv, bv = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
    N, T, _ = x.shape
    H = h0.shape[1]
    hs, cs, gates = [h0], [np.zeros_like(h0)], []
    for t in range(T):
        a = x[:, t] @ Wx + hs[-1] @ Wh + b
        i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
        cs.append(f * cs[-1] + i * g)
        hs.append(o * np.tanh(cs[-1]))
        gates.append((i, f, o, g))
    rows = np.arange(N)
    value, grads = 0.0, {"W_vocab": np.zeros_like(Wv), "b_vocab": np.zeros_like(bv)}
    dhs = []
    for t in range(T):
        s = hs[t + 1] @ Wv + bv
        logp = s - np.logaddexp.reduce(s, axis=1, keepdims=True)
        value -= np.sum(mask[:, t] * logp[rows, y[:, t]]) / N
        ds = np.exp(logp)
        ds[rows, y[:, t]] -= 1.0
        ds *= mask[:, t, None] / N
        grads["W_vocab"] += hs[t + 1].T @ ds
        grads["b_vocab"] += ds.sum(axis=0)
        dhs.append(ds @ Wv.T)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    carry_h, carry_c = np.zeros_like(h0), np.zeros_like(h0)
    for t in reversed(range(T)):
        i, f, o, g = gates[t]
        tc = np.tanh(cs[t + 1])
        dht = dhs[t] + carry_h
        dc = carry_c + dht * o * (1 - tc ** 2)
        da = np.concatenate([dc * g * i * (1 - i), dc * cs[t] * f * (1 - f), dht * tc * o * (1 - o),
                             dc * i * (1 - g ** 2)], axis=1)
        dWx += x[:, t].T @ da
        dWh += hs[t].T @ da
        db += da.sum(axis=0)
        carry_h, carry_c = da @ Wh.T, dc * f
    grads.update(Wx=dWx, Wh=dWh, b=db)
    return value, grads

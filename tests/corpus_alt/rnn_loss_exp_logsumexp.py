"""Tanh RNN with a softmax readout, CS231n loss mode (captioning RNN): loss(params, x, h0, y, mask),
summed over time and averaged over the batch; tanh from clipped exponentials, log-softmax via
a logsumexp, the backward written with the gradient of the readout per step."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "loss", "float64"
LOSS = "loss"
SIGNATURE = None
LOSS_OPTIONS = {"reduction": "batch-mean", "mask": True}
FORMULATION = "loss mode: tanh = (e^a - e^-a)/(e^a + e^-a) (a clipped to +-20), log-softmax via logsumexp"


def _tanh(a):
    a = np.clip(a, -20.0, 20.0)
    return (np.exp(a) - np.exp(-a)) / (np.exp(a) + np.exp(-a))


def loss(params, x, h0, y, mask):
    Wx, Wh, b, Wv, bv = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
    N, T, _ = x.shape
    hs = [h0]
    for t in range(T):
        hs.append(_tanh(x[:, t] @ Wx + hs[-1] @ Wh + b))
    total, dhs = 0.0, []
    for t in range(T):
        s = hs[t + 1] @ Wv + bv
        m = s.max(axis=1, keepdims=True)
        logp = s - (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))
        total -= np.sum(logp[np.arange(N), y[:, t]] * mask[:, t])
        ds = np.exp(logp)
        ds[np.arange(N), y[:, t]] -= 1.0
        dhs.append(ds * (mask[:, t, None] / N))
    grads = {"W_vocab": sum(hs[t + 1].T @ dhs[t] for t in range(T)), "b_vocab": sum(d.sum(axis=0) for d in dhs)}
    dWx, dWh, db, carry = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b), np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dhs[t] @ Wv.T + carry) * (1.0 - hs[t + 1] ** 2)
        dWx += x[:, t].T @ da
        dWh += hs[t].T @ da
        db += da.sum(axis=0)
        carry = da @ Wh.T
    grads.update(Wx=dWx, Wh=dWh, b=db)
    return total / N, grads

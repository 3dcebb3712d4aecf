"""Tanh RNN with a softmax readout, CS231n loss mode: [x, h] @ [Wx; Wh] concatenated, the
readout and its gradients as einsums over (batch, time), tanh as 2 sigmoid(2a) - 1."""
import numpy as np

CELL, LAYOUT, MODE, DTYPE = "rnn-tanh", "cs231n", "loss", "float64"
LOSS = "loss"
SIGNATURE = None
LOSS_OPTIONS = {"reduction": "batch-mean", "mask": True}
FORMULATION = "loss mode: [x, h] @ vstack([Wx, Wh]), einsum readout, tanh = 2*sigmoid(2a) - 1"


def loss(params, x, h0, y, mask):
    Wx, Wh, b, Wv, bv = (params[k] for k in ("Wx", "Wh", "b", "W_vocab", "b_vocab"))
    N, T, D = x.shape
    W = np.vstack([Wx, Wh])
    xh, h, prev = [], np.empty((N, T, Wh.shape[0])), h0
    for t in range(T):
        xh.append(np.hstack([x[:, t], prev]))
        with np.errstate(over="ignore"):
            prev = h[:, t] = 2.0 / (1.0 + np.exp(-2.0 * (xh[-1] @ W + b))) - 1.0
    s = np.einsum("nth,hk->ntk", h, Wv) + bv
    p = np.exp(s - s.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    n, k = np.indices((N, T))
    value = -np.sum(np.log(p[n, k, y]) * mask) / N
    ds = p.copy()
    ds[n, k, y] -= 1.0
    ds *= mask[:, :, None] / N
    grads = {"W_vocab": np.einsum("nth,ntk->hk", h, ds), "b_vocab": np.einsum("ntk->k", ds)}
    dh = np.einsum("ntk,hk->nth", ds, Wv)
    dW, db, carry = np.zeros_like(W), np.zeros_like(b), np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + carry) * (1.0 - h[:, t] ** 2)
        dW += np.einsum("ni,nj->ij", xh[t], da)
        db += np.einsum("nj->j", da)
        carry = np.einsum("nj,ij->ni", da, W)[:, D:]
    grads.update(Wx=dW[:D], Wh=dW[D:], b=db)
    return value, grads

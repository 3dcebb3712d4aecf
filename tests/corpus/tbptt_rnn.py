"""Truncated BPTT with k1 = k2 = k for a vanilla tanh RNN (column convention).

Conventions (float64):

* x (T, D, N), y (T, O, N), h0 (H, N): the columns of x[t] are the N examples' inputs at step t.
* params = {"Wxh": (H, D), "Whh": (H, H), "bh": (H, 1), "Why": (O, H), "by": (O, 1)}.
* h_t = tanh(Wxh x_t + Whh h_{t-1} + bh), yhat_t = Why h_t + by,
  loss_t = 0.5 * sum((yhat_t - y_t) ** 2) (squared error summed over outputs and batch).
* ``tbptt_grads(x, y, h0, params, k)``: the steps are cut into chunks
  [0, k), [k, 2k), ... (the last one may be shorter).  The forward pass carries the
  hidden state across chunks; the backward pass of a chunk starts at its last step
  and stops at its first, treating the chunk's initial state as a constant (in
  PyTorch: ``h = h.detach()`` at every chunk boundary).  Returns a dict with the
  keys of params: the sum over chunks of the gradient of the chunk's loss.
  With k >= T this is the full BPTT gradient of sum_t loss_t.
"""
import numpy as np


def chunk_forward(x, y, h_start, params):
    """Hidden states of one chunk (hs[0] = h_start) and the output errors yhat_t - y_t."""
    hs, errors = [h_start], []
    for x_t, y_t in zip(x, y):
        h = np.tanh(params["Wxh"] @ x_t + params["Whh"] @ hs[-1] + params["bh"])
        hs.append(h)
        errors.append(params["Why"] @ h + params["by"] - y_t)
    return hs, errors


def chunk_backward(x, hs, errors, params, grads):
    """Add the gradient of one chunk's loss to grads; nothing flows into hs[0]."""
    dh_from_later = np.zeros_like(hs[0])
    for t in reversed(range(len(errors))):
        grads["Why"] += errors[t] @ hs[t + 1].T
        grads["by"] += errors[t].sum(axis=1, keepdims=True)
        dh = params["Why"].T @ errors[t] + dh_from_later
        da = (1 - hs[t + 1] ** 2) * dh
        grads["Wxh"] += da @ x[t].T
        grads["Whh"] += da @ hs[t].T
        grads["bh"] += da.sum(axis=1, keepdims=True)
        dh_from_later = params["Whh"].T @ da


def tbptt_grads(x, y, h0, params, k):
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    h = h0
    for start in range(0, len(x), k):
        chunk = slice(start, start + k)
        hs, errors = chunk_forward(x[chunk], y[chunk], h, params)
        chunk_backward(x[chunk], hs, errors, params, grads)
        h = hs[-1]
    return grads

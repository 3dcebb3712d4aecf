"""Vanilla tanh RNN written the way the CS231n RNN assignment asks for it.

Conventions (row convention, batch-major, float64):

* x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,), h (N, T, H).
* Step t: a_t = x_t Wx + h_{t-1} Wh + b, h_t = tanh(a_t), with x_t = x[:, t], h_{-1} = h0.
* ``rnn_step_forward(x, prev_h, Wx, Wh, b) -> (next_h, cache)`` and
  ``rnn_step_backward(dnext_h, cache) -> (dx, dprev_h, dWx, dWh, db)``.
* ``rnn_forward(x, h0, Wx, Wh, b) -> (h, cache)``;
  ``rnn_backward(dh, cache) -> (dx, dh0, dWx, dWh, db)``: dh (N, T, H) is the
  upstream gradient of every hidden state h_t (the gradient arriving through
  h_{t+1} is added by the loop).  Parameter gradients are summed over batch and time.
* Loss mode, ``temporal_affine_softmax_loss(params, x, h0, y, mask=None) -> (loss, grads)``:
  params and grads are dicts with keys Wx, Wh, b, W_vocab (H, V), b_vocab (V,);
  scores = h W_vocab + b_vocab (N, T, V), y (N, T) integer labels in [0, V),
  mask (N, T) boolean (None: every step counts);
  loss = -sum_{n,t} mask[n, t] log softmax(scores[n, t])[y[n, t]] / N
  (summed over time, averaged over the batch, as CS231n's temporal softmax loss).

``make(bug)`` returns a namespace with all of these functions, the backward pass
carrying one planted mistake from ``_planted.CATALOGUE`` (``bug=None``: correct).
The module-level functions are the correct ones.
"""
import types

import numpy as np

from . import _planted

BUGS = _planted.RECURRENT_BUGS + ("transposed_matrix",)
BUG_NEEDS = {**_planted.RECURRENT_NEEDS, "transposed_matrix": "H >= 2"}
# The loss returns no dh0, so a wrong dL/dh_{t-1} only shows once it reaches a parameter.
# Both tables assume V >= 2 and a mask that is None or keeps at least one full sequence.
LOSS_BUG_NEEDS = {**BUG_NEEDS, "transposed_matrix": "T >= 2 and H >= 2"}


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    a = x @ Wx + prev_h @ Wh + b
    next_h = np.tanh(a)
    cache = (x, prev_h, Wx, Wh, a)
    return next_h, cache


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]))
    cache = []
    prev_h = h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)
        h[:, t] = prev_h
        cache.append(step_cache)
    return h, cache


def temporal_affine_forward(h, w, b):
    return h @ w + b, (h, w)


def temporal_affine_backward(dout, cache):
    h, w = cache
    dh = dout @ w.T
    dw = np.einsum("ntd,ntv->dv", h, dout)
    db = dout.sum(axis=(0, 1))
    return dh, dw, db


def temporal_softmax_loss(scores, y, mask):
    N, T, _ = scores.shape
    shifted = scores - scores.max(axis=2, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    n, t = np.indices((N, T))
    loss = -np.sum(mask * log_probs[n, t, y]) / N
    dscores = np.exp(log_probs)
    dscores[n, t, y] -= 1
    dscores *= mask[:, :, None] / N
    return loss, dscores


def _parameter_shapes(step_cache):
    """Shapes of Wx, Wh and b, read from a step cache."""
    _, _, Wx, Wh, _ = step_cache
    return [Wx.shape, Wh.shape, Wh.shape[1:]]


class _Variant:
    """The backward pass (and the loss built on it) with at most one planted mistake."""

    def __init__(self, bug):
        self.bug = bug

    def rnn_step_backward(self, dnext_h, cache):
        x, prev_h, Wx, Wh, a = cache
        next_h = np.tanh(a)
        da = dnext_h * _planted.tanh_derivative(a, next_h, self.bug)
        dx = da @ Wx.T
        dprev_h = da @ (Wh if self.bug == "transposed_matrix" else Wh.T)
        dWx = x.T @ da
        dWh = (next_h if self.bug == "h_t_for_h_prev" else prev_h).T @ da
        db = da[0] if self.bug == "bias_not_summed" else da.sum(axis=0)
        return dx, dprev_h, dWx, dWh, db

    def rnn_backward(self, dh, cache):
        if self.bug == "truncate_k":
            return self._truncated_rnn_backward(dh, cache)
        N, T, H = dh.shape
        dx = np.zeros((N, T, cache[0][0].shape[1]))
        grads = _planted.GradientSum(_parameter_shapes(cache[0]), self.bug)
        dprev_h = np.zeros((N, H))
        for t in reversed(range(T)):
            dnext_h = dh[:, t] if self.bug == "drop_recurrent" else dh[:, t] + dprev_h
            dx[:, t], dprev_h, *step_grads = self.rnn_step_backward(dnext_h, cache[t])
            if self.bug == "message_1pct" and t == _planted.MESSAGE_STEP:
                dprev_h = dprev_h * _planted.MESSAGE_FACTOR
            grads.add(step_grads, t, T)
        return (dx, dprev_h, *grads.result(N, T))

    def _truncated_rnn_backward(self, dh, cache):
        """Each dh[:, t] travels back through at most TRUNCATE_K steps."""
        N, T, H = dh.shape
        dx = np.zeros((N, T, cache[0][0].shape[1]))
        grads = _planted.GradientSum(_parameter_shapes(cache[0]), self.bug)
        dh0 = np.zeros((N, H))
        for t in range(T):
            window = _planted.truncation_window(t)
            dnext_h = dh[:, t]
            for s in window:
                dx_s, dnext_h, *step_grads = self.rnn_step_backward(dnext_h, cache[s])
                dx[:, s] += dx_s
                grads.add(step_grads, s, T)
            if window[-1] == 0:
                dh0 += dnext_h
        return (dx, dh0, *grads.result(N, T))

    def temporal_affine_softmax_loss(self, params, x, h0, y, mask=None):
        if mask is None:
            mask = np.ones(y.shape, dtype=bool)
        h, rnn_cache = rnn_forward(x, h0, params["Wx"], params["Wh"], params["b"])
        scores, affine_cache = temporal_affine_forward(h, params["W_vocab"], params["b_vocab"])
        loss, dscores = temporal_softmax_loss(scores, y, mask)
        dh, dW_vocab, db_vocab = temporal_affine_backward(dscores, affine_cache)
        _, _, dWx, dWh, db = self.rnn_backward(dh, rnn_cache)
        grads = {"Wx": dWx, "Wh": dWh, "b": db, "W_vocab": dW_vocab, "b_vocab": db_vocab}
        return loss, grads


def make(bug=None):
    """The layer functions with the real CS231n signatures; `bug` plants one mistake."""
    _planted.check_bug(bug, BUGS)
    variant = _Variant(bug)
    return types.SimpleNamespace(
        bug=bug,
        rnn_step_forward=rnn_step_forward,
        rnn_step_backward=variant.rnn_step_backward,
        rnn_forward=rnn_forward,
        rnn_backward=variant.rnn_backward,
        temporal_affine_softmax_loss=variant.temporal_affine_softmax_loss,
    )


_CORRECT = make()
rnn_step_backward = _CORRECT.rnn_step_backward
rnn_backward = _CORRECT.rnn_backward
temporal_affine_softmax_loss = _CORRECT.temporal_affine_softmax_loss

"""LSTM written the way the CS231n RNN assignment asks for it.

Conventions (row convention, batch-major, float64):

* x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,), h (N, T, H); c0 = 0.
* Gate blocks of the stacked pre-activation a = x_t Wx + h_{t-1} Wh + b, in order
  i, f, o, g (a[:, :H] is i): i, f, o = sigmoid(.), g = tanh(.);
  c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t).
* ``lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b) -> (next_h, next_c, cache)``,
  ``lstm_step_backward(dnext_h, dnext_c, cache) -> (dx, dprev_h, dprev_c, dWx, dWh, db)``.
* ``lstm_forward(x, h0, Wx, Wh, b) -> (h, cache)``;
  ``lstm_backward(dh, cache) -> (dx, dh0, dWx, dWh, db)``: dh (N, T, H) is the
  upstream gradient of every h_t; the gradients of c are internal.  Parameter
  gradients are summed over batch and time.

``make(bug)`` returns a namespace with these functions, the backward pass carrying
one planted mistake from ``_planted.CATALOGUE`` (``bug=None``: correct).  Here the
tanh mistakes concern tanh(c_t), sigmoid_deriv_missing_gate the forget gate and
swap_gate_blocks the i and f blocks.  The module-level functions are the correct ones.
"""
import types

import numpy as np

from . import _planted

BUGS = _planted.RECURRENT_BUGS + ("cell_path_dropped", "sigmoid_deriv_missing_gate", "swap_gate_blocks")
# c0 = 0 here, so the forget gate gets no gradient at t = 0.
BUG_NEEDS = {
    **_planted.RECURRENT_NEEDS,
    "cell_path_dropped": "T >= 2",
    "sigmoid_deriv_missing_gate": "T >= 2",
}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    a = x @ Wx + prev_h @ Wh + b
    a_i, a_f, a_o, a_g = np.split(a, 4, axis=1)
    i, f, o, g = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o), np.tanh(a_g)
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)
    return next_h, next_c, cache


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]))
    cache = []
    prev_h, prev_c = h0, np.zeros_like(h0)
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        cache.append(step_cache)
    return h, cache


def _parameter_shapes(step_cache):
    """Shapes of Wx, Wh and b, read from a step cache."""
    Wx, Wh = step_cache[3:5]
    return [Wx.shape, Wh.shape, Wh.shape[1:]]


class _Variant:
    """The backward pass with at most one planted mistake."""

    def __init__(self, bug):
        self.bug = bug

    def lstm_step_backward(self, dnext_h, dnext_c, cache):
        x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
        tanh_c = np.tanh(next_c)
        dc = dnext_c + dnext_h * o * _planted.tanh_derivative(next_c, tanh_c, self.bug)
        da_i = dc * g * i * (1 - i)
        da_f = dc * prev_c * (1 if self.bug == "sigmoid_deriv_missing_gate" else f * (1 - f))
        da_o = dnext_h * tanh_c * o * (1 - o)
        da_g = dc * i * (1 - g ** 2)
        if self.bug == "swap_gate_blocks":
            da = np.hstack((da_f, da_i, da_o, da_g))
        else:
            da = np.hstack((da_i, da_f, da_o, da_g))
        dx = da @ Wx.T
        dprev_h = da @ Wh.T
        dprev_c = np.zeros_like(dc) if self.bug == "cell_path_dropped" else dc * f
        dWx = x.T @ da
        dWh = (o * tanh_c if self.bug == "h_t_for_h_prev" else prev_h).T @ da
        db = da[0] if self.bug == "bias_not_summed" else da.sum(axis=0)
        return dx, dprev_h, dprev_c, dWx, dWh, db

    def lstm_backward(self, dh, cache):
        if self.bug == "truncate_k":
            return self._truncated_lstm_backward(dh, cache)
        N, T, H = dh.shape
        dx = np.zeros((N, T, cache[0][0].shape[1]))
        grads = _planted.GradientSum(_parameter_shapes(cache[0]), self.bug)
        dprev_h, dprev_c = np.zeros((N, H)), np.zeros((N, H))
        for t in reversed(range(T)):
            dnext_h = dh[:, t] if self.bug == "drop_recurrent" else dh[:, t] + dprev_h
            dx[:, t], dprev_h, dprev_c, *step_grads = self.lstm_step_backward(dnext_h, dprev_c, cache[t])
            if self.bug == "message_1pct" and t == _planted.MESSAGE_STEP:
                dprev_h = dprev_h * _planted.MESSAGE_FACTOR
            grads.add(step_grads, t, T)
        return (dx, dprev_h, *grads.result(N, T))

    def _truncated_lstm_backward(self, dh, cache):
        """Each dh[:, t] travels back (through h and c) at most TRUNCATE_K steps."""
        N, T, H = dh.shape
        dx = np.zeros((N, T, cache[0][0].shape[1]))
        grads = _planted.GradientSum(_parameter_shapes(cache[0]), self.bug)
        dh0 = np.zeros((N, H))
        for t in range(T):
            window = _planted.truncation_window(t)
            dnext_h, dnext_c = dh[:, t], np.zeros((N, H))
            for s in window:
                dx_s, dnext_h, dnext_c, *step_grads = self.lstm_step_backward(dnext_h, dnext_c, cache[s])
                dx[:, s] += dx_s
                grads.add(step_grads, s, T)
            if window[-1] == 0:
                dh0 += dnext_h
        return (dx, dh0, *grads.result(N, T))


def make(bug=None):
    """The layer functions with the real CS231n signatures; `bug` plants one mistake."""
    _planted.check_bug(bug, BUGS)
    variant = _Variant(bug)
    return types.SimpleNamespace(
        bug=bug,
        lstm_step_forward=lstm_step_forward,
        lstm_step_backward=variant.lstm_step_backward,
        lstm_forward=lstm_forward,
        lstm_backward=variant.lstm_backward,
    )


_CORRECT = make()
lstm_step_backward = _CORRECT.lstm_step_backward
lstm_backward = _CORRECT.lstm_backward

"""A hand-written vanilla RNN layer to try ``symrnn verify`` on (shipped with the package).

CS231n's conventions: ``x`` is ``(N, T, D)``, ``h0`` ``(N, H)``, ``Wx`` ``(D, H)``, ``Wh``
``(H, H)``, ``b`` ``(H,)``; ``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``.  ``rnn_backward`` is right;
``buggy_rnn_backward`` makes a mistake students make::

    symrnn verify symrnn.example_backprop:rnn_backward          # right: exit 0
    symrnn verify symrnn.example_backprop:buggy_rnn_backward    # wrong, and says what: exit 1
"""
import numpy as np


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]))
    prev = h0
    for t in range(T):
        prev = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        h[:, t] = prev
    return h, (x, h0, Wx, Wh, h)


def _backward(dh, cache, carry_message):
    x, h0, Wx, Wh, h = cache
    N, T, H = dh.shape
    dx, dWx, dWh, db = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H)
    carry = np.zeros((N, H))
    for t in reversed(range(T)):
        da = (dh[:, t] + (carry if carry_message else 0)) * (1 - h[:, t] ** 2)
        prev = h0 if t == 0 else h[:, t - 1]
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += prev.T @ da
        db += da.sum(axis=0)
        carry = da @ Wh.T
    return dx, carry, dWx, dWh, db


def rnn_backward(dh, cache):
    return _backward(dh, cache, carry_message=True)


def buggy_rnn_backward(dh, cache):
    """Forgets what step t+1 sends back to h_t: only each step's own upstream gradient is used."""
    return _backward(dh, cache, carry_message=False)


buggy_rnn_forward = rnn_forward

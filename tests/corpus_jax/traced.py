"""Cells that are no built-in one, with ``jax.custom_vjp``, for the tracing of
:mod:`symrnn.verify.frameworks` (the jaxpr of one step): an LSTM without the output tanh (it returns
``hs`` and the last ``c``) and a leaky RNN with alpha = 0.3, as ``tests/corpus_torch/traced.py``."""
import jax
import jax.numpy as jnp

ALPHA = 0.3

BUGS = {
    "lstm-no-tanh": {
        "output-tanh-derivative-kept": dict(gradient="dweight_ih", step=8),
        "cell-path-dropped": dict(gradient="dc0", path="c", step=8),
    },
    "leaky": {
        "leak-dropped": dict(gradient="dh0", path="h", step=8),
        "alpha-missing-in-gate": dict(gradient="dweight_ih"),
    },
}


def _lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    def step(carry, x_t):
        h, c = carry
        i, f, g, o = jnp.split(x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh, 4, axis=1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c = f * c + i * g
        h = o * c
        return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=1))
    (_, c), (hs, cs, gates) = jax.lax.scan(step, (h0, c0), x)
    return hs, c, cs, gates


def lstm_no_tanh(bug=None):
    @jax.custom_vjp
    def lstm_no_tanh(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
        return _lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)[:2]

    def fwd(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
        hs, c, cs, gates = _lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
        return (hs, c), (x, h0, c0, weight_ih, weight_hh, hs, cs, gates)

    def bwd(res, grads):
        x, h0, c0, weight_ih, weight_hh, hs, cs, gates = res
        dhs, dc_next = grads
        dx, dW_ih, dW_hh = [None] * x.shape[0], jnp.zeros_like(weight_ih), jnp.zeros_like(weight_hh)
        db, dh_next = jnp.zeros(weight_ih.shape[0], x.dtype), jnp.zeros_like(h0)
        for t in reversed(range(x.shape[0])):
            i, f, g, o = jnp.split(gates[t], 4, axis=1)
            h_prev, c_prev = (hs[t - 1], cs[t - 1]) if t > 0 else (h0, c0)
            dh = dhs[t] + dh_next
            if bug == "output-tanh-derivative-kept":
                tc = jnp.tanh(cs[t])
                do, dc = dh * tc, dh * o * (1 - tc * tc) + dc_next
            else:
                do, dc = dh * cs[t], dh * o + dc_next
            da = jnp.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                                  do * o * (1 - o)], axis=1)
            dx[t] = da @ weight_ih
            dW_ih, dW_hh, db = dW_ih + da.T @ x[t], dW_hh + da.T @ h_prev, db + da.sum(0)
            dh_next = da @ weight_hh
            dc_next = jnp.zeros_like(dc) if bug == "cell-path-dropped" else dc * f
        return jnp.stack(dx), dh_next, dc_next, dW_ih, dW_hh, db, db

    lstm_no_tanh.defvjp(fwd, bwd)
    return lstm_no_tanh


def _leaky(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    def step(h, x_t):
        u = jnp.tanh(x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
        h = (1 - ALPHA) * h + ALPHA * u
        return h, (h, u)
    return jax.lax.scan(step, h0, x)[1]


def leaky(bug=None):
    @jax.custom_vjp
    def leaky_rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        return _leaky(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)[0]

    def fwd(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        hs, us = _leaky(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
        return hs, (x, h0, weight_ih, weight_hh, hs, us)

    def bwd(res, dhs):
        x, h0, weight_ih, weight_hh, hs, us = res
        dx, dW_ih, dW_hh = [None] * x.shape[0], jnp.zeros_like(weight_ih), jnp.zeros_like(weight_hh)
        db, carry = jnp.zeros(weight_ih.shape[0], x.dtype), jnp.zeros_like(h0)
        for t in reversed(range(x.shape[0])):
            h_prev = hs[t - 1] if t > 0 else h0
            dh = dhs[t] + carry
            da = dh * (1 if bug == "alpha-missing-in-gate" else ALPHA) * (1 - us[t] * us[t])
            dx[t] = da @ weight_ih
            dW_ih, dW_hh, db = dW_ih + da.T @ x[t], dW_hh + da.T @ h_prev, db + da.sum(0)
            carry = da @ weight_hh + (0 if bug == "leak-dropped" else (1 - ALPHA) * dh)
        return jnp.stack(dx), carry, dW_ih, dW_hh, db, db

    leaky_rnn.defvjp(fwd, bwd)
    return leaky_rnn


MAKE = {"lstm-no-tanh": lstm_no_tanh, "leaky": leaky}

"""A tanh RNN with a ``jax.custom_vjp``: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""
import jax
import jax.numpy as jnp

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "tanh-derivative-missing": dict(gradient="dweight_ih", step=8, fingerprint="tanh-derivative-missing"),
    "recurrent-term-dropped": dict(gradient="dh0", step=8, path="h"),
    "h-for-h-prev": dict(gradient="dweight_hh", fingerprint="h-t-for-h-prev"),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dweight_ih", step="chunk", path="h"),
}


def _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    def step(h, x_t):
        h = jnp.tanh(x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
        return h, h
    return jax.lax.scan(step, h0, x)[1]


def make(bug=None, chunk=3):
    @jax.custom_vjp
    def rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        return _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)

    def fwd(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        hs = _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
        return hs, (x, h0, weight_ih, weight_hh, hs)

    def bwd(res, dhs):
        x, h0, weight_ih, weight_hh, hs = res
        T = x.shape[0]
        dx = [None] * T
        dW_ih, dW_hh = jnp.zeros_like(weight_ih), jnp.zeros_like(weight_hh)
        db = jnp.zeros(weight_ih.shape[0], x.dtype)
        carry = jnp.zeros_like(h0)
        for start in reversed(range(0, T, chunk)):
            for t in reversed(range(start, min(start + chunk, T))):
                h_prev = hs[t - 1] if t > 0 else h0
                dh = dhs[t] + carry
                if bug == "message-1pct" and t == T // 2:
                    dh = dh * 1.01
                da = dh if bug == "tanh-derivative-missing" else dh * (1 - hs[t] * hs[t])
                dx[t] = da @ weight_ih
                dW_ih = dW_ih + da.T @ x[t]
                dW_hh = dW_hh + da.T @ (hs[t] if bug == "h-for-h-prev" else h_prev)
                db = db + da.sum(0)
                carry = jnp.zeros_like(h0) if bug == "recurrent-term-dropped" else da @ weight_hh
                if bug == "chunk-boundary" and t == start and t > 0:
                    carry = dh @ weight_hh
        return jnp.stack(dx), carry, dW_ih, dW_hh, db, db

    rnn.defvjp(fwd, bwd)
    return rnn


rnn = make()

"""An LSTM with a ``jax.custom_vjp``, PyTorch's gate order ``i, f, g, o``."""
import jax
import jax.numpy as jnp

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "forget-sigmoid-derivative-as-output": dict(gradient="dweight_ih", block="f", step=8,
                                                fingerprint="sigmoid-derivative-as-output"),
    "cell-path-dropped": dict(gradient="dc0", step=8, path="c"),
    "gates-i-f-swapped": dict(gradient="dweight_ih", block="i,f", fingerprint="gate-blocks-i-f-swapped"),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dweight_ih", step="chunk", path="c"),
}


def _forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    def step(state, x_t):
        h, c = state
        i, f, g, o = jnp.split(x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh, 4, axis=1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=1))
    return jax.lax.scan(step, (h0, c0), x)[1]


def make(bug=None, chunk=3):
    @jax.custom_vjp
    def lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
        return _forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)[0]

    def fwd(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
        hs, cs, gs = _forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
        return hs, (x, h0, c0, weight_ih, weight_hh, hs, cs, gs)

    def bwd(res, dhs):
        x, h0, c0, weight_ih, weight_hh, hs, cs, gs = res
        T = x.shape[0]
        dx = [None] * T
        dW_ih, dW_hh = jnp.zeros_like(weight_ih), jnp.zeros_like(weight_hh)
        db = jnp.zeros(weight_ih.shape[0], x.dtype)
        dh_next, dc_next = jnp.zeros_like(h0), jnp.zeros_like(c0)
        for start in reversed(range(0, T, chunk)):
            for t in reversed(range(start, min(start + chunk, T))):
                i, f, g, o = jnp.split(gs[t], 4, axis=1)
                c_prev = cs[t - 1] if t > 0 else c0
                h_prev = hs[t - 1] if t > 0 else h0
                dh = dhs[t] + dh_next
                if bug == "message-1pct" and t == T // 2:
                    dh = dh * 1.01
                tc = jnp.tanh(cs[t])
                dc = dc_next + dh * o * (1 - tc * tc)
                di, df, dg, do = dc * g, dc * c_prev, dc * i, dh * tc
                daf = df * f if bug == "forget-sigmoid-derivative-as-output" else df * f * (1 - f)
                blocks = [di * i * (1 - i), daf, dg * (1 - g * g), do * o * (1 - o)]
                if bug == "gates-i-f-swapped":
                    blocks[0], blocks[1] = blocks[1], blocks[0]
                da = jnp.concatenate(blocks, axis=1)
                dx[t] = da @ weight_ih
                dW_ih = dW_ih + da.T @ x[t]
                dW_hh = dW_hh + da.T @ h_prev
                db = db + da.sum(0)
                dh_next = da @ weight_hh
                dc_next = jnp.zeros_like(dc) if bug == "cell-path-dropped" else dc * f
                if bug == "chunk-boundary" and t == start and t > 0:
                    dc_next = dc
        return jnp.stack(dx), dh_next, dc_next, dW_ih, dW_hh, db, db

    lstm.defvjp(fwd, bwd)
    return lstm


lstm = make()

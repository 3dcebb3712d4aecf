"""A GRU with a ``jax.custom_vjp`` and PyTorch's equations, gate order ``r, z, n``."""
import jax
import jax.numpy as jnp

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "update-sigmoid-derivative-missing": dict(gradient="dweight_ih", block="z", step=8,
                                              fingerprint="sigmoid-derivative-missing"),
    "reset-missing-in-b_hn": dict(gradient="dbias_hh", block="n"),
    "direct-path-dropped": dict(gradient="dh0", step=8, path="h"),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dweight_ih", step="chunk", path="h"),
}


def _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    def step(h, x_t):
        r_i, z_i, n_i = jnp.split(x_t @ weight_ih.T + bias_ih, 3, axis=1)
        r_h, z_h, n_h = jnp.split(h @ weight_hh.T + bias_hh, 3, axis=1)
        r, z = jax.nn.sigmoid(r_i + r_h), jax.nn.sigmoid(z_i + z_h)
        n = jnp.tanh(n_i + r * n_h)
        h = (1 - z) * n + z * h
        return h, (h, jnp.concatenate([r, z, n], axis=1), n_h)
    return jax.lax.scan(step, h0, x)[1]


def make(bug=None, chunk=3):
    @jax.custom_vjp
    def gru(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        return _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)[0]

    def fwd(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        hs, gs, nhs = _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
        return hs, (x, h0, weight_ih, weight_hh, hs, gs, nhs)

    def bwd(res, dhs):
        x, h0, weight_ih, weight_hh, hs, gs, nhs = res
        T = x.shape[0]
        dx = [None] * T
        dW_ih, dW_hh = jnp.zeros_like(weight_ih), jnp.zeros_like(weight_hh)
        db_ih = jnp.zeros(weight_ih.shape[0], x.dtype)
        db_hh = jnp.zeros_like(db_ih)
        carry = jnp.zeros_like(h0)
        for start in reversed(range(0, T, chunk)):
            for t in reversed(range(start, min(start + chunk, T))):
                r, z, n = jnp.split(gs[t], 3, axis=1)
                h_prev = hs[t - 1] if t > 0 else h0
                dh = dhs[t] + carry
                if bug == "message-1pct" and t == T // 2:
                    dh = dh * 1.01
                dan = dh * (1 - z) * (1 - n * n)
                dz = dh * (h_prev - n)
                daz = dz if bug == "update-sigmoid-derivative-missing" else dz * z * (1 - z)
                dar = dan * nhs[t] * r * (1 - r)
                dgi = jnp.concatenate([dar, daz, dan], axis=1)
                dgh = jnp.concatenate([dar, daz, dan * r], axis=1)
                dx[t] = dgi @ weight_ih
                dW_ih = dW_ih + dgi.T @ x[t]
                db_ih = db_ih + dgi.sum(0)
                dW_hh = dW_hh + dgh.T @ h_prev
                db_hh = db_hh + (jnp.concatenate([dar, daz, dan], axis=1) if bug == "reset-missing-in-b_hn"
                                 else dgh).sum(0)
                direct = jnp.zeros_like(dh) if bug == "direct-path-dropped" else dh * z
                carry = dgh @ weight_hh + direct
                if bug == "chunk-boundary" and t == start and t > 0:
                    carry = carry + dh * (1 - z)
        return jnp.stack(dx), carry, dW_ih, dW_hh, db_ih, db_hh

    gru.defvjp(fwd, bwd)
    return gru


gru = make()

"""minGRU (Feng et al. 2024) with a ``jax.custom_vjp``, written from the paper's sequential equations
(as ``tests/corpus_torch/mingru.py``): ``weight_ih`` stacks ``z`` then ``htilde``; the backward is the
reverse scan ``g_t = dh_t + (1 - z_{t+1}) g_{t+1}`` in chunks of ``chunk`` steps."""
import jax
import jax.numpy as jnp

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "gate-sigmoid-derivative-as-output": dict(gradient="dweight_ih", block="z",
                                              fingerprint="sigmoid-derivative-as-output"),
    "candidate-gradient-not-gated": dict(gradient="dweight_ih", block="htilde"),
    "decay-path-dropped": dict(gradient="dh0", path="h", step=8),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dh0", step="chunk", path="h"),
}


def _forward(x, h0, weight_ih, bias):
    zbar, htilde = jnp.split(x @ weight_ih.T + bias, 2, axis=-1)
    z = jax.nn.sigmoid(zbar)

    def step(h, zh):
        z_t, htilde_t = zh
        h = (1 - z_t) * h + z_t * htilde_t
        return h, h
    return jax.lax.scan(step, h0, (z, htilde))[1], z, htilde


def make(bug=None, chunk=3):
    @jax.custom_vjp
    def min_gru(x, h0, weight_ih, bias):
        return _forward(x, h0, weight_ih, bias)[0]

    def fwd(x, h0, weight_ih, bias):
        hs, z, htilde = _forward(x, h0, weight_ih, bias)
        return hs, (x, h0, weight_ih, z, htilde, hs)

    def bwd(res, dhs):
        x, h0, weight_ih, z, htilde, hs = res
        T = x.shape[0]
        g = [None] * T
        carry = jnp.zeros_like(h0)
        for start in reversed(range(0, T, chunk)):
            end = min(start + chunk, T)
            for t in reversed(range(start, end)):
                inner = ((1 - z[t + 1]) * g[t + 1] if bug != "decay-path-dropped" else g[t + 1]) if t + 1 < end \
                    else carry
                g[t] = dhs[t] + inner
                if bug == "message-1pct" and t == T // 2:
                    g[t] = g[t] * 1.01
            keeps_decay = bug not in ("chunk-boundary", "decay-path-dropped")
            carry = (1 - z[start]) * g[start] if keeps_decay else g[start]
        g = jnp.stack(g)
        h_prev = jnp.concatenate([h0[None], hs[:-1]])
        dz = g * (htilde - h_prev)
        dzbar = dz * z if bug == "gate-sigmoid-derivative-as-output" else dz * z * (1 - z)
        dhtilde = g if bug == "candidate-gradient-not-gated" else g * z
        da = jnp.concatenate([dzbar, dhtilde], axis=-1)
        return da @ weight_ih, carry, jnp.einsum("tng,tnd->gd", da, x), da.sum((0, 1))

    min_gru.defvjp(fwd, bwd)
    return min_gru


min_gru = make()

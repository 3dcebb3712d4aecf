"""A multi-head minGRU (Feng et al. 2024) with a ``jax.custom_vjp`` (as ``tests/corpus_torch/heads.py``):
the state split into heads, ``h`` of shape ``(N, heads, H/heads)``, ``weight_ih`` ``(2H, D)`` read head
by head (each head's ``z`` rows, then its ``htilde`` rows).  Per head ``z = sigmoid(zbar)``,
``h_t = (1 - z_t) h_{t-1} + z_t htilde_t``; the backward is the reverse scan of ``g_t`` with ``einsum``
over the head layout.  Bugs include the reductions over a wrong axis of the heads."""
import jax
import jax.numpy as jnp

HEADS = 2

#: bug -> what the report must say
BUGS = {
    "weight-summed-over-heads": dict(gradient="dweight_ih", fingerprint="heads-reduced"),
    "bias-summed-over-head-units": dict(gradient="dbias", fingerprint="head-units-reduced"),
    "gate-sigmoid-derivative-as-output": dict(gradient="dweight_ih", fingerprint="sigmoid-derivative-as-output"),
    "decay-path-dropped": dict(gradient="dh0", path="h", step=8),
}


def _gates(x, weight_ih, bias, heads):
    T, N, _ = x.shape
    a = (x @ weight_ih.T + bias).reshape(T, N, heads, -1)
    zbar, htilde = jnp.split(a, 2, axis=-1)
    return jax.nn.sigmoid(zbar), htilde


def _forward(x, h0, weight_ih, bias, heads):
    z, htilde = _gates(x, weight_ih, bias, heads)

    def step(h, zh):
        z_t, htilde_t = zh
        h = (1 - z_t) * h + z_t * htilde_t
        return h, h
    return jax.lax.scan(step, h0, (z, htilde))[1], z, htilde


def _weight_gradients(da, x, weight_ih, bug):
    heads = da.shape[2]
    if bug == "weight-summed-over-heads":  # the heads merged into the batch: one block for all heads
        dW = jnp.tile(jnp.einsum("tnkr,tnd->rd", da, x), (heads, 1))
    else:
        dW = jnp.einsum("tnkr,tnd->krd", da, x).reshape(weight_ih.shape)
    if bug == "bias-summed-over-head-units":
        db = jnp.broadcast_to(da.sum((0, 1, 3))[:, None], da.shape[2:]).reshape(-1)
    else:
        db = da.sum((0, 1)).reshape(-1)
    return dW, db


def make(bug=None, heads=HEADS):
    @jax.custom_vjp
    def multi_head_min_gru(x, h0, weight_ih, bias):
        return _forward(x, h0, weight_ih, bias, heads)[0]

    def fwd(x, h0, weight_ih, bias):
        hs, z, htilde = _forward(x, h0, weight_ih, bias, heads)
        return hs, (x, h0, weight_ih, z, htilde, hs)

    def bwd(res, dhs):
        x, h0, weight_ih, z, htilde, hs = res
        keep = 0 if bug == "decay-path-dropped" else 1  # 0: the decay (1 - z) of the message dropped

        def step(g_next, inputs):
            dh_t, z_next = inputs
            g = dh_t + (1 - keep * z_next) * g_next
            return g, g
        z_next = jnp.concatenate([z[1:], jnp.zeros_like(z[:1])])
        g = jax.lax.scan(step, jnp.zeros_like(h0), (dhs, z_next), reverse=True)[1]
        carry = (1 - keep * z[0]) * g[0]
        h_prev = jnp.concatenate([h0[None], hs[:-1]])
        dz = g * (htilde - h_prev)
        dzbar = dz * z if bug == "gate-sigmoid-derivative-as-output" else dz * z * (1 - z)
        da = jnp.concatenate([dzbar, g * z], axis=-1)  # (T, N, heads, 2 H/heads): the rows of weight_ih
        dx = jnp.einsum("tnkr,krd->tnd", da, weight_ih.reshape(heads, -1, x.shape[-1]))
        return (dx, carry) + _weight_gradients(da, x, weight_ih, bug)

    multi_head_min_gru.defvjp(fwd, bwd)
    return multi_head_min_gru


multi_head_min_gru = make()


#: a multi-head gated RNN that is no built-in cell (traced from its jaxpr), as tests/corpus_torch/heads.py's ``gated``
GATED_BUGS = {
    "weight-summed-over-heads": dict(gradient="dweight_ih", fingerprint="heads-reduced"),
    "gate-sigmoid-derivative-as-output": dict(gradient="dweight_ih", block="g0", step=8,
                                              fingerprint="sigmoid-derivative-as-output"),
}


def _gated_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, heads):
    N = x.shape[1]

    def step(h, x_t):
        a = x_t @ weight_ih.T + bias_ih + h.reshape(N, -1) @ weight_hh.T + bias_hh
        zbar, nbar = jnp.split(a.reshape(N, heads, -1), 2, axis=-1)
        z, n = jax.nn.sigmoid(zbar), jnp.tanh(nbar)
        h = (1 - z) * h + z * n
        return h, (h, z, n)
    return jax.lax.scan(step, h0, x)[1]


def gated(bug=None, heads=HEADS):
    """``zbar, nbar = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh`` (rows head by head), ``z = sigmoid(zbar)``,
    ``n = tanh(nbar)``, ``h_t = (1 - z) h_{t-1} + z n``, ``h`` of shape ``(N, heads, H/heads)``."""
    @jax.custom_vjp
    def multi_head_gated_rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        return _gated_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, heads)[0]

    def fwd(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        hs, zs, ns = _gated_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, heads)
        return hs, (x, h0, weight_ih, weight_hh, hs, zs, ns)

    def bwd(res, dhs):
        x, h0, weight_ih, weight_hh, hs, zs, ns = res
        T, N, _ = x.shape
        h_prev = jnp.concatenate([h0[None], hs[:-1]])

        def step(carry, inputs):
            dh_t, z, n, hp = inputs
            g = dh_t + carry
            dz = g * (n - hp)
            dzbar = dz * z if bug == "gate-sigmoid-derivative-as-output" else dz * z * (1 - z)
            da = jnp.concatenate([dzbar, g * z * (1 - n * n)], axis=-1)
            return g * (1 - z) + (da.reshape(N, -1) @ weight_hh).reshape(g.shape), da
        carry, da = jax.lax.scan(step, jnp.zeros_like(h0), (dhs, zs, ns, h_prev), reverse=True)
        dx = da.reshape(T, N, -1) @ weight_ih
        if bug == "weight-summed-over-heads":
            dW_ih = jnp.tile(jnp.einsum("tnkr,tnd->rd", da, x), (heads, 1))
        else:
            dW_ih = jnp.einsum("tnkr,tnd->krd", da, x).reshape(weight_ih.shape)
        dW_hh = jnp.einsum("tnr,tnj->rj", da.reshape(T, N, -1), h_prev.reshape(T, N, -1))
        db = da.sum((0, 1)).reshape(-1)
        return dx, carry, dW_ih, dW_hh, db, db

    multi_head_gated_rnn.defvjp(fwd, bwd)
    return multi_head_gated_rnn

"""sLSTM (xLSTM, Beck et al. 2024) with a ``jax.custom_vjp``, one head, the equations of
``tests/corpus_torch/slstm.py`` (sigmoid forget gate, gates stacked ``i, f, z, o``, ``c``, ``n``,
``m`` starting at zero); forward by ``lax.scan``, the backward in chunks of ``chunk`` steps."""
import jax
import jax.numpy as jnp

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "normaliser-path-dropped": dict(gradient="dbias", block="itilde,ftilde"),
    "output-sigmoid-derivative-missing": dict(gradient="dweight_ih", block="o",
                                              fingerprint="sigmoid-derivative-missing"),
    "log-sigmoid-derivative-wrong": dict(gradient="dweight_ih", block="ftilde"),
    "cell-path-dropped": dict(gradient="dweight_ih", path="c", step=8, fingerprint="c-path-dropped"),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dbias", step="chunk"),
}


def _forward(x, h0, weight_ih, weight_hh, bias):
    def step(carry, x_t):
        h, c, n, m = carry
        ibar, fbar, zbar, obar = jnp.split(x_t @ weight_ih.T + h @ weight_hh.T + bias, 4, axis=1)
        z, o, logf = jnp.tanh(zbar), jax.nn.sigmoid(obar), jax.nn.log_sigmoid(fbar)
        m_new = jnp.maximum(logf + m, ibar)
        i_s, f_s = jnp.exp(ibar - m_new), jnp.exp(logf + m - m_new)
        c, n = f_s * c + i_s * z, f_s * n + i_s
        h = o * c / n
        return (h, c, n, m_new), (h, c, n, m_new, jnp.concatenate([ibar, fbar, z, o], axis=1))
    zero = jnp.zeros_like(h0)
    return jax.lax.scan(step, (h0, zero, zero, zero), x)[1]


def make(bug=None, chunk=3):
    @jax.custom_vjp
    def slstm(x, h0, weight_ih, weight_hh, bias):
        return _forward(x, h0, weight_ih, weight_hh, bias)[0]

    def fwd(x, h0, weight_ih, weight_hh, bias):
        hs, cs, ns, ms, gates = _forward(x, h0, weight_ih, weight_hh, bias)
        return hs, (x, h0, weight_ih, weight_hh, hs, cs, ns, ms, gates)

    def bwd(res, dhs):
        x, h0, weight_ih, weight_hh, hs, cs, ns, ms, gates = res
        T, zero = x.shape[0], jnp.zeros_like(h0)
        dx, dW_ih, dW_hh = [None] * T, jnp.zeros_like(weight_ih), jnp.zeros_like(weight_hh)
        db = jnp.zeros(weight_ih.shape[0], x.dtype)
        dh_next, dc_next, dn_next, dm_next = zero, zero, zero, zero
        for start in reversed(range(0, T, chunk)):
            for t in reversed(range(start, min(start + chunk, T))):
                ibar, fbar, z, o = jnp.split(gates[t], 4, axis=1)
                h_prev, c_prev, n_prev, m_prev = ((hs[t - 1], cs[t - 1], ns[t - 1], ms[t - 1]) if t > 0
                                                  else (h0, zero, zero, zero))
                c, n, m = cs[t], ns[t], ms[t]
                logf = jax.nn.log_sigmoid(fbar)
                i_s, f_s = jnp.exp(ibar - m), jnp.exp(logf + m_prev - m)
                dh = dhs[t] + dh_next
                if bug == "message-1pct" and t == T // 2:
                    dh = dh * 1.01
                do = dh * c / n
                dc = dh * o / n + dc_next
                dn = dn_next if bug == "normaliser-path-dropped" else dn_next - dh * o * c / (n * n)
                df_s, di_s = dc * c_prev + dn * n_prev, dc * z + dn
                dm = -di_s * i_s - df_s * f_s + dm_next
                forget_wins = logf + m_prev >= ibar  # which argument of the max m_t is
                dlogf = df_s * f_s + jnp.where(forget_wins, dm, 0)
                dm_prev = df_s * f_s + jnp.where(forget_wins, dm, 0)
                dibar = di_s * i_s + jnp.where(forget_wins, 0, dm)
                sig_f = jax.nn.sigmoid(fbar)
                dfbar = dlogf * (sig_f if bug == "log-sigmoid-derivative-wrong" else 1 - sig_f)
                dobar = do if bug == "output-sigmoid-derivative-missing" else do * o * (1 - o)
                da = jnp.concatenate([dibar, dfbar, dc * i_s * (1 - z * z), dobar], axis=1)
                dx[t] = da @ weight_ih
                dW_ih, dW_hh, db = dW_ih + da.T @ x[t], dW_hh + da.T @ h_prev, db + da.sum(0)
                dh_next = da @ weight_hh
                dc_next = zero if bug == "cell-path-dropped" else dc * f_s
                dn_next, dm_next = dn * f_s, dm_prev
                if bug == "chunk-boundary" and t == start and t > 0:
                    dn_next = zero  # the chunk hands on h's and c's messages, not n's
        return jnp.stack(dx), dh_next, dW_ih, dW_hh, db

    slstm.defvjp(fwd, bwd)
    return slstm


slstm = make()

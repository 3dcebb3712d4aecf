"""sLSTM (xLSTM, Beck et al. 2024) as a ``torch.autograd.Function``, one head, written from the paper's
equations with the xLSTM code's sigmoid forget gate: ``zbar, ibar, fbar, obar = W x_t + R h_{t-1} + b``,
``z = tanh(zbar)``, ``o = sigmoid(obar)``, ``log f = log sigmoid(fbar)``, the stabiliser
``m_t = max(log f + m_{t-1}, ibar)``, ``i' = exp(ibar - m_t)``, ``f' = exp(log f + m_{t-1} - m_t)``,
``c_t = f' c_{t-1} + i' z``, ``n_t = f' n_{t-1} + i'``, ``h_t = o c_t / n_t``.  Gates stacked
``i, f, z, o`` as in the xLSTM code; ``c``, ``n`` and ``m`` start at zero (the paper's), ``h0`` is given.
The backward runs in chunks of ``chunk`` steps."""
import torch

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "normaliser-path-dropped": dict(gradient="dbias", block="itilde,ftilde"),
    "output-sigmoid-derivative-missing": dict(gradient="dweight_ih", block="o",
                                              fingerprint="sigmoid-derivative-missing"),
    "log-sigmoid-derivative-wrong": dict(gradient="dweight_ih", block="ftilde"),
    "cell-path-dropped": dict(gradient="dweight_ih", path="c", step=8, fingerprint="c-path-dropped"),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dbias", step="chunk"),
    "saved-in-place": dict(hygiene="saved-tensor-modified"),
}


def make(bug=None, chunk=3):
    class SLSTMFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias):
            N, H = h0.shape
            h, c, n, m = h0, h0.new_zeros(N, H), h0.new_zeros(N, H), h0.new_zeros(N, H)
            hs, cs, ns, ms, gates = [], [], [], [], []
            for t in range(x.shape[0]):
                ibar, fbar, zbar, obar = (x[t] @ weight_ih.T + h @ weight_hh.T + bias).chunk(4, dim=1)
                z, o, logf = torch.tanh(zbar), torch.sigmoid(obar), torch.nn.functional.logsigmoid(fbar)
                m_new = torch.maximum(logf + m, ibar)
                i_s, f_s = torch.exp(ibar - m_new), torch.exp(logf + m - m_new)
                c, n = f_s * c + i_s * z, f_s * n + i_s
                h, m = o * c / n, m_new
                hs.append(h), cs.append(c), ns.append(n), ms.append(m)
                gates.append(torch.cat([ibar, fbar, z, o], dim=1))
            hs, cs, ns, ms, gates = (torch.stack(a) for a in (hs, cs, ns, ms, gates))
            ctx.save_for_backward(x, h0, weight_ih, weight_hh, hs, cs, ns, ms, gates)
            if bug == "saved-in-place":
                ns.clamp_(min=1e-6)  # guarded against 0 for a later division, in the saved buffer
            return hs

        @staticmethod
        def backward(ctx, dhs):
            x, h0, weight_ih, weight_hh, hs, cs, ns, ms, gates = ctx.saved_tensors
            T = x.shape[0]
            zero = torch.zeros_like(h0)
            dx, dW_ih, dW_hh = torch.zeros_like(x), torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
            db = torch.zeros(weight_ih.shape[0], dtype=x.dtype, device=x.device)
            dh_next, dc_next, dn_next, dm_next = zero, zero, zero, zero
            for start in reversed(range(0, T, chunk)):
                for t in reversed(range(start, min(start + chunk, T))):
                    ibar, fbar, z, o = gates[t].chunk(4, dim=1)
                    h_prev, c_prev, n_prev, m_prev = ((hs[t - 1], cs[t - 1], ns[t - 1], ms[t - 1]) if t > 0
                                                      else (h0, zero, zero, zero))
                    c, n, m = cs[t], ns[t], ms[t]
                    logf = torch.nn.functional.logsigmoid(fbar)
                    i_s, f_s = torch.exp(ibar - m), torch.exp(logf + m_prev - m)
                    dh = dhs[t] + dh_next
                    if bug == "message-1pct" and t == T // 2:
                        dh = dh * 1.01
                    do = dh * c / n
                    dc = dh * o / n + dc_next
                    dn = dn_next if bug == "normaliser-path-dropped" else dn_next - dh * o * c / (n * n)
                    df_s, di_s = dc * c_prev + dn * n_prev, dc * z + dn
                    dz = dc * i_s
                    dibar, dlogf = di_s * i_s, df_s * f_s
                    dm = -di_s * i_s - df_s * f_s + dm_next
                    dm_prev = df_s * f_s
                    forget_wins = logf + m_prev >= ibar  # which argument of the max m_t is
                    dlogf = dlogf + torch.where(forget_wins, dm, 0)
                    dm_prev = dm_prev + torch.where(forget_wins, dm, 0)
                    dibar = dibar + torch.where(forget_wins, 0, dm)
                    sig_f = torch.sigmoid(fbar)
                    dfbar = dlogf * (sig_f if bug == "log-sigmoid-derivative-wrong" else 1 - sig_f)
                    dzbar = dz * (1 - z * z)
                    dobar = do if bug == "output-sigmoid-derivative-missing" else do * o * (1 - o)
                    da = torch.cat([dibar, dfbar, dzbar, dobar], dim=1)
                    dx[t] = da @ weight_ih
                    dW_ih += da.T @ x[t]
                    dW_hh += da.T @ h_prev
                    db += da.sum(0)
                    dh_next = da @ weight_hh
                    dc_next = zero if bug == "cell-path-dropped" else dc * f_s
                    dn_next, dm_next = dn * f_s, dm_prev
                    if bug == "n-message-zeroed-at-6" and t == 5:  # not in BUGS: the JAX corpus lacks it
                        dn_next = zero  # the message dL/dn from step 6 to step 5 (from 1) dropped
                    if bug == "chunk-boundary" and t == start and t > 0:
                        dn_next = zero  # the chunk hands on h's and c's messages, not n's
            return dx, dh_next, dW_ih, dW_hh, db

    SLSTMFunction.__name__ = SLSTMFunction.__qualname__ = "SLSTMFunction" + (f"_{bug}" if bug else "")
    return SLSTMFunction


SLSTMFunction = make()

"""A GRU as a ``torch.autograd.Function`` with PyTorch's equations, gate order ``r, z, n``:
``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``, ``h_t = (1 - z) n + z h_{t-1}``; the backward
in chunks of ``chunk`` steps."""
import torch

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "update-sigmoid-derivative-missing": dict(gradient="dweight_ih", block="z", step=8,
                                              fingerprint="sigmoid-derivative-missing"),
    "reset-missing-in-b_hn": dict(gradient="dbias_hh", block="n"),
    "direct-path-dropped": dict(gradient="dh0", step=8, path="h"),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dweight_ih", step="chunk", path="h"),
    "saved-in-place": dict(hygiene="saved-tensor-modified"),
}


def make(bug=None, chunk=3):
    class GRUFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, hs, gs, nhs = h0, [], [], []
            for t in range(x.shape[0]):
                r_i, z_i, n_i = (x[t] @ weight_ih.T + bias_ih).chunk(3, dim=1)
                r_h, z_h, n_h = (h @ weight_hh.T + bias_hh).chunk(3, dim=1)
                r, z = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
                n = torch.tanh(n_i + r * n_h)
                h = (1 - z) * n + z * h
                hs.append(h), gs.append(torch.cat([r, z, n], dim=1)), nhs.append(n_h)
            hs, gs, nhs = torch.stack(hs), torch.stack(gs), torch.stack(nhs)
            ctx.save_for_backward(x, h0, weight_ih, weight_hh, hs, gs, nhs)
            if bug == "saved-in-place":
                gs.clamp_(0.05, 0.95)  # clamped for a later use, in the saved buffer
            return hs

        @staticmethod
        def backward(ctx, dhs):
            x, h0, weight_ih, weight_hh, hs, gs, nhs = ctx.saved_tensors
            T = x.shape[0]
            dx = torch.zeros_like(x)
            dW_ih, dW_hh = torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
            db_ih = torch.zeros(weight_ih.shape[0], dtype=x.dtype, device=x.device)
            db_hh = torch.zeros_like(db_ih)
            carry = torch.zeros_like(h0)
            for start in reversed(range(0, T, chunk)):
                for t in reversed(range(start, min(start + chunk, T))):
                    r, z, n = gs[t].chunk(3, dim=1)
                    h_prev = hs[t - 1] if t > 0 else h0
                    dh = dhs[t] + carry
                    if bug == "message-1pct" and t == T // 2:
                        dh = dh * 1.01
                    dan = dh * (1 - z) * (1 - n * n)
                    dz = dh * (h_prev - n)
                    daz = dz if bug == "update-sigmoid-derivative-missing" else dz * z * (1 - z)
                    dar = dan * nhs[t] * r * (1 - r)
                    dgi = torch.cat([dar, daz, dan], dim=1)
                    dgh = torch.cat([dar, daz, dan if bug == "reset-missing-in-b_hn" else dan * r], dim=1)
                    dx[t] = dgi @ weight_ih
                    dW_ih += dgi.T @ x[t]
                    db_ih += dgi.sum(0)
                    dW_hh += torch.cat([dar, daz, dan * r], dim=1).T @ h_prev
                    db_hh += dgh.sum(0)
                    direct = torch.zeros_like(dh) if bug == "direct-path-dropped" else dh * z
                    carry = torch.cat([dar, daz, dan * r], dim=1) @ weight_hh + direct
                    if bug == "chunk-boundary" and t == start and t > 0:
                        carry = carry + dh * (1 - z)  # the chunk's first step also sends back its n path
            return dx, carry, dW_ih, dW_hh, db_ih, db_hh

    GRUFunction.__name__ = GRUFunction.__qualname__ = "GRUFunction" + (f"_{bug}" if bug else "")
    return GRUFunction


GRUFunction = make()

"""An LSTM as a ``torch.autograd.Function``, PyTorch's gate order ``i, f, g, o``:
``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``; the backward in chunks of ``chunk`` steps."""
import torch

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "forget-sigmoid-derivative-as-output": dict(gradient="dweight_ih", block="f", step=8,
                                                fingerprint="sigmoid-derivative-as-output"),
    "cell-path-dropped": dict(gradient="dc0", step=8, path="c"),
    "gates-i-f-swapped": dict(gradient="dweight_ih", block="i,f", fingerprint="gate-blocks-i-f-swapped"),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dweight_ih", step="chunk", path="c"),
    "saved-in-place": dict(hygiene="saved-tensor-modified"),
}


def make(bug=None, chunk=3):
    class LSTMFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, c, hs, cs, gs = h0, c0, [], [], []
            for t in range(x.shape[0]):
                a = x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
                i, f, g, o = a.chunk(4, dim=1)
                i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                c = f * c + i * g
                h = o * torch.tanh(c)
                hs.append(h), cs.append(c), gs.append(torch.cat([i, f, g, o], dim=1))
            hs, cs, gs = torch.stack(hs), torch.stack(cs), torch.stack(gs)
            ctx.save_for_backward(x, h0, c0, weight_ih, weight_hh, hs, cs, gs)
            if bug == "saved-in-place":
                cs.tanh_()  # tanh(c) computed in the saved buffer: the backward reads tanh(c) for c
            return hs

        @staticmethod
        def backward(ctx, dhs):
            x, h0, c0, weight_ih, weight_hh, hs, cs, gs = ctx.saved_tensors
            T = x.shape[0]
            dx = torch.zeros_like(x)
            dW_ih, dW_hh = torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
            db = torch.zeros(weight_ih.shape[0], dtype=x.dtype, device=x.device)
            dh_next, dc_next = torch.zeros_like(h0), torch.zeros_like(c0)
            for start in reversed(range(0, T, chunk)):
                for t in reversed(range(start, min(start + chunk, T))):
                    i, f, g, o = gs[t].chunk(4, dim=1)
                    c_prev = cs[t - 1] if t > 0 else c0
                    h_prev = hs[t - 1] if t > 0 else h0
                    dh = dhs[t] + dh_next
                    if bug == "message-1pct" and t == T // 2:
                        dh = dh * 1.01
                    tc = torch.tanh(cs[t])
                    dc = dc_next + dh * o * (1 - tc * tc)
                    di, df, dg, do = dc * g, dc * c_prev, dc * i, dh * tc
                    daf = df * f if bug == "forget-sigmoid-derivative-as-output" else df * f * (1 - f)
                    blocks = [di * i * (1 - i), daf, dg * (1 - g * g), do * o * (1 - o)]
                    if bug == "gates-i-f-swapped":
                        blocks[0], blocks[1] = blocks[1], blocks[0]
                    da = torch.cat(blocks, dim=1)
                    dx[t] = da @ weight_ih
                    dW_ih += da.T @ x[t]
                    dW_hh += da.T @ h_prev
                    db += da.sum(0)
                    dh_next = da @ weight_hh
                    dc_next = torch.zeros_like(dc) if bug == "cell-path-dropped" else dc * f
                    if bug == "chunk-boundary" and t == start and t > 0:
                        dc_next = dc  # the chunk's first step carries dL/dc without the forget gate
            return dx, dh_next, dc_next, dW_ih, dW_hh, db, db.clone()

    LSTMFunction.__name__ = LSTMFunction.__qualname__ = "LSTMFunction" + (f"_{bug}" if bug else "")
    return LSTMFunction


LSTMFunction = make()

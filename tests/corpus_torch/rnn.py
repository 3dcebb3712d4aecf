"""A tanh RNN as a ``torch.autograd.Function``: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

The backward runs in chunks of ``chunk`` steps (as a fused kernel would), carrying dL/dh across
chunk boundaries."""
import torch

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "tanh-derivative-missing": dict(gradient="dweight_ih", step=8, fingerprint="tanh-derivative-missing"),
    "recurrent-term-dropped": dict(gradient="dh0", step=8, path="h"),
    "h-for-h-prev": dict(gradient="dweight_hh", fingerprint="h-t-for-h-prev"),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dweight_ih", step="chunk", path="h"),
    "saved-in-place": dict(hygiene="saved-tensor-modified"),
}


def make(bug=None, chunk=3):
    class RNNFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, hs = h0, []
            for t in range(x.shape[0]):
                h = torch.tanh(x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
                hs.append(h)
            hs = torch.stack(hs)
            ctx.save_for_backward(x, h0, weight_ih, weight_hh, hs)
            if bug == "saved-in-place":
                hs.mul_(1.5)  # scaled for a caller after saving: the backward reads the scaled states
                return hs / 1.5
            return hs

        @staticmethod
        def backward(ctx, dhs):
            x, h0, weight_ih, weight_hh, hs = ctx.saved_tensors
            T = x.shape[0]
            dx = torch.zeros_like(x)
            dW_ih, dW_hh = torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
            db = torch.zeros(weight_ih.shape[0], dtype=x.dtype, device=x.device)
            carry = torch.zeros_like(h0)
            for start in reversed(range(0, T, chunk)):
                for t in reversed(range(start, min(start + chunk, T))):
                    h = hs[t]
                    h_prev = hs[t - 1] if t > 0 else h0
                    dh = dhs[t] + carry
                    if bug == "message-1pct" and t == T // 2:
                        dh = dh * 1.01
                    da = dh if bug == "tanh-derivative-missing" else dh * (1 - h * h)
                    dx[t] = da @ weight_ih
                    dW_ih += da.T @ x[t]
                    dW_hh += da.T @ (h if bug == "h-for-h-prev" else h_prev)
                    db += da.sum(0)
                    carry = torch.zeros_like(h0) if bug == "recurrent-term-dropped" else da @ weight_hh
                    if bug == "chunk-boundary" and t == start and t > 0:
                        carry = dh @ weight_hh  # the chunk's first step sends back dL/dh, not dL/da
            return dx, carry, dW_ih, dW_hh, db, db.clone()

    RNNFunction.__name__ = RNNFunction.__qualname__ = "RNNFunction" + (f"_{bug}" if bug else "")
    return RNNFunction


RNNFunction = make()

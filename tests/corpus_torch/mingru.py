"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?") as a ``torch.autograd.Function``, written
from the paper's sequential equations: ``z_t = sigmoid(Linear_z(x_t))``, ``htilde_t = Linear_h(x_t)``,
``h_t = (1 - z_t) h_{t-1} + z_t htilde_t``; ``weight_ih`` stacks ``z`` then ``htilde`` (``(2H, D)``),
``bias`` likewise.  The backward is the reverse scan of the linear recurrence
``g_t = dh_t + (1 - z_{t+1}) g_{t+1}``, run in chunks of ``chunk`` steps as a parallel scan is: each
chunk scans its own steps and takes the message of the chunk after it as its carry."""
import torch

#: bug -> what the report must say (step "mid": the message the 1% reaches; "chunk": a chunk's first step)
BUGS = {
    "gate-sigmoid-derivative-as-output": dict(gradient="dweight_ih", block="z",
                                              fingerprint="sigmoid-derivative-as-output"),
    "candidate-gradient-not-gated": dict(gradient="dweight_ih", block="htilde"),
    "decay-path-dropped": dict(gradient="dh0", path="h", step=8),
    "message-1pct": dict(gradient="dweight_ih", step="mid", path="h"),
    "chunk-boundary": dict(gradient="dh0", step="chunk", path="h"),
    "saved-in-place": dict(hygiene="saved-tensor-modified"),
}


def make(bug=None, chunk=3):
    class MinGRUFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, bias):
            zbar, htilde = (x @ weight_ih.T + bias).chunk(2, dim=-1)  # every step at once: no recurrence
            z = torch.sigmoid(zbar)
            h, hs = h0, []
            for t in range(x.shape[0]):
                h = (1 - z[t]) * h + z[t] * htilde[t]
                hs.append(h)
            hs = torch.stack(hs)
            ctx.save_for_backward(x, h0, weight_ih, z, htilde, hs)
            if bug == "saved-in-place":
                z.clamp_(1e-3, 1 - 1e-3)  # clamped for a later use, in the saved buffer
            return hs

        @staticmethod
        def backward(ctx, dhs):
            x, h0, weight_ih, z, htilde, hs = ctx.saved_tensors
            T = x.shape[0]
            g = torch.zeros_like(hs)  # dL/dh_t, all sources
            carry = torch.zeros_like(h0)  # the message from the chunk after this one: (1 - z_e) g_e
            for start in reversed(range(0, T, chunk)):
                end = min(start + chunk, T)
                for t in reversed(range(start, end)):
                    inner = (1 - z[t + 1]) * g[t + 1] if t + 1 < end else carry
                    g[t] = dhs[t] + inner
                    if bug == "message-1pct" and t == T // 2:
                        g[t] = g[t] * 1.01
                if bug == "chunk-boundary":
                    carry = g[start]  # the chunk's first step forgets its decay (1 - z)
                else:
                    carry = g[start] if bug == "decay-path-dropped" else (1 - z[start]) * g[start]
            if bug == "decay-path-dropped":  # the scan without its decay
                g = torch.flip(torch.cumsum(torch.flip(dhs, [0]), 0), [0])
                carry = g[0]
            h_prev = torch.cat([h0[None], hs[:-1]])
            dz = g * (htilde - h_prev)
            dzbar = dz * z if bug == "gate-sigmoid-derivative-as-output" else dz * z * (1 - z)
            dhtilde = g if bug == "candidate-gradient-not-gated" else g * z
            da = torch.cat([dzbar, dhtilde], dim=-1)
            dx = da @ weight_ih
            dW = torch.einsum("tng,tnd->gd", da, x)
            return dx, carry, dW, da.sum((0, 1))

    MinGRUFunction.__name__ = MinGRUFunction.__qualname__ = "MinGRUFunction" + (f"_{bug}" if bug else "")
    return MinGRUFunction


MinGRUFunction = make()

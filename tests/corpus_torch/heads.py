"""A multi-head minGRU (Feng et al. 2024) as a ``torch.autograd.Function``: the state split into
heads, ``h`` of shape ``(N, heads, H/heads)``, as multi-head recurrent layers are written, and
``weight_ih`` ``(2H, D)`` read head by head (``.view(T, N, heads, 2*H/heads).chunk(2, -1)``: each
head's ``z`` rows, then its ``htilde`` rows).  Equations as ``mingru.py``, per head; the backward
with ``einsum`` over the head layout.  Bugs include the reductions over a wrong axis of the heads."""
import torch

HEADS = 2

#: bug -> what the report must say
BUGS = {
    "weight-summed-over-heads": dict(gradient="dweight_ih", fingerprint="heads-reduced"),
    "bias-summed-over-head-units": dict(gradient="dbias", fingerprint="head-units-reduced"),
    "gate-sigmoid-derivative-as-output": dict(gradient="dweight_ih", fingerprint="sigmoid-derivative-as-output"),
    "decay-path-dropped": dict(gradient="dh0", path="h", step=8),
}


def make(bug=None, heads=HEADS):
    class MultiHeadMinGRU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, bias):
            T, N, _ = x.shape
            zbar, htilde = (x @ weight_ih.T + bias).view(T, N, heads, -1).chunk(2, dim=-1)
            z = torch.sigmoid(zbar)
            h, hs = h0, []
            for t in range(T):
                h = (1 - z[t]) * h + z[t] * htilde[t]
                hs.append(h)
            hs = torch.stack(hs)
            ctx.save_for_backward(x, h0, weight_ih, z, htilde, hs)
            return hs

        @staticmethod
        def backward(ctx, dhs):
            x, h0, weight_ih, z, htilde, hs = ctx.saved_tensors
            T = x.shape[0]
            g = torch.zeros_like(hs)
            for t in reversed(range(T)):
                inner = 0 if t == T - 1 else g[t + 1] if bug == "decay-path-dropped" else (1 - z[t + 1]) * g[t + 1]
                g[t] = dhs[t] + inner
            carry = g[0] if bug == "decay-path-dropped" else (1 - z[0]) * g[0]
            h_prev = torch.cat([h0[None], hs[:-1]])
            dz = g * (htilde - h_prev)
            dzbar = dz * z if bug == "gate-sigmoid-derivative-as-output" else dz * z * (1 - z)
            da = torch.cat([dzbar, g * z], dim=-1)  # (T, N, heads, 2 H/heads): the rows of weight_ih
            dx = torch.einsum("tnkr,krd->tnd", da, weight_ih.view(heads, -1, x.shape[-1]))
            if bug == "weight-summed-over-heads":  # the heads merged into the batch: one block for all heads
                dW = torch.einsum("tnkr,tnd->rd", da, x).repeat(heads, 1)
            else:
                dW = torch.einsum("tnkr,tnd->krd", da, x).reshape(weight_ih.shape)
            if bug == "bias-summed-over-head-units":
                db = da.sum((0, 1, 3))[:, None].expand_as(da[0, 0]).reshape(-1)
            else:
                db = da.sum((0, 1)).reshape(-1)
            return dx, carry, dW, db

    MultiHeadMinGRU.__name__ = MultiHeadMinGRU.__qualname__ = "MultiHeadMinGRU" + (f"_{bug}" if bug else "")
    return MultiHeadMinGRU


#: a multi-head gated RNN that is no built-in cell (traced from torch.export's graph): bug -> what the report says
GATED_BUGS = {
    "weight-summed-over-heads": dict(gradient="dweight_ih", fingerprint="heads-reduced"),
    "gate-sigmoid-derivative-as-output": dict(gradient="dweight_ih", block="g0", step=8,
                                              fingerprint="sigmoid-derivative-as-output"),
}


def gated(bug=None, heads=HEADS):
    """A gated RNN without a reset gate, its state in heads: ``zbar, nbar = W_ih x_t + b_ih + W_hh h_{t-1}
    + b_hh`` (rows head by head: each head's ``z`` rows, then its ``n`` rows), ``z = sigmoid(zbar)``,
    ``n = tanh(nbar)``, ``h_t = (1 - z) h_{t-1} + z n``; ``h`` of shape ``(N, heads, H/heads)``, the
    recurrent weight full (every unit reads the whole previous state)."""
    class MultiHeadGatedRNN(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            T, N, _ = x.shape
            h, hs, zs, ns = h0, [], [], []
            for t in range(T):
                a = x[t] @ weight_ih.T + bias_ih + h.reshape(N, -1) @ weight_hh.T + bias_hh
                zbar, nbar = a.view(N, heads, -1).chunk(2, dim=-1)
                z, n = torch.sigmoid(zbar), torch.tanh(nbar)
                h = (1 - z) * h + z * n
                hs.append(h), zs.append(z), ns.append(n)
            hs, zs, ns = torch.stack(hs), torch.stack(zs), torch.stack(ns)
            ctx.save_for_backward(x, h0, weight_ih, weight_hh, hs, zs, ns)
            return hs

        @staticmethod
        def backward(ctx, dhs):
            x, h0, weight_ih, weight_hh, hs, zs, ns = ctx.saved_tensors
            T, N, _ = x.shape
            h_prev = torch.cat([h0[None], hs[:-1]])  # (T, N, heads, H/heads)
            carry, das = torch.zeros_like(h0), [None] * T
            for t in reversed(range(T)):
                g = dhs[t] + carry
                z, n = zs[t], ns[t]
                dz = g * (n - h_prev[t])
                dzbar = dz * z if bug == "gate-sigmoid-derivative-as-output" else dz * z * (1 - z)
                das[t] = torch.cat([dzbar, g * z * (1 - n * n)], dim=-1)  # (N, heads, 2 H/heads): weight_ih's rows
                carry = g * (1 - z) + (das[t].reshape(N, -1) @ weight_hh).view_as(g)
            da = torch.stack(das)
            dx = da.reshape(T, N, -1) @ weight_ih
            if bug == "weight-summed-over-heads":
                dW_ih = torch.einsum("tnkr,tnd->rd", da, x).repeat(heads, 1)
            else:
                dW_ih = torch.einsum("tnkr,tnd->krd", da, x).reshape(weight_ih.shape)
            dW_hh = torch.einsum("tnr,tnj->rj", da.reshape(T, N, -1), h_prev.reshape(T, N, -1))
            db = da.sum((0, 1)).reshape(-1)
            return dx, carry, dW_ih, dW_hh, db, db.clone()

    MultiHeadGatedRNN.__name__ = MultiHeadGatedRNN.__qualname__ = "MultiHeadGatedRNN" + (f"_{bug}" if bug else "")
    return MultiHeadGatedRNN

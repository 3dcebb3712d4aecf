"""Cells that are no built-in one, as ``torch.autograd.Function``s, for the tracing of
:mod:`symrnn.verify.frameworks` (``torch.export``'s graph of one step): an LSTM without the output
tanh (``h_t = o_t c_t``; it returns ``hs`` and the last ``c`` as nn.LSTM does) and a leaky RNN
(``h_t = (1 - alpha) h_{t-1} + alpha tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, alpha = 0.3).
Each correct and with planted bugs (``BUGS``: what the report must say)."""
import torch

ALPHA = 0.3

BUGS = {
    "lstm-no-tanh": {
        "output-tanh-derivative-kept": dict(gradient="dweight_ih", step=8),  # the standard LSTM's backward, copied
        "cell-path-dropped": dict(gradient="dc0", path="c", step=8),
    },
    "leaky": {
        "leak-dropped": dict(gradient="dh0", path="h", step=8),
        "alpha-missing-in-gate": dict(gradient="dweight_ih"),
    },
}


def lstm_no_tanh(bug=None):
    class LSTMNoTanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, c, hs, cs, gates = h0, c0, [], [], []
            for t in range(x.shape[0]):
                i, f, g, o = (x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).chunk(4, dim=1)
                i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                c = f * c + i * g
                h = o * c
                hs.append(h), cs.append(c), gates.append(torch.cat([i, f, g, o], dim=1))
            hs, cs, gates = torch.stack(hs), torch.stack(cs), torch.stack(gates)
            ctx.save_for_backward(x, h0, c0, weight_ih, weight_hh, hs, cs, gates)
            return hs, c

        @staticmethod
        def backward(ctx, dhs, dc_last):
            x, h0, c0, weight_ih, weight_hh, hs, cs, gates = ctx.saved_tensors
            dx, dW_ih, dW_hh = torch.zeros_like(x), torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
            db = torch.zeros(weight_ih.shape[0], dtype=x.dtype)
            dh_next, dc_next = torch.zeros_like(h0), dc_last.clone()
            for t in reversed(range(x.shape[0])):
                i, f, g, o = gates[t].chunk(4, dim=1)
                h_prev, c_prev = (hs[t - 1], cs[t - 1]) if t > 0 else (h0, c0)
                dh = dhs[t] + dh_next
                if bug == "output-tanh-derivative-kept":
                    tc = torch.tanh(cs[t])
                    do, dc = dh * tc, dh * o * (1 - tc * tc) + dc_next
                else:
                    do, dc = dh * cs[t], dh * o + dc_next
                da = torch.cat([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                                do * o * (1 - o)], dim=1)
                dx[t] = da @ weight_ih
                dW_ih += da.T @ x[t]
                dW_hh += da.T @ h_prev
                db += da.sum(0)
                dh_next = da @ weight_hh
                dc_next = torch.zeros_like(dc) if bug == "cell-path-dropped" else dc * f
            return dx, dh_next, dc_next, dW_ih, dW_hh, db, db

    LSTMNoTanh.__name__ = LSTMNoTanh.__qualname__ = "LSTMNoTanh" + (f"_{bug}" if bug else "")
    return LSTMNoTanh


def leaky(bug=None):
    class LeakyRNN(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, hs, us = h0, [], []
            for t in range(x.shape[0]):
                u = torch.tanh(x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
                h = (1 - ALPHA) * h + ALPHA * u
                hs.append(h), us.append(u)
            hs = torch.stack(hs)
            ctx.save_for_backward(x, h0, weight_ih, weight_hh, hs, torch.stack(us))
            return hs

        @staticmethod
        def backward(ctx, dhs):
            x, h0, weight_ih, weight_hh, hs, us = ctx.saved_tensors
            dx, dW_ih, dW_hh = torch.zeros_like(x), torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
            db = torch.zeros(weight_ih.shape[0], dtype=x.dtype)
            carry = torch.zeros_like(h0)
            for t in reversed(range(x.shape[0])):
                h_prev = hs[t - 1] if t > 0 else h0
                dh = dhs[t] + carry
                da = dh * (1 if bug == "alpha-missing-in-gate" else ALPHA) * (1 - us[t] * us[t])
                dx[t] = da @ weight_ih
                dW_ih += da.T @ x[t]
                dW_hh += da.T @ h_prev
                db += da.sum(0)
                carry = da @ weight_hh + (0 if bug == "leak-dropped" else (1 - ALPHA) * dh)
            return dx, carry, dW_ih, dW_hh, db, db

    LeakyRNN.__name__ = LeakyRNN.__qualname__ = "LeakyRNN" + (f"_{bug}" if bug else "")
    return LeakyRNN


MAKE = {"lstm-no-tanh": lstm_no_tanh, "leaky": leaky}

"""The corpus's cells behind the other doors: an ``nn.Module`` whose forward calls the LSTM Function
(batch-first, PyTorch's parameter names), and a ``torch.library`` custom operator for the RNN with a
registered autograd formula."""
import math

import torch

from . import lstm, rnn


class LSTMModule(torch.nn.Module):
    """``nn.LSTM``-like: ``weight_ih_l0`` ... parameters, ``batch_first``; forward(x, h0, c0) -> output."""

    def __init__(self, input_size, hidden_size, batch_first=True, bug=None):
        super().__init__()
        self.batch_first = batch_first
        k = 1 / math.sqrt(hidden_size)
        shapes = {"weight_ih_l0": (4 * hidden_size, input_size), "weight_hh_l0": (4 * hidden_size, hidden_size),
                  "bias_ih_l0": (4 * hidden_size,), "bias_hh_l0": (4 * hidden_size,)}
        for name, shape in shapes.items():
            setattr(self, name, torch.nn.Parameter(torch.empty(shape, dtype=torch.float64).uniform_(-k, k)))
        self.function = lstm.make(bug)

    def forward(self, x, h0, c0):
        if self.batch_first:
            x = x.transpose(0, 1)
        out = self.function.apply(x, h0, c0, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        return out.transpose(0, 1) if self.batch_first else out


class ScaledAfterForward(LSTMModule):
    """A module that scales the Function's output in place after the forward: the saved states change."""

    def forward(self, x, h0, c0):
        out = super().forward(x, h0, c0)
        out.mul_(1.0)  # a no-op in value, but the saved output's version counter moves
        return out


class LSTMStateModule(LSTMModule):
    """``nn.LSTM``'s own signature: ``forward(input, hx=None)`` with ``hx = (h_0, c_0)``, each
    ``(1, N, H)`` (``layer_axis``) or ``(N, H)``, zeros when None; returns ``output, (h_n, c_n)``."""

    def __init__(self, input_size, hidden_size, batch_first=False, bug=None, layer_axis=True):
        super().__init__(input_size, hidden_size, batch_first=batch_first, bug=bug)
        self.hidden_size, self.layer_axis = hidden_size, layer_axis

    def forward(self, input, hx=None):
        N = input.shape[0 if self.batch_first else 1]
        if hx is None:
            zeros = input.new_zeros((1, N, self.hidden_size) if self.layer_axis else (N, self.hidden_size))
            hx = (zeros, zeros)
        h0, c0 = (s[0] for s in hx) if self.layer_axis else hx
        output = super().forward(input, h0, c0)
        h_n = output[:, -1] if self.batch_first else output[-1]
        return output, (h_n.unsqueeze(0), h_n.new_zeros(h_n.shape).unsqueeze(0))  # c_n is not the states'


def _register(name, bug):
    @torch.library.custom_op(f"symrnn_corpus::{name}", mutates_args=())
    def rnn_op(x: torch.Tensor, h0: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
               bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
        h, hs = h0, []
        for t in range(x.shape[0]):
            h = torch.tanh(x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
            hs.append(h)
        return torch.stack(hs)

    def setup_context(ctx, inputs, output):
        x, h0, weight_ih, weight_hh, _, _ = inputs
        ctx.save_for_backward(x, h0, weight_ih, weight_hh, output)

    def backward(ctx, dhs):
        x, h0, weight_ih, weight_hh, hs = ctx.saved_tensors
        dx, dW_ih, dW_hh = torch.zeros_like(x), torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
        db = torch.zeros(weight_ih.shape[0], dtype=x.dtype)
        carry = torch.zeros_like(h0)
        for t in reversed(range(x.shape[0])):
            h_prev = hs[t - 1] if t > 0 else h0
            da = (dhs[t] + carry) * (1 - hs[t] * hs[t])
            dx[t] = da @ weight_ih
            dW_ih += da.T @ x[t]
            dW_hh += da.T @ (hs[t] if bug == "h-for-h-prev" else h_prev)
            db += da.sum(0)
            carry = da @ weight_hh
        return dx, carry, dW_ih, dW_hh, db, db.clone()

    rnn_op.register_autograd(backward, setup_context=setup_context)
    return rnn_op


rnn_op = _register("rnn", None)
rnn_op_buggy = _register("rnn_h_for_h_prev", "h-for-h-prev")
RNNFunction = rnn.RNNFunction

"""tryout6's findings (notes/tryout6.md): the gradient arriving at a framework's final states is
judged, PyTorch's clip_grad_norm_ is the declared global-norm clipping, a GRU module reading hx[0]
is verified, and an internal error has its own exit status."""
import numpy as np
import pytest
import torch

import symrnn.verify as V
from corpus import cs231n_rnn


def rnn_function(ignore_h_n=False):
    """A tanh RNN Function returning (hs, h_n), as nn.RNN; its backward adds dL/dh_n to the last
    step's message unless ``ignore_h_n``."""
    class RNNFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            h, hs = h0, []
            for t in range(x.shape[0]):
                h = torch.tanh(x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
                hs.append(h)
            hs = torch.stack(hs)
            ctx.save_for_backward(x, h0, weight_ih, weight_hh, hs)
            return hs, hs[-1].clone()

        @staticmethod
        def backward(ctx, dhs, dh_n):
            x, h0, weight_ih, weight_hh, hs = ctx.saved_tensors
            dx, dW_ih, dW_hh = torch.zeros_like(x), torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
            db = torch.zeros(weight_ih.shape[0], dtype=x.dtype)
            carry = torch.zeros_like(h0) if ignore_h_n else dh_n.clone()
            for t in reversed(range(x.shape[0])):
                da = (dhs[t] + carry) * (1 - hs[t] ** 2)
                prev = hs[t - 1] if t > 0 else h0
                dx[t], dW_ih, dW_hh, db = da @ weight_ih, dW_ih + da.T @ x[t], dW_hh + da.T @ prev, db + da.sum(0)
                carry = da @ weight_hh
            return dx, carry, dW_ih, dW_hh, db, db.clone()
    return RNNFunction


def test_final_state_gradient_is_judged():
    assert V.verify_framework(rnn_function()).ok
    wrong = V.verify_framework(rnn_function(ignore_h_n=True))
    assert not wrong.ok
    assert wrong.fingerprint is not None and wrong.fingerprint.name == "final-state-gradient-ignored", str(wrong)
    assert "h_n is ignored" in str(wrong)
    assert "final state h_n" in wrong.cases[0].label


def torch_clipped_loss(max_norm, exact_formula=False):
    def loss(params, x, h0, y, mask):
        value, grads = cs231n_rnn.temporal_affine_softmax_loss(params, x, h0, y, mask)
        names = list(grads)
        if exact_formula:  # c / ||g||, as Keras's global_clipnorm
            norm = np.sqrt(sum(np.sum(grads[k] ** 2) for k in names))
            return value, {k: grads[k] * min(1.0, max_norm / norm) for k in names}
        ps = [torch.nn.Parameter(torch.tensor(grads[k])) for k in names]
        for p in ps:
            p.grad = p.detach().clone()
        torch.nn.utils.clip_grad_norm_(ps, max_norm)
        return value, {k: p.grad.numpy() for k, p in zip(names, ps)}
    return loss


@pytest.mark.parametrize("exact_formula", [False, True])
def test_global_norm_clipping_takes_pytorchs_epsilon(exact_formula):
    loss = torch_clipped_loss(0.5, exact_formula)
    declared = V.verify_loss(loss, "rnn-tanh", "cs231n", reduction="batch-mean", mask=True, scale=1.0,
                             clip=("global-norm", 0.5))
    assert declared.ok, str(declared)
    undeclared = V.verify_loss(loss, "rnn-tanh", "cs231n", reduction="batch-mean", mask=True, scale=1.0)
    assert undeclared.explanation is not None and undeclared.explanation.kind == "global-norm", str(undeclared)
    assert undeclared.explanation.threshold == pytest.approx(0.5)
    assert ("clip_grad_norm_" in undeclared.verdict()) != exact_formula
    assert "clip=('global-norm', 0.5)" in undeclared.verdict()


def test_declared_epsilon_is_the_one_judged():
    wrong_eps = V.verify_loss(torch_clipped_loss(0.5), "rnn-tanh", "cs231n", reduction="batch-mean", mask=True,
                              scale=1.0, clip=("global-norm", 0.5, 0.0))
    assert not wrong_eps.ok
    assert V.verify_loss(torch_clipped_loss(0.5), "rnn-tanh", "cs231n", reduction="batch-mean", mask=True,
                         scale=1.0, clip=("global-norm", 0.5, 1e-6)).ok


class RNNModule(torch.nn.Module):
    """nn.RNN's signature, ``forward(input, hx=None)`` with ``hx`` of ``(1, N, H)``, read as ``hx[0]``."""

    def __init__(self, D=3, H=4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        for name, shape in (("weight_ih_l0", (H, D)), ("weight_hh_l0", (H, H)), ("bias_ih_l0", (H,)),
                            ("bias_hh_l0", (H,))):
            setattr(self, name, torch.nn.Parameter(torch.rand(shape, generator=g, dtype=torch.float64) - 0.5))
        self.function = rnn_function()

    def forward(self, input, hx=None):
        h0 = torch.zeros(input.shape[1], self.weight_hh_l0.shape[0], dtype=input.dtype) if hx is None else hx[0]
        hs, h_n = self.function.apply(input, h0, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0,
                                      self.bias_hh_l0)
        return hs, h_n.unsqueeze(0)


@pytest.mark.parametrize("cell", [None, "rnn-tanh"])
def test_module_reading_hx_index_is_no_lstm(cell):
    result = V.verify_framework(RNNModule(), cell=cell)
    assert result.ok, str(result)
    assert "hx (1, N, H)" in result.found


def test_cell_state_of_a_cell_without_one_is_refused():
    from symrnn.errors import UnknownNameError

    class LSTMShaped(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
            return torch.tanh(x @ weight_ih.T + bias_ih + h0 @ weight_hh.T + bias_hh + c0)

    with pytest.raises(UnknownNameError, match="has no state c"):
        V.verify_framework(LSTMShaped, cell="rnn-tanh")


def test_internal_error_has_its_own_exit_status(monkeypatch, capsys):
    from symrnn import cli

    def crash(args, parser):
        raise KeyError("c0")
    monkeypatch.setattr(cli, "_run", crash)
    assert cli.main(["verify", "x.py:f"]) == cli.EXIT_INTERNAL == 5
    assert cli.EXIT_INTERNAL not in (cli.EXIT_RIGHT, cli.EXIT_WRONG)
    err = capsys.readouterr().err
    assert "internal error" in err and "KeyError" in err

"""tryout6's findings (notes/tryout6.md): the gradient arriving at a framework's final states is
judged, PyTorch's clip_grad_norm_ is the declared global-norm clipping, a GRU module reading hx[0]
is verified, and an internal error has its own exit status."""
import numpy as np
import pytest
import torch

import symrnn.verify as V
from corpus import cs231n_rnn


def rnn_function(ignore_h_n=False, modify_x=False):
    """The corpus's tanh RNN Function returning ``(hs, h_n)``, as nn.RNN; its backward adds dL/dh_n to
    the last step's upstream gradient unless ``ignore_h_n``; ``modify_x``: x modified in place after
    it was saved."""
    from corpus_torch import rnn

    inner = rnn.make()

    class RNNFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
            hs = inner.forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
            if modify_x:  # after the save: the backward reads the modified x
                x.mul_(1.0)
            return hs, hs[-1].clone()

        @staticmethod
        def backward(ctx, dhs, dh_n):
            dhs = dhs.clone()
            if not ignore_h_n:
                dhs[-1] += dh_n
            return inner.backward(ctx, dhs)
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


def stacked_loss(bug=None, layers=2):
    """``loss(params, x, h0, c0, y, mask)`` of a 2-layer nn.LSTM + nn.Linear, cross-entropy summed over
    the unpadded steps; ``bug``: "one-example" (the bias gradient 1% off for a batch of one),
    "mask-ignored" (every step scored)."""
    def loss(params, x, h0, c0, y, mask):
        module = torch.nn.LSTM(x.shape[2], h0.shape[2], num_layers=layers).double()
        leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
        recurrent = {k: v for k, v in leaves.items() if k not in ("weight", "bias")}
        out, _ = torch.func.functional_call(module, recurrent, (torch.tensor(x), (torch.tensor(h0),
                                                                                 torch.tensor(c0))))
        logits = out @ leaves["weight"].T + leaves["bias"]
        each = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.tensor(y).reshape(-1).clamp(min=0), reduction="none")
        keep = torch.ones_like(each) if bug == "mask-ignored" else torch.tensor(mask, dtype=torch.float64).reshape(-1)
        value = (each * keep).sum()
        value.backward()
        grads = {k: v.grad.numpy().copy() for k, v in leaves.items()}
        if bug == "one-example" and x.shape[1] == 1:
            grads["bias"] *= 1.01
        return float(value.detach()), grads
    return loss


def test_stacked_loss_mode_runs_search_and_masks():
    options = dict(num_layers=2, D=3, H=4, K=3, T=6, mask=True)
    assert V.verify_loss(stacked_loss(), "lstm", "pytorch", **options, search=10).ok
    masked = V.verify_loss(stacked_loss("mask-ignored"), "lstm", "pytorch", **options)
    assert not masked.ok, str(masked)
    assert V.verify_loss(stacked_loss("one-example"), "lstm", "pytorch", **options, lengths=()).ok
    searched = V.verify_loss(stacked_loss("one-example"), "lstm", "pytorch", **options, lengths=(), search=20)
    assert not searched.ok and [g.name for g in searched.wrong] == ["dbias"], str(searched)


def test_stacked_loss_mode_refuses_what_it_cannot_run():
    from symrnn.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="truncation="):
        V.verify_loss(stacked_loss(), "lstm", "pytorch", num_layers=2, mask=True, truncation=3)


def rnn_layer(last_k=None):
    """CS231n's tanh RNN layer; ``last_k``: the backward loop stops after the last k steps."""
    def rnn_forward(x, h0, Wx, Wh, b):
        hs, h = [], h0
        for t in range(x.shape[1]):
            h = np.tanh(x[:, t] @ Wx + h @ Wh + b)
            hs.append(h)
        return np.stack(hs, 1), (x, h0, Wx, Wh, np.stack(hs, 1))

    def rnn_backward(dh, cache):
        x, h0, Wx, Wh, hs = cache
        T = x.shape[1]
        dx, dWx, dWh, db, carry = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0]), 0
        for t in reversed(range(T)):
            if last_k is not None and t < T - last_k:
                break
            da = (dh[:, t] + carry) * (1 - hs[:, t] ** 2)
            prev = hs[:, t - 1] if t > 0 else h0
            dx[:, t], dWx, dWh, db = da @ Wx.T, dWx + x[:, t].T @ da, dWh + prev.T @ da, db + da.sum(0)
            carry = da @ Wh.T
        return dx, carry, dWx, dWh, db
    return rnn_forward, rnn_backward


def test_a_backward_over_the_last_ten_steps_is_caught_at_the_defaults():
    assert V.verify_layer(*rnn_layer(), "rnn-tanh", "cs231n").ok
    wrong = V.verify_layer(*rnn_layer(last_k=10), "rnn-tanh", "cs231n")
    assert not wrong.ok, str(wrong)
    assert wrong.fingerprint is not None and wrong.fingerprint.name == "backward-over-last-10-steps"


def test_value_clipping_of_dh0_is_advised_as_it_is_declared():
    R = cs231n_rnn

    def clip_all(params, x, h0, y, mask):  # every gradient it returns clipped, dh0 included
        h, rnn_cache = R.rnn_forward(x, h0, params["Wx"], params["Wh"], params["b"])
        scores, affine_cache = R.temporal_affine_forward(h, params["W_vocab"], params["b_vocab"])
        value, dscores = R.temporal_softmax_loss(scores, y, mask)
        dh, dW_vocab, db_vocab = R.temporal_affine_backward(dscores, affine_cache)
        _, dh0, dWx, dWh, db = R.rnn_backward(dh, rnn_cache)
        grads = {"Wx": dWx, "Wh": dWh, "b": db, "W_vocab": dW_vocab, "b_vocab": db_vocab, "h0": dh0}
        return value, {k: np.clip(v, -0.05, 0.05) for k, v in grads.items()}

    options = dict(reduction="batch-mean", mask=True, scale=1.0)
    undeclared = V.verify_loss(clip_all, "rnn-tanh", "cs231n", **options)
    explanation = undeclared.explanation
    assert explanation is not None and explanation.kind == "value", str(undeclared)
    assert explanation.declaration() == "clip=('value', 0.05, 'states')", str(undeclared)
    assert V.verify_loss(clip_all, "rnn-tanh", "cs231n", **options, clip=("value", 0.05, "states")).ok
    assert not V.verify_loss(clip_all, "rnn-tanh", "cs231n", **options, clip=("value", 0.05)).ok


def lstm_backward_scaling(states, step=20, factor=1.05):
    """CS231n's LSTM layer backward with the messages of ``states`` ("h", "c") from ``step`` to the
    step before scaled by ``factor``."""
    from corpus import cs231n_lstm as L

    def lstm_backward(dh, cache):
        N, T, H = dh.shape
        dx, dWx, dWh, db = np.zeros((N, T, cache[0][0].shape[1])), 0, 0, 0
        dprev_h, dprev_c = np.zeros((N, H)), np.zeros((N, H))
        for t in reversed(range(T)):
            dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = L.lstm_step_backward(dh[:, t] + dprev_h, dprev_c,
                                                                                   cache[t])
            dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
            if t == step:
                dprev_h = dprev_h * (factor if "h" in states else 1.0)
                dprev_c = dprev_c * (factor if "c" in states else 1.0)
        return dx, dprev_h, dWx, dWh, db
    return L.lstm_forward, lstm_backward


@pytest.mark.parametrize("states", ["h", "c", "hc"])
def test_the_probe_claims_no_right_message_that_is_wrong(states):
    result = V.verify_layer(*lstm_backward_scaling(states), "lstm", "cs231n", T=40)
    assert not result.ok
    message = result.localisation["message"]
    assert "t=21 to t=20" in message, message
    if states == "hc":
        assert "is right" not in message and "dL/dh and dL/dc" in message, message
    else:
        other = "c" if states == "h" else "h"
        assert f"dL/d{states} from" in message and f"dL/d{other} is right" in message, message


def test_a_one_layer_pytorch_loss_needs_no_num_layers():
    result = V.verify_loss(stacked_loss(layers=1), "lstm", "pytorch", D=3, H=4, K=3, T=6, mask=True)
    assert result.ok, str(result)
    wrong = V.verify_loss(stacked_loss("mask-ignored", layers=1), "lstm", "pytorch", D=3, H=4, K=3, T=6, mask=True)
    assert not wrong.ok


def test_a_saved_tensor_modified_in_place_is_named():
    result = V.verify_framework(rnn_function(modify_x=True))
    assert not result.ok
    assert any("argument 1 of ctx.save_for_backward (the forward's input x)" in f.message for f in result.hygiene)


STACKED_FILE = """
import torch


def loss(params, x, h0, c0, y):
    module = torch.nn.LSTM(x.shape[2], h0.shape[2], num_layers=2).double()
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    recurrent = {k: v for k, v in leaves.items() if k not in ("weight", "bias")}
    out, _ = torch.func.functional_call(module, recurrent, (torch.tensor(x), (torch.tensor(h0), torch.tensor(c0))))
    logits = out @ leaves["weight"].T + leaves["bias"]
    value = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.tensor(y).reshape(-1),
                                              reduction="sum")
    value.backward()
    return float(value.detach()), {k: v.grad.numpy().copy() for k, v in leaves.items()}
"""


def test_the_command_line_verifies_a_stacked_loss(tmp_path, monkeypatch, capsys):
    from symrnn import cli

    (tmp_path / "stacked.py").write_text(STACKED_FILE)
    monkeypatch.chdir(tmp_path)
    command = ["verify", "stacked.py:loss", "--mode", "loss", "--cell", "lstm", "--layout", "pytorch",
               "--sizes", "D=3,H=4,K=3", "--T", "5"]
    assert cli.main(command + ["--num-layers", "2"]) == cli.EXIT_RIGHT, capsys.readouterr()
    assert cli.main(command + ["--mode", "layer", "--num-layers", "2"]) == cli.EXIT_USAGE


def test_a_declared_cell_in_the_keras_layout_is_verified_in_layer_mode():
    # Keras's SimpleRNN arrays (kernel (D, H), recurrent_kernel, bias; batch-major) are CS231n's
    assert V.verify_layer(*rnn_layer(), cell="rnn-tanh", layout="keras").ok
    assert not V.verify_layer(*rnn_layer(last_k=10), cell="rnn-tanh", layout="keras").ok


NATIVE_FILE = """
import numpy as np


def cell():
    from symrnn.engine.cells import builtin_cell

    return builtin_cell("rnn-tanh")  # a Cell object, as a user's own cell is given


def rnn_forward(x, h0, params):
    hs, h = [], h0
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ params["U"].T + h @ params["W"].T + params["b"])
        hs.append(h)
    return np.stack(hs), (x, h0, params, np.stack(hs))


def rnn_backward(dh, cache):
    x, h0, params, hs = cache
    dx, carry = np.zeros_like(x), np.zeros_like(h0)
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    for t in reversed(range(x.shape[0])):
        da = (dh[t] + carry) * (1 - hs[t] ** 2)
        prev = hs[t - 1] if t > 0 else h0
        dx[t] = da @ params["U"]
        grads["U"] += da.T @ x[t]
        grads["W"] += da.T @ prev
        grads["b"] += da.sum(0)
        carry = da @ params["W"]
    return dx, carry, grads
"""


def test_a_users_cell_on_the_command_line_reads_symrnns_names(tmp_path, monkeypatch, capsys):
    from symrnn import cli

    (tmp_path / "native.py").write_text(NATIVE_FILE)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["verify", "native.py:rnn_backward", "--cell", "native.py:cell"]) == cli.EXIT_RIGHT, \
        capsys.readouterr()

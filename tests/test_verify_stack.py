"""The verifier sees stacked and bidirectional models: a hand-written loss function over PyTorch's
state_dict names (here written with torch modules, copied weights) is judged against
symrnn.StackedModel's exact gradients; a 0.1% error in one layer's reverse weights is caught."""
import pytest

import symrnn.verify as V
from symrnn.errors import UnknownNameError, UserCodeError

torch = pytest.importorskip("torch")

MODULES = {"rnn-tanh": "RNN", "lstm": "LSTM", "gru": "GRU"}


def torch_loss(cell, layers, bidirectional, wrong=None, data=None):
    """``loss(params, x, h0[, c0], y)`` of nn.<cell>(num_layers, bidirectional) + nn.Linear + summed CE;
    ``data`` (``""`` or ``"d"``) also returns the gradients of x, h0 (and c0) under that prefix."""
    def loss(params, x, h0, *rest):
        *c0, y = rest
        module = getattr(torch.nn, MODULES[cell])(x.shape[2], h0.shape[2], num_layers=layers,
                                                  bidirectional=bidirectional).double()
        leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
        inputs = {"x": x, "h0": h0, **({"c0": c0[0]} if c0 else {})}
        inputs = {k: torch.tensor(v, requires_grad=data is not None) for k, v in inputs.items()}
        recurrent = {k: v for k, v in leaves.items() if k not in ("weight", "bias")}
        state = (inputs["h0"], inputs["c0"]) if c0 else inputs["h0"]
        out, _ = torch.func.functional_call(module, recurrent, (inputs["x"], state))
        logits = out @ leaves["weight"].T + leaves["bias"]
        value = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                  torch.tensor(y).reshape(-1), reduction="sum")
        value.backward()
        grads = {k: v.grad.numpy().copy() for k, v in leaves.items()}
        if data is not None:
            grads.update({data + k: v.grad.numpy().copy() for k, v in inputs.items()})
        if wrong is not None:
            grads[wrong][(0,) * grads[wrong].ndim] *= 1.001
        return float(value.detach()), grads
    return loss


@pytest.mark.parametrize("cell, layers, bidirectional", [("lstm", 2, True), ("gru", 1, True), ("rnn-tanh", 3, False)])
def test_a_torch_written_stack_is_right(cell, layers, bidirectional):
    result = V.verify_loss(torch_loss(cell, layers, bidirectional), cell, "pytorch", num_layers=layers,
                           bidirectional=bidirectional, D=3, H=4, K=3, T=6)
    assert result.ok, str(result)


@pytest.mark.parametrize("wrong", ["weight_hh_l1_reverse", "bias_hh_l0", "weight"])
def test_a_small_error_in_one_layer_and_direction_is_named(wrong):
    result = V.verify_loss(torch_loss("lstm", 2, True, wrong), "lstm", "pytorch", num_layers=2, bidirectional=True,
                           D=3, H=4, K=3, T=6)
    assert not result.ok and [g.name for g in result.wrong] == ["d" + wrong], str(result)
    assert result.minimal["T"] == 1


def test_stack_bad_input():
    with pytest.raises(UnknownNameError, match="Unknown layout 'keras' for a stacked or bidirectional model"):
        V.verify_loss(torch_loss("lstm", 1, True), "lstm", "keras", bidirectional=True)


@pytest.mark.parametrize("cell, layers, bidirectional, spelling", [("lstm", 2, True, ""), ("gru", 1, True, "d")])
def test_the_gradients_of_x_and_the_initial_states_are_judged(cell, layers, bidirectional, spelling):
    result = V.verify_loss(torch_loss(cell, layers, bidirectional, data=spelling), cell, "pytorch",
                           num_layers=layers, bidirectional=bidirectional, D=3, H=4, K=3, T=5)
    assert result.ok, str(result)
    expected = ["dx", "dh0"] + (["dc0"] if cell == "lstm" else [])
    assert [g.name for g in result.gradients][-len(expected):] == expected


@pytest.mark.parametrize("wrong", ["x", "h0", "c0"])
def test_a_small_error_in_dx_dh0_or_dc0_is_caught_and_named(wrong):
    result = V.verify_loss(torch_loss("lstm", 2, True, wrong, data=""), "lstm", "pytorch", num_layers=2,
                           bidirectional=True, D=3, H=4, K=3, T=5)
    assert not result.ok and [g.name for g in result.wrong] == ["d" + wrong], str(result)
    assert result.verdict().startswith(f"WRONG: d{wrong} ")


def test_a_data_gradient_of_the_wrong_shape_or_name_is_refused():
    def returning(extra):
        inner = torch_loss("rnn-tanh", 2, False)

        def loss(params, x, h0, y):
            value, grads = inner(params, x, h0, y)
            return value, {**grads, **extra(x, h0)}
        return loss

    declared = dict(num_layers=2, D=3, H=4, K=3, T=4)
    with pytest.raises(UserCodeError, match=r"gradient of h0 has shape \(3, 4\), expected \(2, 3, 4\)"):
        V.verify_loss(returning(lambda x, h0: {"h0": h0[0]}), "rnn-tanh", "pytorch", **declared)
    with pytest.raises(UserCodeError, match="under 'dh_0', which names no parameter"):
        V.verify_loss(returning(lambda x, h0: {"dh_0": h0}), "rnn-tanh", "pytorch", **declared)
    with pytest.raises(UserCodeError, match="the gradient of x twice"):
        V.verify_loss(returning(lambda x, h0: {"x": x, "dx": x}), "rnn-tanh", "pytorch", **declared)

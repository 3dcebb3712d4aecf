"""User-defined cells: the shipped examples against hand-built torch graphs, and the
definition-time refusals."""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

import symrnn as sr
from symrnn.checks import max_error
from symrnn.engine.examples import minimal_gated_unit, peephole_lstm


def _torch_peephole(P, x, h, c, torch):
    sig = torch.sigmoid
    for t in range(x.shape[0]):
        i = sig(x[t] @ P["U_i"].T + h @ P["W_i"].T + P["p_i"] * c + P["b_i"])
        f = sig(x[t] @ P["U_f"].T + h @ P["W_f"].T + P["p_f"] * c + P["b_f"])
        g = torch.tanh(x[t] @ P["U_g"].T + h @ P["W_g"].T + P["b_g"])
        c = f * c + i * g
        o = sig(x[t] @ P["U_o"].T + h @ P["W_o"].T + P["p_o"] * c + P["b_o"])
        h = o * torch.tanh(c)
        yield h


def _torch_mgu(P, x, h, c, torch):
    for t in range(x.shape[0]):
        f = torch.sigmoid(x[t] @ P["U_f"].T + h @ P["W_f"].T + P["b_f"])
        n = torch.tanh(x[t] @ P["U_n"].T + (f * h) @ P["W_n"].T + P["b_n"])
        h = (1 - f) * h + f * n
        yield h


@settings(max_examples=15)
@given(example=st.sampled_from(["peephole", "mgu"]), T=st.integers(1, 20), N=st.integers(1, 6),
       D=st.integers(1, 6), H=st.integers(1, 6), K=st.integers(1, 6),
       scale=st.sampled_from([0.01, 0.5, 1.0, 3.0]), seed=st.integers(0, 2**32 - 1))
def test_example_cells_match_hand_built_torch(torch64, example, T, N, D, H, K, scale, seed):
    torch = torch64.torch
    cell, forward = {"peephole": (peephole_lstm, _torch_peephole), "mgu": (minimal_gated_unit, _torch_mgu)}[example]
    model = sr.Model(cell(), D=D, H=H, K=K)
    rng = np.random.default_rng(seed)
    params = model.init_params(seed, scale=scale)
    x, y = rng.normal(size=(T, N, D)), rng.integers(0, K, size=(T, N))
    h0 = {s: rng.normal(size=(N, H)) for s in model.state_names}
    loss, grads = model.loss_and_grads(params, x, y, h0=h0)
    P = {k: torch64.tensor(v, grad=True) for k, v in params.items()}
    xt = torch64.tensor(x, grad=True)
    s0 = {s: torch64.tensor(v, grad=True) for s, v in h0.items()}
    hs = torch.stack(list(forward(P, xt, s0["h"], s0.get("c"), torch)))
    logits = hs @ P["V"].T + P["c"]
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, K), torch.tensor(y).reshape(-1), reduction="sum")
    ref.backward()
    assert abs(loss - ref.item()) <= 1e-12 * max(1, abs(ref.item()))
    expected = {k: torch64.numpy(v.grad) for k, v in P.items()}
    expected["x"] = torch64.numpy(xt.grad)
    expected.update({f"{s}0": torch64.numpy(v.grad) for s, v in s0.items()})
    err, where = max_error(grads, expected)
    assert err <= 1e-12, f"{example}: {where} differs by {err:.3e}"


def test_user_cell_gets_a_derivation_and_code():
    model = sr.Model(minimal_gated_unit(), D=2, H=3, K=2)
    d = model.derive()
    assert set(d.gradients) == set(model.param_shapes)
    assert "<symrnn-bptt-mgu-backward>" == model.cell_code.backward.__code__.co_filename


def _cell():
    cell = sr.Cell("bad")
    x = cell.input()
    h = cell.state("h")
    return cell, x, h


def test_undefined_symbol_is_refused_naming_the_equation():
    cell, x, h = _cell()
    W = cell.param("W", "H", "H")
    with pytest.raises(sr.CellDefinitionError, match=r"a\[t\] = .*symbol q is not defined"):
        cell.let("a", W @ h + sp.Symbol("q"))


def test_nonconforming_shape_is_refused():
    cell, x, h = _cell()
    U = cell.param("U", "H", "D")
    with pytest.raises(sr.CellDefinitionError, match=r"In a\[t\].*do not conform"):
        cell.let("a", U @ h)


def test_mixed_sizes_are_refused():
    cell, x, h = _cell()
    with pytest.raises(sr.CellDefinitionError, match="sizes"):
        cell.let("a", x + h)


def test_function_without_derivative_rule_is_refused():
    cell, x, h = _cell()
    W = cell.param("W", "H", "H")
    with pytest.raises(sr.CellDefinitionError, match=r"In a\[t\].*register_function"):
        cell.let("a", sp.Function("mystery")(W @ h))


def test_state_never_updated_is_refused():
    cell, x, h = _cell()
    W = cell.param("W", "H", "H")
    cell.state("c")
    cell.update(h, sr.tanh(W @ h))
    with pytest.raises(sr.CellDefinitionError, match=r"\['c'\] are never updated"):
        cell.validate()


def test_matrix_used_elementwise_is_refused():
    cell, x, h = _cell()
    W = cell.param("W", "H", "H")
    with pytest.raises(sr.CellDefinitionError, match="used elementwise"):
        cell.let("a", W * h)


def test_registered_function_becomes_usable():
    class softsign(sp.Function):
        def fdiff(self, argindex=1):
            a = self.args[0]
            return 1 / (1 + sp.Abs(a)) ** 2

    sr.register_function(softsign, lambda a: a / (1 + np.abs(a)))
    cell, x, h = _cell()
    U, W = cell.param("U", "H", "D"), cell.param("W", "H", "H")
    cell.update(h, softsign(U @ x + W @ h))
    model = sr.Model(cell, D=2, H=2, K=2)
    from symrnn.oracles import central_differences

    params = model.init_params(0)
    x = np.random.default_rng(0).normal(size=(4, 1, 2))
    y = np.zeros((4, 1), dtype=int)
    _, grads = model.loss_and_grads(params, x, y)
    assert max_error(grads, central_differences(model, params, x, y))[0] < 1e-6


def test_strings_are_never_parsed():
    """A string is not an equation: nothing is handed to sympify's parser."""
    cell, x, h = _cell()
    W = cell.param("W", "H", "H")
    with pytest.raises(sr.CellDefinitionError, match="not a SymPy expression"):
        cell.let("a", "__import__('os').system('true')")
    with pytest.raises(sp.SympifyError):
        W @ "h"

"""The generated gradients against finite differences, and the relu subgradient convention."""
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings

import symrnn as sr
from symrnn.checks import max_error, relative_error
from symrnn.oracles import central_differences, high_precision_differences
from strategies import CELLS, problems


@settings(max_examples=20)
@given(problems(cells=[c for c in CELLS if c not in ("rnn-relu", "indrnn")], max_T=8, max_size=3))  # relu kinks
def test_central_differences(problem):
    model, params, x, y, h0 = problem
    _, grads = model.loss_and_grads(params, x, y, h0=h0)
    ref = central_differences(model, params, x, y, h0=h0)
    err, where = max_error(grads, ref)
    assert err <= 1e-6, f"{model}: {where} differs by {err:.3e}"


def test_relu_away_from_the_kink_matches_differences():
    model = sr.Model("rnn-relu", D=2, H=3, K=2)
    params = model.init_params(1, scale=0.9)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 2, 2)), rng.integers(0, 2, size=(6, 2))
    cache = model.cell_code.forward(params, x, {"h": np.zeros((2, 3))}, model.sizes)
    assert np.min(np.abs(cache["C_a"])) > 1e-4  # no pre-activation near 0: differences are valid
    _, grads = model.loss_and_grads(params, x, y)
    assert max_error(grads, central_differences(model, params, x, y))[0] <= 1e-6


def test_relu_subgradient_at_zero_is_zero():
    """Pins the convention relu'(0) = 0: a pre-activation exactly 0 passes no gradient."""
    model = sr.Model("rnn-relu", D=1, H=1, K=2, loss="upstream")
    params = {"U": np.array([[1.0]]), "W": np.array([[0.0]]), "b": np.array([0.0])}
    x = np.zeros((1, 1, 1))  # a_1 = 0 exactly
    g = np.ones((1, 1, 1))
    _, grads = model.loss_and_grads(params, x, g, h0=np.zeros((1, 1)))
    assert grads["b"][0] == 0.0 and grads["U"][0, 0] == 0.0
    x = np.full((1, 1, 1), 1e-300)  # just right of the kink: slope 1
    _, grads = model.loss_and_grads(params, x, g, h0=np.zeros((1, 1)))
    assert grads["b"][0] == 1.0


@pytest.mark.parametrize("cell", ["rnn-sigmoid", "lstm", "gru-reset-before"])
def test_high_precision_differences_agree_beyond_float64_differences(cell):
    model = sr.Model(cell, D=2, H=2, K=2)
    params = model.init_params(4, scale=1.5)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(3, 1, 2)), rng.integers(0, 2, size=(3, 1))
    _, grads = model.loss_and_grads(params, x, y)
    hp = high_precision_differences(model, params, x, y, digits=40)
    err = max(relative_error(grads[k], np.array(hp[k], dtype=float)) for k in hp)
    assert err <= 1e-13
    fd = central_differences(model, params, x, y)
    assert err < max(relative_error(grads[k], fd[k]) for k in fd)  # better than float64 differences


def test_richardson_extrapolation_converges():
    from symrnn.oracles.finite_differences import richardson_derivative

    with mpmath.workdps(40):
        d = richardson_derivative(mpmath.sin, mpmath.mpf(1), 1e-3, levels=5)
        assert abs(d - mpmath.cos(1)) < mpmath.mpf(10) ** -25

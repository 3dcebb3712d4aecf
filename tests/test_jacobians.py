"""Numeric step Jacobians: checked against the backward pass and against known facts."""
import numpy as np
import pytest

import symrnn as sr
from symrnn.engine.jacobians import log_norms_of_products, step_jacobians


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-sigmoid", "lstm", "gru", "gru-reset-before", "gru-chung"])
def test_product_of_step_jacobians_is_the_gradient_route(cell):
    """dL/dh_0 from the backward pass equals G^T J_T ... J_1 (state h; LSTM both states)."""
    model = sr.Model(cell, D=2, H=3, loss="upstream", architecture="many-to-one")
    params = model.init_params(0, scale=1.0)
    rng = np.random.default_rng(1)
    T = 6
    x = rng.normal(size=(T, 1, 2))
    G = rng.normal(size=(1, 1, 3))
    h0 = {s: rng.normal(size=(1, 3)) for s in model.state_names}
    _, grads = model.loss_and_grads(params, x, G, h0=h0)
    J = step_jacobians(model, params, x, h0=h0)
    states = model.state_names
    S = len(states) * 3
    block = np.zeros((T, S, S))
    for i, s in enumerate(states):
        for j, p in enumerate(states):
            block[:, 3 * i:3 * i + 3, 3 * j:3 * j + 3] = J[(s, p)][:, 0]
    total = np.eye(S)
    for t in range(T - 1, -1, -1):
        total = total @ block[t]
    g = np.zeros(S)
    g[3 * states.index("h"):3 * states.index("h") + 3] = G[0, 0]
    expected = g @ total
    for i, s in enumerate(states):
        assert np.allclose(grads[f"{s}0"][0], expected[3 * i:3 * i + 3], rtol=1e-12, atol=1e-14)


def test_linear_regime_singular_values():
    """tanh RNN, zero input and bias, h_0 = 0: J = W, and W = rho Q has singular values rho^k."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    rho = 0.9
    model = sr.Model("rnn-tanh", D=1, H=4, K=1)
    params = model.init_params(0)
    params.update(W=rho * Q, U=np.zeros((4, 1)), b=np.zeros(4))
    J = step_jacobians(model, params, np.zeros((10, 1, 1)))[("h", "h")][:, 0]
    logs = log_norms_of_products(J)
    assert np.allclose(logs, np.arange(10, 0, -1) * np.log(rho), atol=1e-12)


def test_transient_growth_is_not_the_spectral_radius():
    W = np.array([[0.5, 10.0], [0.0, 0.5]])
    J = np.broadcast_to(W, (20, 2, 2))
    norms = np.exp(log_norms_of_products(J))
    # ||W^k||_2 for k = 1, 2, 3, 5, 10, 20 (CONVENTIONS.md)
    expected = {1: 10.02, 2: 10.01, 3: 7.50, 5: 3.13, 10: 0.195, 20: 3.8e-4}
    for k, v in expected.items():
        assert norms[20 - k] == pytest.approx(v, rel=5e-3)


def test_log_norms_do_not_underflow():
    J = np.broadcast_to(0.01 * np.eye(3), (20000, 3, 3))
    logs = log_norms_of_products(J)
    assert np.isfinite(logs).all()
    assert logs[0] == pytest.approx(20000 * np.log(0.01))

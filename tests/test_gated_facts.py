"""Pinned facts about gradient flow through gates, read off symrnn's gradients.

With the recurrent weights zero the gates depend on the inputs only, and the
Jacobians across time are diagonal products of gates:

* LSTM:  dc_T/dc_0 = diag(prod_k f_k), so with an upstream gradient G on h_T
  only, dL/dc_0 = G * o_T * (1 - tanh(c_T)^2) * prod_k f_k and dL/dh_0 = 0.
* GRU, PyTorch update h = (1 - z) n + z h_prev:  dh_T/dh_0 = diag(prod_k z_k);
  Chung update h = (1 - z) h_prev + z n:         dh_T/dh_0 = diag(prod_k (1 - z_k)).

The products are computed here in NumPy from a forward pass written in this
file, not taken from symrnn.
"""
from __future__ import annotations

import numpy as np
import pytest

import symrnn as sr

T, N, D, H = 10, 3, 4, 5


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def zero_recurrence(params):
    return {k: (np.zeros_like(v) if k.startswith("W") else v) for k, v in params.items()}


def last_step_upstream(G):
    return G[None]  # many-to-one: targets (1, N, H) = dL/dh_T


# -- LSTM ---------------------------------------------------------------------------
def test_lstm_cell_gradient_is_product_of_forget_gates():
    m = sr.Model("lstm", D=D, H=H, architecture="many-to-one", loss="upstream")
    p = zero_recurrence(m.init_params(seed=0, scale=1.0))
    rng = np.random.default_rng(1)
    x, G = rng.normal(size=(T, N, D)), rng.normal(size=(N, H))
    h0, c0 = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    _, grads = m.loss_and_grads(p, x, last_step_upstream(G), h0={"h": h0, "c": c0})

    gate = lambda g, t: x[t] @ p[f"U_{g}"].T + p[f"b_{g}"]  # noqa: E731  (W = 0)
    c, prod_f = c0, np.ones((N, H))
    for t in range(T):
        f = sigmoid(gate("f", t))
        c = f * c + sigmoid(gate("i", t)) * np.tanh(gate("g", t))
        prod_f *= f
    o_T = sigmoid(gate("o", T - 1))
    expected = G * o_T * (1 - np.tanh(c) ** 2) * prod_f
    np.testing.assert_allclose(grads["c0"], expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(grads["h0"], 0.0)  # W = 0: h_0 is never read


@pytest.mark.parametrize("b_f, factor, pinned", [(0.0, 0.5 ** 10, 9.765625e-4),
                                                 (1.0, sigmoid(1.0) ** 10, 0.0436)])
def test_lstm_constant_forget_gate_factor(b_f, factor, pinned):
    """U = W = 0: every gate is a constant; the factor over 10 steps is sigmoid(b_f)^10."""
    m = sr.Model("lstm", D=D, H=H, architecture="many-to-one", loss="upstream")
    p = {k: np.zeros_like(v) for k, v in m.init_params(seed=0).items()}
    p["b_f"][:] = b_f
    p["b_o"][:] = 0.3
    p["b_i"][:], p["b_g"][:] = 0.7, -0.4
    rng = np.random.default_rng(2)
    c0 = rng.normal(size=(N, H))
    _, grads = m.loss_and_grads(p, rng.normal(size=(T, N, D)), last_step_upstream(np.ones((N, H))),
                                h0={"c": c0})
    c = c0
    for _ in range(T):
        c = sigmoid(b_f) * c + sigmoid(0.7) * np.tanh(-0.4)
    ratio = grads["c0"] / (sigmoid(0.3) * (1 - np.tanh(c) ** 2))
    np.testing.assert_allclose(ratio, factor, rtol=1e-12)
    assert factor == pytest.approx(pinned, rel=1e-3)


# -- GRU ----------------------------------------------------------------------------
GRUS = ["gru", "gru-reset-before", "gru-chung", "gru-reset-before-chung"]


@pytest.mark.parametrize("cell", GRUS)
def test_gru_state_gradient_is_product_of_update_gates(cell):
    m = sr.Model(cell, D=D, H=H, architecture="many-to-one", loss="upstream")
    p = zero_recurrence(m.init_params(seed=3, scale=1.0))
    rng = np.random.default_rng(4)
    x, G, h0 = rng.normal(size=(T, N, D)), rng.normal(size=(N, H)), rng.normal(size=(N, H))
    _, grads = m.loss_and_grads(p, x, last_step_upstream(G), h0=h0)
    z = sigmoid(x @ p["U_z"].T + p["b_z"])  # (T, N, H), W_z = 0
    keep = 1 - z if cell.endswith("chung") else z
    np.testing.assert_allclose(grads["h0"], G * keep.prod(axis=0), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("cell, pinned", [("gru", 0.2810), ("gru-reset-before", 0.2810),
                                          ("gru-chung", 5.79e-10), ("gru-reset-before-chung", 5.79e-10)])
def test_gru_constant_update_gate_factor(cell, pinned):
    """U = W = 0, b_z = 2, T = 10: sigmoid(2)^10 = 0.2810 (PyTorch update) but
    (1 - sigmoid(2))^10 = 5.79e-10 (Chung): the same bias keeps or forgets h_0."""
    m = sr.Model(cell, D=D, H=H, architecture="many-to-one", loss="upstream")
    rng = np.random.default_rng(5)
    p = {k: (np.zeros_like(v) if k[0] in "UW" else rng.normal(size=v.shape)) for k, v in m.init_params(0).items()}
    p["b_z"][:] = 2.0
    _, grads = m.loss_and_grads(p, rng.normal(size=(T, N, D)), last_step_upstream(np.ones((N, H))),
                                h0=rng.normal(size=(N, H)))
    exact = (1 - sigmoid(2.0)) ** T if cell.endswith("chung") else sigmoid(2.0) ** T
    np.testing.assert_allclose(grads["h0"], exact, rtol=1e-12)
    assert exact == pytest.approx(pinned, rel=1e-3)


@pytest.mark.parametrize("reset", ["", "-reset-before"])
def test_update_conventions_give_different_gradients(reset):
    """Same parameters and data, the two update conventions: different losses and
    different gradients for every parameter (each one feeds the update)."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(T, N, D)), rng.integers(0, 3, size=(T, N))
    h0 = rng.normal(size=(N, H))
    results = []
    for cell in ("gru" + reset, "gru" + reset + "-chung"):
        m = sr.Model(cell, D=D, H=H, K=3)
        results.append(m.loss_and_grads(m.init_params(seed=8), x, y, h0=h0))
    (l1, g1), (l2, g2) = results
    assert sorted(g1) == sorted(g2)
    assert abs(l1 - l2) > 1e-3
    for k in g1:
        assert np.max(np.abs(g1[k] - g2[k])) > 1e-6, f"grads[{k!r}] agree across update conventions"

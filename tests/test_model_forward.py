"""``Model.forward``: the states of a cell at every step, against plain NumPy loops written from the papers.

minGRU (Feng et al. 2024) is a vector cell, S6 (Gu and Dao 2023) one with a matrix state (each channel's
state of size N, flattened row-major).  The loops below read the parameters by name only; they share no
code with symrnn's generated forward.
"""
from __future__ import annotations

import numpy as np
import pytest

import symrnn as sr

T, N, D, H = 7, 3, 3, 4


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def min_gru_loop(p, x, h0):
    """``z = sigmoid(U_z x + b_z)``, ``htilde = U_h x + b_h``, ``h = (1 - z) h + z htilde``."""
    h, hs = h0, []
    for x_t in x:
        z = _sigmoid(x_t @ p["U_z"].T + p["b_z"])
        h = (1 - z) * h + z * (x_t @ p["U_h"].T + p["b_h"])
        hs.append(h)
    return {"h": np.stack(hs)}


def s6_loop(p, x, s0, n_state=2):
    """Mamba's selective scan on ``H`` channels with the Euler ``Bbar = Delta B``, written per channel."""
    A = -np.exp(p["A_log"].reshape(H, n_state))
    s = s0.reshape(-1, H, n_state)
    ss, ys = [], []
    for x_t in x:
        u = x_t @ p["W_u"].T
        delta = np.log1p(np.exp(u @ p["W_dt"].T + p["b_dt"]))  # softplus, exact for these sizes
        B, C = u @ p["W_B"].T, u @ p["W_C"].T  # (N, n_state), shared by the channels
        s = np.exp(delta[:, :, None] * A) * s + (delta * u)[:, :, None] * B[:, None, :]
        ss.append(s.reshape(len(x_t), -1))
        ys.append((s * C[:, None, :]).sum(-1) + p["d"] * u)
    return {"s": np.stack(ss), "h": np.stack(ys)}


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("cell, loop", [("min-gru", min_gru_loop), ("s6", s6_loop)])
def test_forward_equals_a_loop_from_the_paper(cell, loop):
    model = sr.Model(cell, D=D, H=H, K=2)
    rng = np.random.default_rng(3)
    params = model.init_params(seed=1, scale=0.8)
    x = rng.normal(size=(T, N, D))
    h0 = {s: rng.normal(size=(N, model.state_size(s))) for s in model.state_names}
    expected = loop(params, x, h0["s" if cell == "s6" else "h"])
    output, final = model.forward(params, x, h0=h0)
    _, states = model.forward(params, x, h0=h0, every_step=True)
    assert output.shape == (T, N, model.state_size(model.out))
    assert _relative(output, expected["h"]) < 1e-12
    for s, want in expected.items():
        assert states[s].shape == want.shape
        assert _relative(states[s], want) < 1e-12
        assert _relative(final[s], want[-1]) < 1e-12
    assert sorted(final) == sorted(model.state_names)


def test_forward_agrees_with_the_one_layer_stack_and_owns_its_arrays():
    """The same numbers as ``StackedModel.forward`` of one layer (whose final states have a row axis),
    in fresh arrays: a second call does not overwrite the first's."""
    model, stack = sr.Model("lstm", D=D, H=H, K=2), sr.StackedModel("lstm", D=D, H=H, K=2, num_layers=1)
    params = model.init_params(seed=0)
    x = np.random.default_rng(0).normal(size=(T, N, D))
    output, final = model.forward(params, x)
    stacked = {k if k in ("V", "c") else f"l0.fwd.{k}": v for k, v in params.items()}
    top, rows = stack.forward(stacked, x)
    kept = output.copy()
    model.forward(params, 2 * x)
    np.testing.assert_array_equal(output, kept)
    np.testing.assert_allclose(output, top, rtol=1e-14, atol=0)
    assert sorted(final) == sorted(rows) == ["c", "h"]
    for s in final:
        np.testing.assert_allclose(final[s], rows[s][0], rtol=1e-14, atol=0)


def test_forward_refuses_bad_input_by_name():
    model = sr.Model("min-gru", D=D, H=H, K=2)
    with pytest.raises(sr.ShapeError, match="time-major"):
        model.forward(model.init_params(seed=0), np.zeros((N, D)))
    with pytest.raises(sr.ShapeError, match="unknown states"):
        model.forward(model.init_params(seed=0), np.zeros((T, N, D)), h0={"c": np.zeros((N, H))})

"""Sharpness by power iteration on the exact H v (:mod:`symrnn.decay.sharpness`).

The eigenvalue found equals the eigenvalue of largest magnitude of the dense Hessian, built
column by column from central differences of gradients (an independent route, to 1e-6) and from
torch's ``hessian`` of a forward written from the equations; the figure is written.
"""
from __future__ import annotations

import numpy as np
import pytest

import symrnn as sr
from symrnn.decay.sharpness import sharpness_by_length, sharpness_figure, top_hessian_eigenvalue


def dense_hessian_by_differences(model, params, x, y, eps=1e-5):
    keys = list(params)
    sizes = [params[k].size for k in keys]
    flat = np.concatenate([params[k].ravel() for k in keys])

    def grad(theta):
        P = {k: a.reshape(params[k].shape) for k, a in zip(keys, np.split(theta, np.cumsum(sizes)[:-1]))}
        g = model.loss_and_grads(P, x, y)[1]
        return np.concatenate([g[k].ravel() for k in keys])

    H = np.empty((flat.size, flat.size))
    for i in range(flat.size):
        e = np.zeros(flat.size)
        e[i] = eps
        H[:, i] = (grad(flat + e) - grad(flat - e)) / (2 * eps)
    return (H + H.T) / 2


def test_power_iteration_finds_the_top_eigenvalue():
    model = sr.Model("rnn-tanh", D=2, H=3, K=2, loss="cross-entropy", reduction="mean")
    params = model.init_params(seed=1, scale=1.5)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 2, 2)), rng.integers(0, 2, size=(6, 2))
    eig = np.linalg.eigvalsh(dense_hessian_by_differences(model, params, x, y))
    expected = eig[np.argmax(np.abs(eig))]
    assert abs(eig).max() - sorted(abs(eig))[-2] < 0.01  # +0.658 and -0.656: a hard case for power iteration
    top = top_hessian_eigenvalue(model, params, x, y, rtol=1e-12)
    assert top.converged and top.iterations < 40
    assert abs(top.value - expected) <= 1e-6 * abs(expected)
    hv = model.hessian_vector_product(params, top.vector, x, y)[2]  # an eigenvector indeed
    assert max(np.abs(hv[k] - top.value * top.vector[k]).max() for k in hv) <= 1e-8 * abs(top.value)
    power = top_hessian_eigenvalue(model, params, x, y, method="power", iterations=100)
    assert not power.converged  # the plain method stalls there, and says so


def test_power_iteration_on_a_separated_spectrum():
    model = sr.Model("rnn-tanh", D=2, H=3, K=2, loss="cross-entropy", reduction="sum")
    params = model.init_params(seed=1, scale=0.5)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 2, 2)), rng.integers(0, 2, size=(6, 2))
    eig = np.linalg.eigvalsh(dense_hessian_by_differences(model, params, x, y))
    power = top_hessian_eigenvalue(model, params, x, y, method="power", iterations=400, rtol=1e-13)
    assert power.converged
    assert abs(power.value - eig[np.argmax(np.abs(eig))]) <= 1e-6 * abs(eig).max()


def test_sharpness_against_length_and_figure(tmp_path):
    curves = {}
    for cell in ("rnn-tanh", "lstm"):
        model = sr.Model(cell, D=2, H=3, K=2, reduction="mean")
        rows = sharpness_by_length(model, model.init_params(seed=0, scale=1.0), [1, 4, 16], N=2)
        assert [T for T, _ in rows] == [1, 4, 16] and all(r.converged for _, r in rows)
        curves[cell] = rows
    path = sharpness_figure(curves, tmp_path / "sharpness.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments():
    model = sr.Model("rnn-tanh", D=1, H=2, K=2)
    with pytest.raises(sr.ParameterError):
        top_hessian_eigenvalue(model, model.init_params(), np.zeros((2, 1, 1)), np.zeros((2, 1), dtype=int),
                               iterations=0)
    with pytest.raises(sr.ParameterError):
        sharpness_by_length(model, model.init_params(), [])
    with pytest.raises(sr.ParameterError, match="many-to-many or many-to-one"):
        sharpness_by_length(sr.Model("rnn-tanh", D=1, H=2, K=2, architecture="one-to-many"),
                            model.init_params(), [2])

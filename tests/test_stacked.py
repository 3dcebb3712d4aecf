"""Stacked and bidirectional models against the unrolled scalar program and finite differences.

* :class:`symrnn.oracles.stacked.ScalarStackOracle` unrolls every layer and direction into scalar SymPy
  assignments and differentiates them one at a time: every built-in cell and two user-defined ones
  (the minimal gated unit, the peephole LSTM), every merge mode, residual links, every architecture,
  every loss.  Tolerance ``1e-12`` relative (``max|ours - oracle| / max(1, max|oracle|)``), and the
  40-digit evaluation of the same program as the exact gradient.
* Central differences of ``StackedModel.loss`` (every entry of every parameter, input and initial
  state), away from ties of the max merge; tolerance ``1e-7``: what float64 differences resolve.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symrnn as sr
from symrnn.oracles.finite_differences import differences_in_place
from symrnn.oracles.stacked import ScalarStackOracle
from symrnn.models.wiring import MERGES
from strategies import make_cell

TOL = 1e-12
MATRIX_CELLS = ("mlstm", "s6")  # matrix-valued states: StackedModel refuses them (test_matrix_cells.py)
CELLS = sorted(c for c in sr.BUILTIN_CELLS if c not in MATRIX_CELLS) + ["mgu", "peephole-lstm"]
MERGE_NAMES = sorted(MERGES)


@functools.lru_cache(maxsize=None)
def stacked(cell, D=2, H=2, K=3, num_layers=2, bidirectional=True, merge="concat", residual=False,
            architecture="many-to-many", loss="cross-entropy", reduction="sum"):
    return sr.StackedModel(make_cell(cell), D=D, H=H, K=None if loss == "upstream" else K, num_layers=num_layers,
                           bidirectional=bidirectional, merge=merge, residual=residual, architecture=architecture,
                           loss=loss, reduction=reduction)


@functools.lru_cache(maxsize=None)
def oracle(m, T_in, T_out):
    return ScalarStackOracle(m, T_in, T_out)


def problem(m, T_in, T_out, N=2, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    params = m.init_params(seed=seed, scale=scale)
    x = rng.normal(size=(T_in, N, m.sizes["D"]))
    if m.loss_rule.name == "cross-entropy":
        y = rng.integers(0, m.sizes["K"], size=(T_out, N))
    else:
        y = rng.normal(size=(T_out, N, m.sizes["K"] if m.loss_rule.name in ("mse", "half-mse") else m.width))
    h0 = {s: rng.normal(size=(len(m.rows()), N, m.unit.state_size(s))) for s in m.state_names}
    return params, x, y, h0


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b), initial=0.0) / max(1.0, np.max(np.abs(b), initial=0.0)))


def assert_matches_oracle(m, T_in, T_out, seed=0, scale=1.0):
    params, x, y, h0 = problem(m, T_in, T_out, seed=seed, scale=scale)
    loss, grads = m.loss_and_grads(params, x, y, h0=h0)
    loss_o, grads_o = oracle(m, T_in, T_out).loss_and_grads(params, x, y, h0=h0)
    assert sorted(grads) == sorted(grads_o) == sorted(m.gradient_keys)
    assert abs(loss - loss_o) <= TOL * max(1.0, abs(loss_o))
    for k in grads:
        assert rel(grads[k], grads_o[k]) <= TOL, f"{m}: grads[{k!r}] is {rel(grads[k], grads_o[k]):.2e} off"
    return params, x, y, h0, grads


# -- every cell, stacked and bidirectional together -------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_stacked_and_bidirectional_matches_the_scalar_program(cell):
    merge = MERGE_NAMES[CELLS.index(cell) % len(MERGE_NAMES)]  # every merge mode over the cells
    assert_matches_oracle(stacked(cell, merge=merge), 3, 3)


@pytest.mark.parametrize("merge", MERGE_NAMES)
@pytest.mark.parametrize("loss, reduction", [("cross-entropy", "mean"), ("mse", "sum"), ("half-mse", "mean"),
                                            ("upstream", "sum")])
def test_every_merge_and_loss(merge, loss, reduction):
    assert_matches_oracle(stacked("rnn-relu", merge=merge, loss=loss, reduction=reduction, num_layers=3,
                                  residual=merge != "concat"), 3, 3, seed=1)


@pytest.mark.parametrize("architecture", ["many-to-many", "many-to-one", "one-to-one"])
@pytest.mark.parametrize("merge", MERGE_NAMES)
def test_every_architecture_of_a_bidirectional_stack(architecture, merge):
    T_in, T_out = {"many-to-many": (3, 3), "many-to-one": (4, 1), "one-to-one": (1, 1)}[architecture]
    assert_matches_oracle(stacked("rnn-tanh", merge=merge, architecture=architecture), T_in, T_out, seed=2)


@pytest.mark.parametrize("architecture, T_in, T_out", [("one-to-many", 1, 3), ("many-to-many-delayed", 2, 3)])
def test_generation_architectures_of_a_unidirectional_stack(architecture, T_in, T_out):
    assert_matches_oracle(stacked("lstm", bidirectional=False, architecture=architecture, residual=True,
                                  D=3, H=2), T_in, T_out, seed=3)


def test_mixed_layers_and_residual():
    # layer 0 bidirectional (concat, 2H wide), layer 1 unidirectional, layer 2 bidirectional (sum, H wide)
    m = sr.StackedModel("rnn-tanh", D=2, H=2, K=2, num_layers=3, bidirectional=[True, False, True], merge="sum",
                        residual=True)
    assert [layer.width for layer in m.layers] == [2, 2, 2]
    assert [layer.residual for layer in m.layers] == [False, True, True]
    assert_matches_oracle(m, 3, 3)


def test_agrees_with_the_exact_gradient():
    m = stacked("lstm", merge="mul", num_layers=2)
    params, x, y, h0, grads = assert_matches_oracle(m, 3, 3, seed=4, scale=1.5)
    _, exact = oracle(m, 3, 3).loss_and_grads(params, x, y, h0=h0, precision=40)
    for k in grads:
        assert rel(grads[k], np.array(exact[k], dtype=float)) <= 1e-13


@given(cell=st.sampled_from(["rnn-tanh", "rnn-relu", "gru", "mgu"]), merge=st.sampled_from(MERGE_NAMES),
       num_layers=st.integers(1, 3), T=st.integers(1, 4), seed=st.integers(0, 2**16),
       scale=st.sampled_from([0.1, 0.5, 1.0, 2.0]), bidirectional=st.booleans())
@settings(max_examples=10)
def test_random_stacks_match_the_scalar_program(cell, merge, num_layers, T, seed, scale, bidirectional):
    m = stacked(cell, merge=merge, num_layers=num_layers, bidirectional=bidirectional, H=2, D=2,
                residual=merge != "concat" and num_layers > 1)
    assert_matches_oracle(m, T, T, seed=seed, scale=scale)


# -- finite differences --------------------------------------------------------------------------------------
def central_differences(m, params, x, y, h0, eps=1e-6):
    arrays = {**{k: np.array(v) for k, v in params.items()}, "x": np.array(x),
              **{f"{s}0": np.array(v) for s, v in h0.items()}}

    def f():
        return m.loss({k: arrays[k] for k in params}, arrays["x"], y, h0={s: arrays[f"{s}0"] for s in h0})

    return differences_in_place(arrays, f, eps)


def tie_margin(m, params, x, h0):
    """The smallest |h_fwd - h_bwd| over every bidirectional layer, step and unit."""
    p, X, _, S0, _, _ = m._prepare(params, x, None, h0, None)
    trace, _ = m._run_layers(p, X, S0)
    return min(float(np.abs(dirs["fwd"][2] - dirs["bwd"][2]).min())
               for layer, (_, dirs, _) in zip(m.layers, trace) if layer.bidirectional)


@pytest.mark.parametrize("merge", MERGE_NAMES)
@pytest.mark.parametrize("cell", ["gru", "peephole-lstm"])
def test_finite_differences(cell, merge):
    m = stacked(cell, merge=merge, H=2, D=2, num_layers=2, residual=merge != "concat", loss="mse")
    params, x, y, h0 = problem(m, 3, 3, seed=5)
    if merge == "max":  # away from ties: the directions differ by far more than the step everywhere
        assert tie_margin(m, params, x, h0) > 1e-4
    _, grads = m.loss_and_grads(params, x, y, h0=h0)
    numeric = central_differences(m, params, x, y, h0)
    for k in grads:
        err = rel(grads[k], numeric[k])
        assert err <= 1e-7, f"{m}: grads[{k!r}] vs central differences {err:.1e}"


def test_float32_runs_in_float32():
    m = stacked("lstm", merge="ave")
    params, x, y, h0 = problem(m, 3, 3)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    loss, grads = m.loss_and_grads(p32, x, y, h0=h0)
    _, grads64 = m.loss_and_grads(params, x, y, h0=h0)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert max(rel(grads[k], grads64[k]) for k in grads) < 1e-5


def test_mask_and_ignored_labels():
    m = stacked("gru", merge="sum", num_layers=2, architecture="many-to-many", reduction="mean")
    params, x, y, h0 = problem(m, 4, 4, seed=6)
    mask = np.array([[True, False], [True, True], [False, True], [True, True]])
    loss, grads = m.loss_and_grads(params, x, y, h0=h0, mask=mask)
    ignored = np.where(mask, y, -1)
    loss_i, grads_i = m.loss_and_grads(params, x, ignored, h0=h0)
    assert loss == loss_i and all(np.array_equal(grads[k], grads_i[k]) for k in grads)
    numeric = central_differences(m, params, x, ignored, h0)
    assert max(rel(grads[k], numeric[k]) for k in grads) <= 1e-7


def test_module_docstring_example_runs():
    import doctest

    import symrnn.models.wiring

    failures, tried = doctest.testmod(symrnn.models.wiring, verbose=False)
    assert tried > 0 and failures == 0

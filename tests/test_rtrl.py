"""RTRL (``Model.rtrl_grads``, :mod:`symrnn.engine.rtrl`) equals BPTT to 1e-12 relative.

For every built-in cell and every loss, for random problems from ``tests/strategies.py``
(every cell, architecture, loss, reduction, scale, initial states), and for fuzzed user cells
(``tests/fuzz_recipes.py``), whose BPTT gradients are themselves checked against a torch route
there, and for stacks of unidirectional layers (residual or not).  Also: RTRL streams (its peak
memory does not grow with ``T``), a model with a backward direction is refused with a clear message, and the printed sensitivity recurrence has the terms
of ``P_t = J_t P_{t-1} + dF/dtheta``.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings

import symrnn as sr
from symrnn.engine.rtrl import Sensitivities, rtrl_loss_and_grads

from fuzz_recipes import cells_and_recipes, torch_loss_and_grads
from strategies import CELLS, problems

MATRIX_CELLS = ("mlstm", "s6")  # matrix-valued states: tests/test_second_order_matrix.py
VECTOR_CELLS = [c for c in CELLS if c not in MATRIX_CELLS]

TOL = 1e-12


def assert_rtrl_equals_bptt(model, params, x, y, h0=None, mask=None, per_key=True):
    """Every gradient within 1e-12 of BPTT's, relative to its own largest entry (``per_key``) or to the
    largest entry of every gradient (for random cells, where a gradient that is exactly zero in exact
    arithmetic comes out as rounding noise from both routes)."""
    loss, bptt = model.loss_and_grads(params, x, y, h0=h0, mask=mask)
    rloss, rtrl = model.rtrl_grads(params, x, y, h0=h0, mask=mask)
    expected = set(bptt) - {model.input_name}
    assert set(rtrl) == expected, f"RTRL keys {sorted(rtrl)}, expected {sorted(expected)}"
    assert abs(rloss - loss) <= TOL * max(abs(loss), 1e-300)
    overall = max((np.abs(bptt[k]).max(initial=0.0) for k in rtrl), default=0.0)
    for key, g in rtrl.items():
        scale = np.abs(bptt[key]).max(initial=0.0) if per_key else overall
        err = np.abs(g - bptt[key]).max(initial=0.0)
        assert err <= TOL * scale or err == 0.0, f"grads[{key!r}]: RTRL differs from BPTT by {err:.2e} (max {scale:.2e})"


@pytest.mark.parametrize("cell", sorted(set(sr.BUILTIN_CELLS) - set(MATRIX_CELLS)))
@pytest.mark.parametrize("loss, reduction", [("cross-entropy", "mean"), ("mse", "sum"), ("upstream", "sum")])
def test_every_builtin_cell(cell, loss, reduction):
    model = sr.Model(cell, D=3, H=4, K=3, loss=loss, reduction=reduction)
    rng = np.random.default_rng(7)
    params = model.init_params(seed=3, scale=0.8)
    x = rng.normal(size=(6, 2, 3))
    out_size = model.state_size(model.out)  # H, or LRU's output of size D
    y = rng.integers(0, 3, size=(6, 2)) if loss == "cross-entropy" else rng.normal(size=(6, 2, 3 if loss == "mse" else out_size))
    h0 = {s: rng.normal(size=(2, model.state_size(s))) for s in model.state_names}
    assert_rtrl_equals_bptt(model, params, x, y, h0)


def test_masked_token_mean():
    model = sr.Model("lstm", D=2, H=3, K=4, reduction="token-mean")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3, 2)), rng.integers(0, 4, size=(5, 3))
    y[1, 2] = -1  # an ignored label
    mask = rng.random((5, 3)) > 0.3
    assert_rtrl_equals_bptt(model, model.init_params(seed=1), x, y, mask=mask)


@settings(max_examples=30, deadline=None)
@given(problem=problems(cells=VECTOR_CELLS, max_T=6, max_size=4))
def test_random_problems(problem):
    model, params, x, y, h0 = problem
    assert_rtrl_equals_bptt(model, params, x, y, h0, per_key=False)


@settings(max_examples=30, deadline=None)
@given(case=cells_and_recipes())
def test_fuzzed_user_cells(torch64, case):
    try:
        model = case.build_model()
    except sr.SymRNNError:
        return  # refused at definition time: nothing to run
    data = case.data()
    assert_rtrl_equals_bptt(model, data.params, data.x, data.y, data.h0, per_key=False)
    ref_loss, ref = torch_loss_and_grads(case, data, torch64)  # and the independent route
    _, rtrl = model.rtrl_grads(data.params, data.x, data.y, h0=data.h0)
    for key, g in rtrl.items():
        assert np.abs(g - ref[key]).max(initial=0) <= 1e-10 * max(1.0, np.abs(ref[key]).max(initial=0)), key


def _peak(model, params, T):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(T, 2, 3)), rng.integers(0, 2, size=(T, 2))
    tracemalloc.start()
    try:
        model.rtrl_grads(params, x, y)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streams_over_time():
    """The peak memory of RTRL does not grow with T (BPTT's cache grows linearly)."""
    model = sr.Model("lstm", D=3, H=8, K=2)
    params = model.init_params(seed=0)
    _peak(model, params, 2)  # compile first
    short, long = _peak(model, params, 20), _peak(model, params, 400)
    assert long < 1.2 * short + 20_000, (short, long)


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru-reset-before-chung"])
@pytest.mark.parametrize("residual, architecture, loss", [(False, "many-to-many", "cross-entropy"),
                                                          (True, "many-to-one", "mse"),
                                                          (False, "one-to-many", "upstream")])
def test_stacked_unidirectional_layers(cell, residual, architecture, loss):
    """Layer l's sensitivities feed layer l + 1 as the tangent of its input."""
    model = sr.StackedModel(cell, D=3, H=3, K=2, num_layers=3, residual=residual, architecture=architecture,
                            loss=loss, reduction="mean" if loss != "upstream" else "sum")
    rng = np.random.default_rng(4)
    T_in, T_out = {"many-to-many": (5, 5), "many-to-one": (5, 1), "one-to-many": (1, 5)}[architecture]
    x = rng.normal(size=(T_in, 2, 3))
    y = rng.integers(0, 2, size=(T_out, 2)) if loss == "cross-entropy" else rng.normal(size=(T_out, 2, 2 if loss == "mse" else 3))
    h0 = {s: rng.normal(size=(3, 2, 3)) for s in model.state_names}
    loss_b, bptt = model.loss_and_grads(model.init_params(seed=1), x, y, h0=h0)
    loss_r, rtrl = model.rtrl_grads(model.init_params(seed=1), x, y, h0=h0)
    assert set(rtrl) == set(bptt) - {model.input_name}
    assert abs(loss_r - loss_b) <= TOL * abs(loss_b)
    for key, g in rtrl.items():
        assert np.abs(g - bptt[key]).max() <= TOL * np.abs(bptt[key]).max(), key


def test_backward_directions_refused():
    model = sr.StackedModel("rnn-tanh", D=2, H=3, K=2, num_layers=2, bidirectional=[False, True])
    with pytest.raises(sr.ShapeError, match="backward"):
        rtrl_loss_and_grads(model, model.init_params(), np.zeros((2, 1, 2)), np.zeros((2, 1), dtype=int))


def test_sensitivity_recurrence_printed():
    text = str(Sensitivities(sr.lstm()))
    assert "dot c[t] = c[t-1]*dot f[t] + f[t]*dot c[t-1] + g[t]*dot i[t] + i[t]*dot g[t]" in text
    assert "MatVec(dot W_f, h[t-1])" in text and "MatVec(W_f, dot h[t-1])" in text
    assert Sensitivities(sr.rnn("tanh"))._repr_latex_().startswith("$\\begin{aligned}")


# -- the RTRL row of the agreement tables (symrnn.checks) ------------------------------------------------------
def test_agreement_table_has_an_rtrl_row():
    from symrnn.checks import agreement_table

    table = agreement_table(sr.Model("rnn-tanh", D=2, H=3, K=2), T_in=2, N=1)
    row = next(line for line in table.splitlines() if line.startswith("| real-time recurrent learning"))
    assert row.endswith("| yes |") and float(row.split("|")[2]) < 1e-12


@pytest.mark.parametrize("model", [sr.Model("lstm", D=2, H=3, K=2, architecture="many-to-one"),
                                   sr.Model("gru", D=2, H=3, K=2, loss="mse", reduction="mean"),
                                   sr.StackedModel("rnn-tanh", D=2, H=3, K=2, num_layers=2, residual=True)],
                         ids=repr)
def test_rtrl_row_agrees_with_bptt(model):
    from symrnn.checks import random_problem, rtrl_row

    params, x, y, h0 = random_problem(model, T_in=3, N=2, seed=1)
    _, grads = model.loss_and_grads(params, x, y, h0=h0)
    name, err, key, tol = rtrl_row(model, params, x, y, h0, grads)
    assert "rtrl_grads" in name and err < 1e-12 and key in grads and tol == 1e-12
    wrong = dict(grads, **{key: grads[key] * (1 + 1e-9)})  # the row can fail: a gradient off by 1e-9
    assert rtrl_row(model, params, x, y, h0, wrong)[1] > 1e-10


def test_rtrl_row_says_why_it_does_not_apply():
    from symrnn.checks import random_problem, rtrl_row

    model = sr.StackedModel("gru", D=2, H=3, K=2, num_layers=1, bidirectional=True)
    params, x, y, h0 = random_problem(model, T_in=3, N=1)
    _, grads = model.loss_and_grads(params, x, y, h0=h0)
    name, err, _, _ = rtrl_row(model, params, x, y, h0, grads)
    assert "does not apply: a backward direction is not causal" in name and err != err

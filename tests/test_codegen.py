"""Generated code: readable, registered, stable, and right in float32 too."""
import linecache
from pathlib import Path

import numpy as np
import pytest

import symrnn as sr
from symrnn.checks import max_error

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("part", ["forward", "backward"])
def test_generated_source_is_pinned(part):
    """A printer or codegen change shows up in review as a diff of this file."""
    code = sr.Model("rnn-tanh", D=2, H=3, K=2).cell_code
    assert getattr(code, f"{part}_source") == (GOLDEN / f"rnn-tanh-{part}.py.txt").read_text()


def test_generated_code_is_registered_for_tracebacks():
    code = sr.Model("lstm", D=2, H=3, K=2).cell_code
    filename = code.backward.__code__.co_filename
    assert filename == "<symrnn-bptt-lstm-backward>"
    assert linecache.getline(filename, 1).startswith("def backward(")
    assert "Generated source" in code.backward.__doc__


def test_lstm_products_are_stacked():
    """All four gates' recurrent products are one product per step, in both passes."""
    code = sr.Model("lstm", D=2, H=3, K=2).cell_code
    assert code.forward_source.count("np.matmul(h__prev, G1") == 1
    assert "np.concatenate([U_i__p, U_f__p, U_g__p, U_o__p], axis=0)" in code.forward_source


def test_derivation_and_code_do_not_depend_on_T():
    """Deriving is per step: the same objects serve every sequence length."""
    model = sr.Model("gru", D=2, H=3, K=2)
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    first = model.cell_code
    for T in (1, 10, 100):
        model.loss_and_grads(params, rng.normal(size=(T, 2, 2)), rng.integers(0, 2, (T, 2)))
    assert model.cell_code is first
    assert "range(T" in first.backward_source and "T = " not in first.backward_source.replace("T, N =", "")


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru"])
def test_float32(cell):
    model = sr.Model(cell, D=3, H=4, K=3)
    p64 = model.init_params(0)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(10, 2, 3)), rng.integers(0, 3, (10, 2))
    l64, g64 = model.loss_and_grads(p64, x, y)
    l32, g32 = model.loss_and_grads(p32, x.astype(np.float32), y)
    assert all(g.dtype == np.float32 for g in g32.values())
    assert abs(l32 - l64) < 1e-4 * abs(l64)
    assert max_error(g32, g64)[0] < 1e-5


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "gru-reset-before", "mgu"])
def test_reused_arrays_never_leak_into_results(cell):
    """The generated code reuses its work arrays between calls; what a call returned stays put."""
    from strategies import make_cell

    model = sr.Model(make_cell(cell), D=2, H=3, K=2, architecture="many-to-many-delayed")
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    x1, y1 = rng.normal(size=(4, 2, 2)), rng.integers(0, 2, (3, 2))
    _, first = model.loss_and_grads(params, x1, y1)
    kept = {k: v.copy() for k, v in first.items()}
    model.loss_and_grads(params, rng.normal(size=(4, 2, 2)), rng.integers(0, 2, (3, 2)))
    for k in kept:
        assert np.array_equal(first[k], kept[k]), k
    assert all(np.array_equal(a, b) for a, b in zip(model.loss_and_grads(params, x1, y1)[1].values(), kept.values()))


def test_threads_get_their_own_work_arrays():
    from concurrent.futures import ThreadPoolExecutor

    model = sr.Model("lstm", D=3, H=4, K=3)
    params = model.init_params(0)
    rng = np.random.default_rng(1)
    problems = [(rng.normal(size=(30, 4, 3)), rng.integers(0, 3, (30, 4))) for _ in range(8)]
    expected = [model.loss_and_grads(params, x, y)[1]["W_f"] for x, y in problems]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: model.loss_and_grads(params, *p)[1]["W_f"], problems))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))

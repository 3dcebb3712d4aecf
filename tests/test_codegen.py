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
    assert code.forward_source.count("np.matmul(h_prev, G1") == 1
    assert "np.concatenate([U_i, U_f, U_g, U_o], axis=0)" in code.forward_source


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

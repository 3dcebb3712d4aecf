"""The decay study's compiled loops (numba backend): the forward as one compiled loop, the step
Jacobians of a chunk and the accumulators' steps (symrnn.decay.compiled_jacobians, compiled_steps).

Judged against the NumPy route (the reference, 1e-12 relative) and against Jacobians written by
hand (test_decay_cells' cells); a cell the compiled loops do not handle runs on NumPy."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, Phase, given, settings

import symrnn as sr
from symrnn.decay import InputSource, JacobianStream, decay_profile, make_params

pytest.importorskip("numba")

from fuzz_recipes import build_cell, cells_and_recipes
from test_decay_cells import LEAKY, log_norms, plain_cell, qr_exponents


def compiled_stream(model):
    with sr.using_backend("numba"):
        stream = JacobianStream(model)
    assert stream.compiled is not None, "the stream was not compiled"
    return stream


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    finite = np.isfinite(a)
    assert np.array_equal(finite, np.isfinite(b)) and np.array_equal(a[~finite], b[~finite], equal_nan=True)
    if not finite.any():
        return 0.0
    diff, scale = np.max(np.abs(a[finite] - b[finite])), np.max(np.abs(a[finite]))
    return float(diff / scale) if scale > 0 else float(diff)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_chunk_jacobians_agree_with_numpy(cell):
    model = sr.Model(cell, D=3, H=5, loss="upstream")
    params = make_params(model, "pytorch", 1.0, seed=0)
    X = InputSource("random", T=40, N=2, D=3, seed=1).chunk(0, 40)
    rng = np.random.default_rng(1)
    state = {s: rng.uniform(-1, 1, (2, model.sizes[model.cell.states[s]])) for s in model.cell.states}
    ref, _, cache_ref = JacobianStream(model).evaluate(params, X, state)
    got, _, cache = compiled_stream(model).evaluate(params, X, state)
    assert got.C == ref.C == 40
    for n in range(2):
        assert rel(ref.full(n), got.full(n)) < 1e-13
    for s in ref.direct:
        if ref.direct[s] is not None:
            assert rel(ref.direct[s], got.direct[s]) < 1e-13
    for key in cache_ref:
        assert rel(cache_ref[key], cache[key]) < 1e-13


@pytest.mark.parametrize("cell, k", [("lstm", None), ("gru", None), ("lstm", 1), ("rnn-tanh", 2)])
def test_profile_agrees_with_numpy(cell, k):
    """Exponents (the whole spectrum: adaptive QR intervals, intervals redone), the norm curve, its
    blocks, the direct paths and the loss gradient's norm: 1e-12 relative."""
    model = sr.Model(cell, D=3, H=6, loss="upstream")
    params = make_params(model, "pytorch", 1.0, seed=0)
    stream = compiled_stream(model)
    k = stream.state_size if k is None else k
    ref = decay_profile(model, params, 1500, k=k, seed=3)
    got = decay_profile(model, params, 1500, k=k, seed=3, stream=stream)
    assert rel(ref.exponents, got.exponents) < 1e-12
    for name in ("log_spectral", "log_frobenius", "log_grad"):
        assert rel(getattr(ref, name), getattr(got, name)) < 1e-12, name
    for key, (spec, frob) in ref.blocks.items():
        assert rel(spec, got.blocks[key][0]) < 1e-12 and rel(frob, got.blocks[key][1]) < 1e-12
    for key, (spec, frob) in ref.direct.items():
        assert rel(spec, got.direct[key][0]) < 1e-12 and rel(frob, got.direct[key][1]) < 1e-12
    assert got.qr_count == ref.qr_count and got.meta == ref.meta
    acc_ref, acc = dict(ref.accuracy), dict(got.accuracy)
    for name in ("sum_identity_error", "max_interval_spread", "rounding_estimate"):
        a, b = acc_ref.pop(name), acc.pop(name)
        assert (a is None) == (b is None)
    assert acc == acc_ref
    if k == stream.state_size and cell == "lstm":
        assert got.accuracy["intervals_redone"] > 0 and got.accuracy["met"]


def test_leaky_cell_against_jacobians_by_hand():
    """0.5 h + 0.5 tanh(U x + W h + b): a direct term and a matrix term; exponents and norms as by hand."""
    update, by_hand = LEAKY
    H, D, T = 5, 3, 60
    model = sr.Model(plain_cell("leaky", update), D=D, H=H, loss="upstream")
    params = make_params(model, init="normal", scale=1.5, seed=1)
    x = np.random.default_rng(2).normal(size=(T, 1, D))
    h = np.random.default_rng(3).uniform(-1, 1, H)
    p = decay_profile(model, params, T, k=H, inputs=x, h0={"h": h}, transient=0, lags=range(1, T + 1),
                      stream=compiled_stream(model))
    jacobians = []
    for t in range(T):
        h, J = by_hand(params, x[t, 0], h)
        jacobians.append(J)
    np.testing.assert_allclose(p.exponents, qr_exponents(jacobians, H), rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.log_spectral, log_norms(jacobians), rtol=0, atol=1e-11)
    np.testing.assert_allclose(p.direct["h"][0], np.arange(1, T + 1) * np.log(0.5), rtol=1e-13)


def test_overflow_stops_at_the_same_step():
    model = sr.Model("rnn-relu", D=4, H=16, loss="upstream")
    params = make_params(model, init="normal", scale=2, seed=0)
    ref = decay_profile(model, params, 2000, k=4)
    got = decay_profile(model, params, 2000, k=4, stream=compiled_stream(model))
    assert ref.overflow is not None and got.overflow == ref.overflow
    assert rel(ref.exponents, got.exponents) < 1e-12
    assert rel(ref.log_spectral, got.log_spectral) < 1e-12


def test_a_matrix_applied_twice_stays_on_numpy():
    """``W @ (W @ h)`` gives a term ``W**2``: not a compiled loop's shape; the stream is NumPy's."""
    cell = sr.Cell("twice")
    x, h = cell.input("x"), cell.state("h")
    U, W = cell.param("U", "H", "D"), cell.param("W", "H", "H")
    cell.update(h, sp.tanh(U @ x + W @ (W @ h)))
    model = sr.Model(cell, D=2, H=3, loss="upstream")
    with sr.using_backend("numba"):
        stream = JacobianStream(model)
    assert stream.compiled is None
    params = make_params(model, init="normal", seed=0)
    p = decay_profile(model, params, 30, k=3, stream=stream)
    assert np.isfinite(p.exponents).all()


def test_numpy_backend_builds_no_compiled_loops():
    with sr.using_backend("numpy"):
        assert JacobianStream(sr.Model("gru", D=2, H=3, loss="upstream")).compiled is None


@pytest.mark.parametrize("ord", [2, "fro"])
def test_log_norms_of_products_compiled(ord):
    """engine.jacobians' loop over the steps, compiled under the numba backend: the NumPy loop's
    numbers to 1e-12, the transient growth of CONVENTIONS.md, no underflow at T = 20000."""
    from symrnn.engine import jacobians

    rng = np.random.default_rng(4)
    J = rng.normal(size=(300, 5, 5)) * 0.4
    eye = np.broadcast_to(0.01 * np.eye(3), (20000, 3, 3))
    with sr.using_backend("numpy"):
        ref = jacobians.log_norms_of_products(J, ord)
        small_ref = jacobians.log_norms_of_products(eye, ord)
    with sr.using_backend("numba"):
        assert jacobians._compiled_loop() is not None
        got = jacobians.log_norms_of_products(J, ord)
        W = np.array([[0.5, 10.0], [0.0, 0.5]])
        norms = np.exp(jacobians.log_norms_of_products(np.broadcast_to(W, (20, 2, 2)), 2))
        small = jacobians.log_norms_of_products(eye, ord)
    assert rel(ref, got) < 1e-12
    for k, v in {1: 10.02, 2: 10.01, 3: 7.50, 5: 3.13, 10: 0.195, 20: 3.8e-4}.items():
        assert norms[20 - k] == pytest.approx(v, rel=5e-3)
    assert rel(small_ref, small) < 1e-12 and np.isfinite(small).all()
    assert small[0] == pytest.approx(20000 * np.log(0.01) + (0.5 * np.log(3) if ord == "fro" else 0), rel=1e-9)


def test_a_user_function_numba_cannot_compile_gives_the_numpy_numbers():
    class odd_decay_fn(sp.Function):
        def fdiff(self, argindex=1):
            return sp.Integer(1)

    sr.register_function(odd_decay_fn, lambda a: np.asarray([v for v in np.atleast_1d(a)]).reshape(np.shape(a)) + 0.0)
    cell = sr.Cell("odd_decay")
    x, h = cell.input(), cell.state("h")
    W, U = cell.param("W", "H", "H"), cell.param("U", "H", "D")
    cell.update(h, sr.tanh(odd_decay_fn(U @ x) + W @ h))
    model = sr.Model(cell, D=2, H=3, loss="upstream")
    params = make_params(model, seed=0)
    ref = decay_profile(model, params, 300, k=3)
    with sr.using_backend("numba"):
        stream = JacobianStream(model)
    with pytest.warns(RuntimeWarning, match="NumPy"):
        got = decay_profile(model, params, 300, k=3, stream=stream)
    assert rel(ref.exponents, got.exponents) < 1e-12 and rel(ref.log_spectral, got.log_spectral) < 1e-12


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
@given(case=cells_and_recipes())
def test_fuzzed_user_cells_decay_the_same(case):
    """Fuzzed user cells (names from the hostile pool, registered functions, mixed terms): the
    compiled loops are generated from their Jacobians' terms, and give the NumPy route's numbers."""
    p = case.problem
    try:
        with sr.using_backend("numpy"):
            model = sr.Model(build_cell(case.recipe), D=p.D, H=p.H, loss="upstream")
    except sr.SymRNNError:
        return  # refused at definition
    rng, sizes = np.random.default_rng(p.seed), {"D": p.D, "H": p.H, "K": p.K}
    params = {d.name: rng.uniform(-p.scale, p.scale, size=tuple(sizes[s] for s in d.shape)) for d in case.recipe.params}
    with sr.using_backend("numba"):
        stream = JacobianStream(model)
    if stream.zero:
        return
    S = stream.state_size
    ref = decay_profile(model, params, 30, k=S, transient=0, lags=range(1, 31))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a function Numba cannot compile: NumPy
        got = decay_profile(model, params, 30, k=S, transient=0, lags=range(1, 31), stream=stream)
    assert got.overflow == ref.overflow, repr(case)
    # a singular step Jacobian: its null directions' exponents are -inf exactly, which rounding
    # makes -inf or about ln(1e-16) per step on either route; the others agree
    a, b = ref.exponents, got.exponents
    determined = a > -20
    assert np.array_equal(determined, b > -20), repr(case)
    assert rel(a[determined], b[determined]) < 1e-11, repr(case)
    assert rel(ref.log_spectral, got.log_spectral) < 1e-11, repr(case)

"""The decay study's implicit step Jacobians (issue 22): ``J_t M`` applied term by term from the
vectors of the derivation's terms, never forming ``J_t`` (symrnn.decay.compiled_steps.apply_terms),
the rank-one reading of the running product and the determinants by a Schur complement.

Judged against the NumPy route (dense Jacobians, the reference) and against ``np.linalg.slogdet``
and ``np.linalg.svd`` of the dense matrices."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

import symrnn as sr
from symrnn.decay import InputSource, JacobianStream, decay_profile, make_params
from symrnn.decay.accumulators import Product, log_abs_dets

pytest.importorskip("numba")

from fuzz_recipes import build_cell, cells_and_recipes
from test_decay_compiled import compiled_stream, rel


def first_chunk(stream, params, T, N=1, implicit=True, seed=1):
    model = stream.model
    rng = np.random.default_rng(seed)
    state = {s: rng.uniform(-1, 1, (N, model.sizes[model.cell.states[s]])) for s in model.cell.states}
    src = InputSource("random", T=T, N=N, D=model.sizes["D"], seed=seed)
    return next(stream.stream(params, src, state, implicit=implicit))[1]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
@pytest.mark.parametrize("width", [1, 3, 12])
def test_terms_applied_agree_with_the_dense_jacobian(cell, width):
    """``J_t M`` from the terms' vectors against the NumPy route's dense ``J_t`` times ``M``: 1e-13,
    for a few columns (a matrix-vector product each) and many (one matrix product)."""
    model = sr.Model(cell, D=3, H=5, loss="upstream")
    params = make_params(model, "pytorch", 1.0, seed=0)
    chunk = first_chunk(compiled_stream(model), params, 40, N=2)
    assert chunk.vectors is not None and chunk.dense is None
    ref = first_chunk(JacobianStream(model), params, 40, N=2)
    M = np.random.default_rng(5).standard_normal((chunk.layout.size, width))
    for n in range(2):
        full = ref.full(n)
        for t in range(chunk.C):
            assert rel(full[t] @ M, chunk.apply(t, M, n)) < 1e-13
        assert rel(full, chunk.full(n)) < 1e-13


@pytest.mark.parametrize("cell, k", [("lstm", 1), ("lstm", 3), ("gru", 2), ("rnn-tanh", 1)])
def test_profile_with_implicit_jacobians_agrees_with_numpy(cell, k):
    """The top exponents (a few columns: the implicit route) and the whole norm curve, 1e-12."""
    model = sr.Model(cell, D=3, H=12, loss="upstream")
    params = make_params(model, "pytorch", 1.0, seed=0)
    stream = compiled_stream(model)
    ref = decay_profile(model, params, 2500, k=k, seed=3, step_bound=False)
    got = decay_profile(model, params, 2500, k=k, seed=3, step_bound=False, stream=stream)
    assert stream._implicit, "the run did not take the implicit route"
    assert rel(ref.exponents, got.exponents) < 1e-12
    for name in ("log_spectral", "log_frobenius", "log_grad"):
        assert rel(getattr(ref, name), getattr(got, name)) < 1e-12, name
    for key, (spec, frob) in ref.blocks.items():
        assert rel(spec, got.blocks[key][0]) < 1e-12 and rel(frob, got.blocks[key][1]) < 1e-12
    for key, (spec, frob) in ref.direct.items():
        assert rel(spec, got.direct[key][0]) < 1e-12 and rel(frob, got.direct[key][1]) < 1e-12
    assert got.qr_count == ref.qr_count and got.meta == ref.meta


def test_the_whole_spectrum_keeps_the_dense_route():
    """Determinants (the identity check) need the dense Jacobians: no implicit route there."""
    model = sr.Model("gru", D=2, H=3, loss="upstream")
    stream = compiled_stream(model)
    decay_profile(model, make_params(model, seed=0), 100, k=None, stream=stream)
    assert not stream._implicit


def test_an_overflow_stops_the_implicit_route_at_the_same_step():
    model = sr.Model("rnn-relu", D=4, H=16, loss="upstream")
    params = make_params(model, init="normal", scale=2, seed=0)
    ref = decay_profile(model, params, 2000, k=1, step_bound=False)
    got = decay_profile(model, params, 2000, k=1, step_bound=False, stream=compiled_stream(model))
    assert ref.overflow is not None and got.overflow == ref.overflow
    assert rel(ref.exponents, got.exponents) < 1e-12 and rel(ref.log_spectral, got.log_spectral) < 1e-12


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
@given(case=cells_and_recipes())
def test_fuzzed_user_cells_apply_their_terms(case):
    """Fuzzed user cells: their terms applied one by one give the dense Jacobians' products."""
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
    if stream.zero or stream.compiled is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a function Numba cannot compile: NumPy
        chunk = first_chunk(stream, params, 20)
    ref = first_chunk(JacobianStream(model), params, 20)
    if chunk.vectors is None:  # the cell's compiled loops gave up (Numba) or a matrix's shape is not its block's
        return
    assert chunk.C == ref.C, repr(case)
    M = rng.standard_normal((chunk.layout.size, 2))
    full = ref.full()
    for t in range(chunk.C):
        assert rel(full[t] @ M, chunk.apply(t, M)) < 1e-12, repr(case)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_log_dets_by_the_schur_complement(cell):
    """``ln|det J_t|`` (the whole spectrum's identity check) against the dense ``slogdet``: the LSTM's
    diagonal ``c <- c`` block is eliminated first; the GRU (no such block) takes the whole LU."""
    model = sr.Model(cell, D=3, H=7, loss="upstream")
    params = make_params(model, "pytorch", 1.0, seed=0)
    chunk = first_chunk(JacobianStream(model), params, 50, implicit=False)
    ref = np.linalg.slogdet(chunk.full()[:chunk.C])[1]
    assert rel(ref, log_abs_dets(chunk)) < 1e-12
    if cell == "lstm":  # a forget gate at zero: F is singular there; that step takes the whole LU
        chunk.diag = {key: np.array(v) for key, v in chunk.diag.items()}  # writable copies
        chunk.diag[("c", "c")][3, 0, 2] = 0.0
        chunk.diag[("h", "c")][3, 0, 2] = 0.0
        got = log_abs_dets(chunk)
        ref = np.linalg.slogdet(chunk.full()[:chunk.C])[1]
        assert rel(ref[np.isfinite(ref)], got[np.isfinite(ref)]) < 1e-12
        assert np.array_equal(np.isfinite(ref), np.isfinite(got))


def test_rank_one_reading_against_the_svd():
    """A product of rank one, ``M = u b``: its norms and its blocks' as the SVD gives them."""
    rng = np.random.default_rng(0)
    P = Product(6)
    P.U, P.B = rng.standard_normal((6, 1)) * 3.0, rng.standard_normal((1, 6)) * 1e-3
    P._s = 2.5
    M = np.exp(P.log_scale) * P.U @ P.B
    sig, log_scale = P.read()
    np.testing.assert_allclose(np.exp(log_scale) * sig, np.linalg.svd(M, compute_uv=False)[:1], rtol=1e-14)
    np.testing.assert_allclose(np.exp(P.log_scale) * P.U @ P.B, M, rtol=1e-14)
    n2, nf = P.block_norms(slice(0, 2), slice(3, 6))
    sub = np.linalg.svd(M[0:2, 3:6], compute_uv=False)
    np.testing.assert_allclose(np.exp(P.log_scale) * np.array([n2, nf]), [sub[0], np.sqrt(np.sum(sub ** 2))],
                               rtol=1e-14)


"""A batch run in parts on several threads gives the gradients of the batch in one piece."""
import numpy as np
import pytest

import symrnn as sr
from symrnn.models import tape, threads


@pytest.fixture
def parts(monkeypatch):
    """Every batch of 3 rows or more cut into parts (uneven ones with 7 rows), whatever its size."""
    monkeypatch.setattr(threads, "MIN_ROWS", 1)
    monkeypatch.setattr(threads, "MIN_WORK", 1)
    calls = []
    real = tape.in_parts

    def counted(jobs):
        calls.append(len(jobs))
        return real(jobs)
    monkeypatch.setattr(tape, "in_parts", counted)
    yield calls
    sr.set_threads(None)


def one_piece_and_parts(run, n=3, calls=None):
    sr.set_threads(1)
    whole = run()
    assert not calls
    sr.set_threads(n)
    cut = run()
    again = run()  # the parts' reused arrays do not meet
    assert calls and all(c >= 2 for c in calls), "the batch was not cut into parts"
    return whole, cut, again


def assert_close(a, b, what):
    la, ga = a[0], a[1]
    lb, gb = b[0], b[1]
    assert abs(la - lb) <= 1e-13 * max(1.0, abs(la)), what
    assert sorted(ga) == sorted(gb), what
    for k in ga:
        scale = max(1.0, float(np.abs(ga[k]).max()))
        err = float(np.abs(np.asarray(ga[k]) - np.asarray(gb[k])).max()) / scale
        assert err <= 1e-13, f"{what}: {k} differs by {err:.2e}"


CELLS = ["rnn-tanh", "lstm", "gru", "min-gru", "lru", "slstm", "mlstm", "s6"]


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_in_parts_agrees_with_one_piece(parts, cell):
    rng = np.random.default_rng(1)
    model = sr.Model(cell, D=3, H=4, K=3, loss="cross-entropy")
    params = model.init_params(seed=2)
    x, y = rng.normal(size=(6, 7, 3)), rng.integers(0, 3, (6, 7))
    mask = rng.random((6, 7)) < 0.8
    h0 = {s: rng.normal(size=(7, model.state_size(s))) * 0.1 for s in model.state_names}
    if cell == "mlstm":
        h0["m"] = np.zeros_like(h0["m"])
    whole, cut, again = one_piece_and_parts(lambda: model.loss_and_grads(params, x, y, h0=h0, mask=mask), calls=parts)
    assert_close(whole, cut, cell)
    assert_close(whole, again, cell + " (second call)")


def test_final_gradients_and_the_cache_of_parts(parts):
    rng = np.random.default_rng(3)
    model = sr.Model("lstm", D=3, H=4, loss="upstream")
    params = model.init_params(seed=0)
    x, g = rng.normal(size=(5, 9, 3)), rng.normal(size=(5, 9, 4))
    final = {"c": rng.normal(size=(9, 4)), "h": rng.normal(size=(9, 4))}
    whole, cut, _ = one_piece_and_parts(lambda: model.loss_and_grads(params, x, g, final_grads=final), calls=parts)
    assert_close(whole, cut, "final_grads")
    sr.set_threads(1)
    *_, cache_whole = model._loss_grads_and_cache(params, x, g)
    cache_whole = {k: np.array(v) for k, v in cache_whole.items()}
    sr.set_threads(4)
    *_, cache_cut = model._loss_grads_and_cache(params, x, g)
    assert sorted(cache_cut) == sorted(cache_whole)
    for k, v in cache_whole.items():
        np.testing.assert_allclose(cache_cut[k], v, rtol=1e-14, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("merge", ["concat", "max"])
def test_bidirectional_and_stacked_in_parts(parts, merge):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 8, 3)), rng.integers(0, 2, (5, 8))
    for model in (sr.BidirectionalModel("gru", D=3, H=4, K=2, merge=merge),
                  sr.StackedModel("lstm", D=3, H=4, K=2, num_layers=2)):
        params = model.init_params(seed=1)
        whole, cut, _ = one_piece_and_parts(lambda: model.loss_and_grads(params, x, y), n=2, calls=parts)
        parts.clear()
        assert_close(whole, cut, f"{type(model).__name__} {merge}")


def test_seq2seq_with_attention_and_lengths_in_parts(parts):
    rng = np.random.default_rng(6)
    src, tin, tout = rng.integers(0, 6, (5, 7)), rng.integers(0, 5, (4, 7)), rng.integers(0, 5, (4, 7))
    model = sr.Seq2Seq("lstm", src_vocab=6, tgt_vocab=5, E=3, H=4, bidirectional=True, attention="general")
    params = model.init_params(seed=7)
    lengths = np.array([5, 3, 4, 5, 2, 5, 1])
    whole, cut, _ = one_piece_and_parts(lambda: model.loss_and_grads(params, src, tin, tout, src_lengths=lengths),
                                          calls=parts)
    assert_close(whole, cut, "seq2seq")


def test_fused_backend_in_parts(parts):
    pytest.importorskip("numba")
    rng = np.random.default_rng(8)
    with sr.using_backend("numba"):
        model = sr.Model("gru", D=3, H=4, loss="upstream").compile()
    params = model.init_params(seed=0)
    x, g = rng.normal(size=(5, 6, 3)), rng.normal(size=(5, 6, 4))
    whole, cut, _ = one_piece_and_parts(lambda: model.loss_and_grads(params, x, g), calls=parts)
    assert_close(whole, cut, "numba")


def test_small_batches_run_in_one_piece():
    sr.set_threads(8)
    try:
        assert threads.batch_parts(2, 10**6) is None  # too few rows
        assert threads.batch_parts(64, 2) is None  # too little work per step
        cut = threads.batch_parts(32, 256)
        assert [(p.start, p.stop) for p in cut] == [(0, 16), (16, 32)]
        sr.set_threads(1)
        assert threads.batch_parts(10**4, 10**4) is None
    finally:
        sr.set_threads(None)


def test_an_error_in_a_part_is_raised_and_blas_is_given_back(parts):
    before = threads._blas["users"]

    def fails():
        raise ValueError("from a part")
    with pytest.raises(ValueError, match="from a part"):
        threads.in_parts([lambda: 1, fails])
    assert threads._blas["users"] == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_threads_refuses_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match="whole number"):
        sr.set_threads(bad)


def test_the_environment_chooses_the_threads(monkeypatch):
    monkeypatch.setenv("SYMRNN_THREADS", "3")
    assert sr.threads() == 3
    monkeypatch.setenv("SYMRNN_THREADS", "many")
    with pytest.raises(ValueError, match="SYMRNN_THREADS='many'"):
        sr.threads()
    monkeypatch.setenv("SYMRNN_THREADS", "0")
    with pytest.raises(ValueError, match="1 or more"):
        sr.threads()


def test_a_forked_child_runs_parts_of_its_own(parts):
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    sr.set_threads(2)
    model = sr.Model("gru", D=3, H=4, loss="upstream")
    params = model.init_params(seed=0)
    x, g = np.ones((3, 6, 3)), np.ones((3, 6, 4))
    here = model.loss_and_grads(params, x, g)  # the parent's pool exists now
    _FORKED["run"] = lambda: model.loss_and_grads(params, x, g)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        there = pool.apply_async(_run_forked).get(timeout=60)
    assert_close(here, there, "forked child")


_FORKED = {}


def _run_forked():
    return _FORKED["run"]()

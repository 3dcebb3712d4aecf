"""The fused backend (symrnn.engine.fused): the same numbers as the NumPy code, its disk cache, and
life without Numba.

Both backends run every built-in cell, a few fuzzed user cells (``fuzz_recipes``), stacked and
bidirectional models and a seq2seq model with attention; the loss and every gradient agree to
1e-13 relative (largest difference over the largest entry).  The NumPy backend is the
reference; it is itself checked against independent routes elsewhere.  Numba compiles each
cell once per test process (the cache directory is fresh per process, see conftest.py), which
makes this file take tens of seconds.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

import symrnn as sr
from symrnn import cache
from symrnn.engine import fused

numba = pytest.importorskip("numba")

from fuzz_recipes import cells_and_recipes

TOL = 1e-13
ROOT = Path(__file__).resolve().parents[1]


def rel(a, b, floor=0.0):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.max(np.abs(b)) if b.size else 0.0, floor)
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b), initial=0.0))


def both(build, run):
    """``run(build())`` under each backend; the numba run must have built fused kernels."""
    with sr.using_backend("numpy"):
        reference = run(build())
    before = fused.FusedCode.built
    with sr.using_backend("numba"):
        result = run(build())
    assert fused.FusedCode.built > before, "no block was fused"
    return reference, result


def assert_same(reference, result, what=""):
    (loss_a, grads_a), (loss_b, grads_b) = reference, result
    assert abs(loss_a - loss_b) <= TOL * abs(loss_a), what
    assert set(grads_a) == set(grads_b)
    # a gradient that is exactly zero in exact arithmetic (sLSTM's m0 and, from zero c0 and n0, b_i) is
    # rounding noise on both backends: it is measured against a thousandth of the largest gradient
    floor = 1e-3 * max((float(np.max(np.abs(g), initial=0.0)) for g in grads_a.values()), default=0.0)
    worst = max(((rel(grads_b[k], grads_a[k], floor), k) for k in grads_a), default=(0.0, None))
    assert worst[0] <= TOL, f"{what}: grads[{worst[1]!r}] differs by {worst[0]:.2e}"


@pytest.mark.parametrize("cell", sorted(set(sr.BUILTIN_CELLS) - {"mlstm"}))  # H=5: mlstm (heads of 2) is tested
def test_builtin_cells_agree(cell):  # on both backends in test_matrix_cells.py
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3, 4)), rng.integers(0, 3, size=(7, 3))
    h0 = rng.normal(size=(3, 5))

    def run(model):  # the output state's initial value, where the cell reads it back (LRU's, SRU's, S6's: no)
        read = model.out in model.cell.states_read_back
        return model.loss_and_grads(model.init_params(seed=2, scale=0.8), x, y,
                                    h0=h0[:, :model.state_size(model.out)] if read else None)
    assert_same(*both(lambda: sr.Model(cell, D=4, H=5, K=3), run), cell)


def test_float32_agrees_to_its_precision():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 2, 3)).astype(np.float32), rng.integers(0, 2, size=(5, 2))

    def run(model):
        return model.loss_and_grads(model.init_params(seed=1, dtype=np.float32), x, y)
    (loss_a, grads_a), (loss_b, grads_b) = both(lambda: sr.Model("lstm", D=3, H=4, K=2), run)
    assert grads_b["W_f"].dtype == np.float32
    assert abs(loss_a - loss_b) <= 1e-5 * abs(loss_a)
    assert max(rel(grads_b[k], grads_a[k]) for k in grads_a) <= 1e-5


@pytest.mark.parametrize("bidirectional,merge,layers", [(True, "concat", 1), (True, "mul", 2), (False, "sum", 2)])
def test_stacked_and_bidirectional_agree(bidirectional, merge, layers):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 2, 3)), rng.integers(0, 3, size=(6, 2))

    def build():
        return sr.StackedModel("gru", D=3, H=4, K=3, num_layers=layers, bidirectional=bidirectional, merge=merge)

    def run(model):
        return model.loss_and_grads(model.init_params(seed=5), x, y)
    assert_same(*both(build, run), f"{layers} layers, bidirectional={bidirectional}, {merge}")


def test_seq2seq_with_attention_agrees():
    rng = np.random.default_rng(6)
    src, tin, tout = rng.integers(0, 6, (5, 2)), rng.integers(0, 5, (4, 2)), rng.integers(0, 5, (4, 2))

    def build():
        return sr.Seq2Seq("lstm", src_vocab=6, tgt_vocab=5, E=3, H=4, num_layers=2, bidirectional=True,
                          attention="general")

    def run(model):
        return model.loss_and_grads(model.init_params(seed=7, scale=0.9), src, tin, tout)
    assert_same(*both(build, run), "seq2seq")


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
@given(case=cells_and_recipes())
def test_fuzzed_user_cells_agree(case):
    try:
        with sr.using_backend("numpy"):
            model = case.build_model()
    except sr.SymRNNError:
        return  # refused at definition: nothing to run
    data = case.data()

    def run(m):
        return m.loss_and_grads(data.params, data.x, data.y, h0=data.h0)
    reference = run(model)
    with sr.using_backend("numba"):
        other = case.build_model()
        result = run(other)
    assert_same(reference, result, repr(case))


def test_the_kernels_are_printed_from_the_terms():
    with sr.using_backend("numba"):
        code = sr.Model("gru", D=2, H=3, K=2).cell_code
    assert code.backend == "numba"
    kernels = code.fused.texts["kernels"]
    assert "def forward_step_" in kernels and "def backward_step_" in kernels
    assert "sigmoid__fn(b_r__p[j__] + P0[t, n__, 0 + j__] + P1[t, n__, 0 + j__])" in kernels
    assert "np.matmul(Q1[t], G1, out=R0)" in code.fused.texts["backward"]
    assert "Generated source" in code.forward.__doc__ and "def forward_step_" in code.forward.__doc__


def test_a_user_function_numba_cannot_compile_falls_back_with_a_warning():
    import sympy as sp

    class odd_fn(sp.Function):
        def fdiff(self, argindex=1):
            return sp.Integer(1)

    sr.register_function(odd_fn, lambda a: np.asarray([v for v in np.atleast_1d(a)]).reshape(np.shape(a)) + 0.0)
    cell = sr.Cell("odd")
    x, h = cell.input(), cell.state("h")
    W, U = cell.param("W", "H", "H"), cell.param("U", "H", "D")
    cell.update(h, sr.tanh(odd_fn(U @ x) + W @ h))
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(3, 2, 2)), rng.integers(0, 2, size=(3, 2))
    with sr.using_backend("numpy"):
        reference = sr.Model(cell, D=2, H=3, K=2)
        want = reference.loss_and_grads(reference.init_params(), xs, ys)
    with sr.using_backend("numba"):
        model = sr.Model(cell, D=2, H=3, K=2)
        with pytest.warns(RuntimeWarning, match="runs on NumPy"):
            got = model.loss_and_grads(model.init_params(), xs, ys)
    assert_same(want, got)


def test_unknown_backend_is_refused():
    with pytest.raises(sr.BackendError, match="expected one of"):
        sr.set_backend("cuda")


def _run(code, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


def test_without_numba_auto_falls_back_and_numba_says_how_to_install():
    code = """
        import sys
        sys.modules['numba'] = None          # as if Numba were not installed
        import numpy as np, symrnn as sr
        m = sr.Model('lstm', D=2, H=3, K=2)
        loss, grads = m.loss_and_grads(m.init_params(), np.ones((3, 1, 2)), np.zeros((3, 1), int))
        print(sr.backend(), m.cell_code.backend)
        try:
            sr.set_backend('numba'); sr.Model('gru', D=2, H=3, K=2).cell_code
        except sr.BackendError as e:
            print('refused:', e)
    """
    done = _run(code, {"SYMRNN_BACKEND": "auto"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "numpy numpy"
    assert lines[1].startswith("refused:") and "pip install symrnn[fast]" in lines[1]


_BUILD = """
    import numpy as np, symrnn as sr
    sr.set_backend('numba')
    m = sr.Model('rnn-relu', D=2, H=3, K=2)
    loss, grads = m.loss_and_grads(m.init_params(), np.ones((3, 2, 2)), np.zeros((3, 2), int))
    print(m.cell_code.backend, repr(loss), repr(float(grads['W'].sum())))
"""


@pytest.mark.slow  # three processes compiling at once: half a minute on two cores
def test_concurrent_processes_share_one_cache_entry(tmp_path):
    env = {"SYMRNN_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_BUILD)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
            for _ in range(3)]
    outputs = [r.communicate(timeout=300) for r in runs]
    assert all(r.returncode == 0 for r in runs), [e for _o, e in outputs]
    assert len({o for o, _e in outputs}) == 1 and outputs[0][0].startswith("numba")
    files = sorted((tmp_path / "fused").glob("*.py"))
    assert files and all(f.read_text().startswith("import math") for f in files)
    again = _run(_BUILD, env)
    assert again.returncode == 0 and again.stdout == outputs[0][0]


@pytest.mark.slow  # four processes in turn
def test_a_corrupt_entry_is_rebuilt(tmp_path):
    env = {"SYMRNN_CACHE_DIR": str(tmp_path)}
    first = _run(_BUILD, env)
    assert first.returncode == 0, first.stderr
    kernels = sorted((tmp_path / "fused").glob("*.py"))
    machine_code = sorted((tmp_path / "fused" / "__pycache__").glob("*.nb*"))
    assert kernels and machine_code
    for path in machine_code:  # Numba's entries cut short
        path.write_bytes(path.read_bytes()[:25])
    second = _run(_BUILD, env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    for path in kernels:  # the kernels' source cut short
        path.write_text(path.read_text()[:40])
    third = _run(_BUILD, env)
    assert third.returncode == 0, third.stderr
    assert third.stdout == first.stdout
    assert all(p.read_text().startswith("import math") and len(p.read_text()) > 40 for p in kernels)
    fourth = _run(_BUILD, env)  # and the rebuilt entry serves the next process
    assert fourth.returncode == 0 and fourth.stdout == first.stdout


def test_the_cache_off_still_compiles(monkeypatch):
    monkeypatch.setenv("SYMRNN_NO_CACHE", "1")
    assert not cache.enabled()
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 2, 2)), rng.integers(0, 2, size=(4, 2))

    def run(model):
        return model.loss_and_grads(model.init_params(seed=3), x, y)
    assert_same(*both(lambda: sr.Model("rnn-sigmoid", D=2, H=3, K=2), run))


def test_a_cell_with_unicode_names_and_a_vector_update_is_fused():
    """Found by the fuzz suite under SYMRNN_BACKEND=numba: kernel arguments named after any
    identifier (``α__S``), and a state set to a parameter vector."""
    cell = sr.Cell("unicode")
    x, a, h = cell.input("λ"), cell.state("α"), cell.state("h")
    b, W, U = cell.param("β", "H"), cell.param("W", "H", "H"), cell.param("U", "H", "D")
    cell.update(a, b)
    cell.update(h, sr.tanh(U @ x + W @ h) * a)
    rng = np.random.default_rng(8)
    xs, ys = rng.normal(size=(4, 2, 3)), rng.integers(0, 2, size=(4, 2))

    def run(model):
        return model.loss_and_grads(model.init_params(seed=9), xs, ys)
    assert_same(*both(lambda: sr.Model(cell, D=3, H=2, K=2), run))

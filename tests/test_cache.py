"""The on-disk cache of generated code: built once, read by the next process, never trusted when
damaged, bypassed on request, and safe when processes write at once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import symrnn as sr
from symrnn import cache
from symrnn.engine.codegen import BlockCode

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMRNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SYMRNN_NO_CACHE", raising=False)
    return tmp_path / "cache"


def counting(value):
    calls = []

    def build():
        calls.append(1)
        return value
    return build, calls


def entries(folder, kind="*"):
    return sorted(folder.glob(f"{kind}/*.json"))


def test_built_once_then_read(folder):
    build, calls = counting({"source": "def f(): pass\n", "n": [1, 2]})
    assert cache.get_or_build("t", "key", build) == {"source": "def f(): pass\n", "n": [1, 2]}
    assert cache.get_or_build("t", "key", build) == {"source": "def f(): pass\n", "n": [1, 2]}
    assert len(calls) == 1 and len(entries(folder)) == 1
    cache.get_or_build("t", "another key", build)
    assert len(calls) == 2 and len(entries(folder)) == 2


@pytest.mark.parametrize("damage", ["cut short", "value edited", "key edited", "not json", "empty",
                                    "other environment", "checksum removed", "binary"])
def test_a_damaged_entry_is_rebuilt_never_trusted(folder, damage):
    build, calls = counting("the right value")
    cache.get_or_build("t", "key", build)
    (path,) = entries(folder)
    text = path.read_text()
    entry = json.loads(text)
    if damage == "cut short":
        path.write_text(text[: len(text) // 2])
    elif damage == "value edited":
        entry["value"] = "a wrong value"
        path.write_text(json.dumps(entry))
    elif damage == "key edited":
        entry["key"] = "another key"
        path.write_text(json.dumps(entry))
    elif damage == "not json":
        path.write_text("def f(): pass")
    elif damage == "empty":
        path.write_text("")
    elif damage == "other environment":
        entry["environment"] = "symrnn 0.0.1"
        path.write_text(json.dumps(entry))
    elif damage == "checksum removed":
        del entry["sha256"]
        path.write_text(json.dumps(entry))
    else:
        path.write_bytes(b"\xff\xfe\x00garbage")
    assert cache.get_or_build("t", "key", build) == "the right value"
    assert len(calls) == 2
    assert json.loads(path.read_text())["value"] == "the right value"  # rewritten whole
    assert cache.get_or_build("t", "key", build) == "the right value" and len(calls) == 2


def test_bypassed_when_disabled(folder, monkeypatch):
    build, calls = counting("v")
    with cache.disabled():
        cache.get_or_build("t", "key", build)
        cache.get_or_build("t", "key", build)
    assert len(calls) == 2 and not folder.exists()
    monkeypatch.setenv("SYMRNN_NO_CACHE", "1")
    cache.get_or_build("t", "key", build)
    assert len(calls) == 3 and not folder.exists()
    monkeypatch.setenv("SYMRNN_NO_CACHE", "0")
    cache.get_or_build("t", "key", build)
    assert len(calls) == 4 and len(entries(folder)) == 1


def test_an_unwritable_folder_costs_time_not_results(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("SYMRNN_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be made
    monkeypatch.setattr(cache, "_OFF", [])
    build, calls = counting("v")
    assert cache.get_or_build("t", "key", build) == "v"
    assert cache.get_or_build("t", "key", build) == "v" and len(calls) == 2


def test_an_edited_symrnn_does_not_read_old_entries(folder, monkeypatch):
    build, calls = counting("v")
    cache.get_or_build("t", "key", build)
    monkeypatch.setattr(cache, "_environment", lambda: "symrnn with an edited codegen.py")
    cache.get_or_build("t", "key", build)
    assert len(calls) == 2 and len(entries(folder)) == 2


def _write_one(directory):
    os.environ["SYMRNN_CACHE_DIR"] = directory
    return [cache.get_or_build("race", "key", lambda: {"n": list(range(2000))}) == {"n": list(range(2000))}
            for _ in range(20)]


def test_processes_writing_at_once_leave_one_whole_entry(folder):
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_write_one, [str(folder)] * 8))
    assert all(all(r) for r in results)
    (path,) = entries(folder)
    assert json.loads(path.read_text())["value"] == {"n": list(range(2000))}
    assert not [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"]  # no temporary files left


def test_clear(folder):
    cache.get_or_build("t", "a", lambda: 1)
    cache.get_or_build("u", "b", lambda: 2)
    assert cache.clear() == 2 and not entries(folder)


def _block(cell):
    return BlockCode(cell.name, cell.equations, cell.input_symbol, cell.states, cell.params, cell.sizes)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn-tanh"])
def test_a_cached_block_is_the_same_code(folder, name):
    cell = sr.builtin_cell(name)
    with cache.disabled():
        fresh = _block(cell)
    first = _block(cell)
    assert len(entries(folder, "block")) == 1
    again = _block(cell)
    assert "terms" not in vars(again)  # read from the cache: no symbolic work
    assert (again.forward_source, again.backward_source) == (fresh.forward_source, fresh.backward_source)
    assert (first.forward_source, first.backward_source) == (fresh.forward_source, fresh.backward_source)


def test_a_users_function_is_never_cached(folder):
    class cubic(sp.Function):
        def fdiff(self, argindex=1):
            return 3 * self.args[0] ** 2

    sr.register_function(cubic, lambda u: u ** 3)
    cell = sr.Cell("cubic-rnn")
    x, h = cell.input(), cell.state("h")
    W, U = cell.param("W", "H", "H"), cell.param("U", "H", "D")
    cell.update(h, cubic(U @ x + W @ h))
    _block(cell)
    assert not entries(folder, "block") and not entries(folder, "cell-language")


CHILD = """
import numpy as np, symrnn as sr
model = sr.Model("lstm", D=3, H=4, K=5)
rng = np.random.default_rng(0)
params = model.init_params(seed=1)
loss, grads = model.loss_and_grads(params, rng.normal(size=(6, 2, 3)), rng.integers(0, 5, size=(6, 2)))
np.savez(OUT, loss=loss, **grads)
"""


def test_a_new_process_reads_what_another_wrote(folder, tmp_path):
    env = dict(os.environ, SYMRNN_CACHE_DIR=str(folder), PYTHONPATH=str(ROOT))
    outs = []
    for k, extra in enumerate(({"SYMRNN_NO_CACHE": "1"}, {}, {})):
        out = tmp_path / f"run{k}.npz"
        subprocess.run([sys.executable, "-c", CHILD.replace("OUT", repr(str(out)))], env={**env, **extra},
                       check=True)
        outs.append(np.load(out))
        assert len(entries(folder, "block")) == (0 if k == 0 else 2)  # the cell's block and the readout's
    for key in outs[0].files:
        assert np.array_equal(outs[0][key], outs[1][key]) and np.array_equal(outs[0][key], outs[2][key])


def test_verify_no_cache_writes_nothing(folder, tmp_path):
    env = dict(os.environ, SYMRNN_CACHE_DIR=str(folder), PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "symrnn.cli", "verify", "symrnn.example_backprop:rnn_backward",
               "--cell", "rnn-tanh", "--layout", "cs231n", "--T", "3"]
    done = subprocess.run(command + ["--no-cache"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not entries(folder)
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert entries(folder)


def test_a_cells_checks_are_kept_and_its_mistakes_never(folder):
    def cell_with(expr_of):
        cell = sr.Cell("checked")
        x, h = cell.input(), cell.state("h")
        W, U = cell.param("W", "H", "H"), cell.param("U", "H", "D")
        cell.update(h, expr_of(U @ x, W @ h))
        return cell

    cell_with(lambda a, b: sr.tanh(a + b))
    assert entries(folder, "cell-language")
    for _ in range(2):  # refused every time: a failed check leaves no entry behind
        with pytest.raises(sr.CellDefinitionError, match="not finite"):
            cell_with(lambda a, b: sr.tanh(a + b) + sp.oo)


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "Symbol('x').__class__", "open('f')",
                                  "Add(Symbol('x'), lambda: 1)", "[x for x in ()]", "Dummy('x')"])
def test_stored_expressions_are_read_without_eval(text):
    from symrnn.engine.stored import from_srepr

    with pytest.raises(ValueError, match="not a stored expression"):
        from_srepr(text)


@pytest.mark.parametrize("name", sr.BUILTIN_CELLS)
def test_local_terms_read_back_equal_and_in_order(folder, name):
    from symrnn.engine.bptt import local_terms

    cell = sr.builtin_cell(name)
    with cache.disabled():
        fresh = local_terms(cell.equations)
    local_terms(cell.equations)
    again = local_terms(cell.equations)
    assert entries(folder, "local-terms")
    assert list(again) == list(fresh) and all(again[u] == fresh[u] for u in fresh)
    assert all(type(t.matrix) is type(f.matrix) and type(u) is type(v) for u, v in zip(again, fresh)
               for t, f in zip(again[u], fresh[v]))

"""The modules moved into the engine/ and models/ folders still import from their old paths, with
a DeprecationWarning that names the new one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

OLD = {"symrnn.model": "symrnn.models.model", "symrnn.codegen": "symrnn.engine.codegen",
       "symrnn.layouts": "symrnn.models.layouts", "symrnn.cell": "symrnn.engine.cell",
       "symrnn.wiring": "symrnn.models.wiring", "symrnn.bptt": "symrnn.engine.bptt"}


def run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("old, new", sorted(OLD.items()))
def test_an_old_path_warns_and_gives_the_same_objects(old, new):
    done = run(f"import warnings, importlib\n"
               f"with warnings.catch_warnings(record=True) as caught:\n"
               f"    warnings.simplefilter('always')\n"
               f"    old = importlib.import_module({old!r})\n"
               f"new = importlib.import_module({new!r})\n"
               f"assert [w.category.__name__ for w in caught] == ['DeprecationWarning'], caught\n"
               f"assert {new!r} in str(caught[0].message)\n"
               f"names = [n for n in dir(new) if not n.startswith('__')]\n"
               f"assert names and all(getattr(old, n) is getattr(new, n) for n in names)\n"
               f"print('ok')")
    assert done.stdout.strip() == "ok", done.stderr


def test_from_an_old_path_import_a_name():
    done = run("import warnings; warnings.simplefilter('ignore')\n"
               "from symrnn.model import Model\nfrom symrnn.layouts import to_torch, layout_for\n"
               "import symrnn\nassert Model is symrnn.Model\nprint('ok')")
    assert done.stdout.strip() == "ok", done.stderr


def test_an_unknown_module_is_still_unknown():
    done = run("import symrnn.no_such_module")
    assert "ModuleNotFoundError" in done.stderr

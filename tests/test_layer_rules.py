"""The layer rules of the package, read from the import statements of every module (``ast``).

* The engine (cells, symbolic BPTT, generated code, models and their wirings) imports no use
  of it (reports, the verifier, the decay studies, the oracles, the checks, the CLI, the demo).
* An oracle is an independent route to the gradients: it imports neither the symbolic BPTT
  (``bptt``) nor the generated code (``codegen``).
* No module imports another module's private name (``from .x import _name``).  A private
  *module* (``from ._x import y``, ``from . import _x``) may be imported only from inside the
  package that holds it (its own private module); from outside it counts as a private name.

A module's role comes from the folders it sits in (:data:`PACKAGE_ROLES`: everything under
``symrnn/report/`` is a use), else from its file name (:data:`STEM_ROLES`), so moving a module
between folders (``symrnn/engine/``, ``symrnn/models/``) needs no change here unless its role
changes.  Imports inside functions count too: a lazy import is still an import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "symrnn"

ENGINE, USE, ORACLE, SHARED = "engine", "use", "oracle", "shared"

# a folder that gives every module in it its role (also the role of its __init__)
PACKAGE_ROLES = {
    "report": USE, "verify": USE, "decay": USE, "oracles": ORACLE,
    "engine": ENGINE, "models": ENGINE,  # the engine's folders, when its modules move there
    "layouts": ENGINE,  # the weight layouts of frameworks, a package of the models
}

# module stem -> role, for modules in no folder of PACKAGE_ROLES; every module must have a role
STEM_ROLES = {
    # the engine: cells, symbolic BPTT, generated code, models
    "cell": ENGINE, "cells": ENGINE, "functions": ENGINE, "symbols": ENGINE, "bptt": ENGINE,
    "graph": ENGINE, "codegen": ENGINE, "jacobians": ENGINE, "losses": ENGINE, "model": ENGINE, "stored": ENGINE,
    # ... and the wirings of models
    "wiring": ENGINE, "seq2seq": ENGINE, "attention": ENGINE, "architectures": ENGINE,
    "truncated": ENGINE, "layouts": ENGINE, "protocol": ENGINE, "tape": ENGINE, "seq2seq_blocks": ENGINE,
    "seq2seq_derivation": ENGINE,
    # the uses of the engine
    "checks": USE, "cli": USE, "demo": USE, "userfiles": USE, "__main__": USE,
    # shared by every layer, or examples and helpers that import what they like
    "errors": SHARED, "validation": SHARED, "fileio": SHARED, "cache": SHARED, "clipping": SHARED,
    "examples": SHARED, "example_backprop": SHARED, "strategies": SHARED, "symrnn": SHARED,
}

# imports an oracle must not make: the routes it is independent of (module stems)
NOT_FOR_ORACLES = {"bptt", "codegen"}

# Violations that exist in code owned elsewhere, exactly as the test prints them.  The list only
# shrinks: a new violation fails the test, and so does an entry that no longer occurs (remove it).
KNOWN_VIOLATIONS: set = set()


def package_modules(root: Path = PACKAGE) -> dict:
    """``{dotted module name: path}`` of every module of the package at ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = package_modules()


def _short(module: str) -> str:
    """The name a rule reports: the stem, after the use or oracle folder that holds it
    (``verify.core``, ``model``): the same wherever the engine's folders put a module."""
    parts = module.split(".")[1:] or ["symrnn"]
    held = [k for k, part in enumerate(parts[:-1]) if PACKAGE_ROLES.get(part, ENGINE) != ENGINE]
    return ".".join(parts[held[0]:]) if held else parts[-1]


def role(module: str) -> str:
    parts = module.split(".")[1:] or ["symrnn"]
    for part in parts:
        if part in PACKAGE_ROLES:
            return PACKAGE_ROLES[part]
    if parts[-1] not in STEM_ROLES:
        raise AssertionError(f"{module} has no role: add {parts[-1]!r} to STEM_ROLES in tests/test_layer_rules.py")
    return STEM_ROLES[parts[-1]]


def imports(module: str, modules: dict):
    """``(imported module, imported name or None)`` for every import in ``module`` of a module of
    the package (``from .x import y``: ``("symrnn.x", "y")``, or ``("symrnn.x.y", None)`` when ``y``
    is a module)."""
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    bound = {}  # a name bound to a module of the package: its attributes are imported names too
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "symrnn":
                    bound[alias.asname] = alias.name
                    yield alias.name, None
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        source = node.module or ""
        if node.level:
            base = package.split(".")
            source = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
        if source.split(".")[0] != "symrnn":
            continue
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            if sub in modules:
                bound[alias.asname or alias.name] = sub
            yield (sub, None) if sub in modules else (source, alias.name)
    for node in ast.walk(tree):  # judge._floor, where "from . import judge"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            yield bound[node.value.id], node.attr


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def violations(module: str, modules: dict = MODULES):
    """The broken rules of one module, as the messages :data:`KNOWN_VIOLATIONS` holds."""
    mine = role(module)
    for target, name in imports(module, modules):
        if target not in modules:
            continue
        theirs = role(target)
        if mine == ENGINE and theirs in (USE, ORACLE):
            yield f"engine {_short(module)} imports {theirs} {_short(target)}"
        if mine == ORACLE and target.split(".")[-1] in NOT_FOR_ORACLES:
            yield f"oracle {_short(module)} imports {_short(target)}"
        if name is not None and _private(name) and target != module:
            yield f"{_short(module)} imports the private name {_short(target)}.{name}"
        holder = target.rpartition(".")[0]
        if any(_private(p) for p in target.split(".")) and not module.startswith(holder + "."):
            yield f"{_short(module)} imports the private module {_short(target)}"


def all_violations():
    return {v for module in MODULES for v in violations(module)}


def test_every_module_has_a_role():
    for module in MODULES:
        role(module)


def test_no_new_layer_violations():
    new = sorted(all_violations() - KNOWN_VIOLATIONS)
    assert not new, "layer rules broken (see the docstring of tests/test_layer_rules.py):\n  " + "\n  ".join(new)


def test_known_violations_still_occur():
    gone = sorted(KNOWN_VIOLATIONS - all_violations())
    assert not gone, ("fixed: remove from KNOWN_VIOLATIONS in tests/test_layer_rules.py:\n  "
                      + "\n  ".join(repr(v) for v in gone))


@pytest.mark.parametrize("source, expected", [
    ("from ..report import latex_document", "engine model imports use report"),
    ("from ..oracles.scalar import loss_and_grads", "engine model imports oracle oracles.scalar"),
    ("import symrnn.verify.core", "engine model imports use verify.core"),
    ("from ..engine.codegen import _BackwardWriter", "model imports the private name codegen._BackwardWriter"),
    ("from ..report import _helpers", "model imports the private module report._helpers"),
    ("from ..engine import codegen as C\nC._BackwardWriter", "model imports the private name codegen._BackwardWriter"),
])
def test_the_rules_catch_what_they_say(tmp_path, source, expected):
    """Each rule fires on a planted import in a package laid out as after the move of the engine
    into folders (``symrnn/models/model.py``, ``symrnn/engine/codegen.py``)."""
    root = tmp_path / "symrnn"
    for name in ("__init__.py", "report/__init__.py", "report/_helpers.py", "oracles/__init__.py",
                 "oracles/scalar.py", "verify/__init__.py", "verify/core.py", "engine/__init__.py",
                 "engine/codegen.py", "models/__init__.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "models" / "model.py").write_text(source + "\n")
    (root / "oracles" / "scalar.py").write_text("from ..engine import codegen\n")
    modules = package_modules(root)
    assert expected in set(violations("symrnn.models.model", modules))
    assert set(violations("symrnn.oracles.scalar", modules)) == {"oracle oracles.scalar imports codegen"}


def test_the_report_layer_attaches_the_notebook_rendering():
    """``Derivation._repr_latex_`` comes from :mod:`symrnn.report` (bptt imports no report): in an
    IPython session ``import symrnn`` loads it, in a plain process it stays unloaded. The session is
    told by a module named ``IPython`` being loaded; a stand-in module plays it, so the test needs no
    IPython installed (``make test`` runs before the docs extra is installed)."""
    import subprocess
    import sys

    probe = ("import sys{}\nimport symrnn\n"
             "print('symrnn.report' in sys.modules, hasattr(symrnn.Model('rnn-tanh', D=1, H=1, K=1).derive(), "
             "'_repr_latex_'))")
    session = "\nimport types\nsys.modules['IPython'] = types.ModuleType('IPython')"
    for ipython, expected in (("", "False True"), (session, "True True")):
        done = subprocess.run([sys.executable, "-c", probe.format(ipython)], capture_output=True, text=True,
                              cwd=PACKAGE.parent)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == expected.split()
    # in a plain process the display methods are stand-ins that load the report layer on first use
    script = ("import sys\nimport symrnn\nd = symrnn.Model('rnn-tanh', D=1, H=1, K=1).derive()\n"
              "print('symrnn.report' in sys.modules, d.latex().startswith('\\\\begin'), 'symrnn.report' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0 and done.stdout.split() == ["False", "True", "True"], done.stderr + done.stdout

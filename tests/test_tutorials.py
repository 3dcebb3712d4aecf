"""The tutorials (docs/tutorials/): cheap structural checks; the notebooks themselves are executed by
the documentation build (myst-nb), not here.

* every entry of the tutorials' toctree exists, and every tutorial is in the toctree;
* each is a MyST-NB notebook (jupytext front matter, ``file_format: mystnb``, the python3 kernel) with
  code cells;
* no display math is typed by hand (``$$`` or a ``{math}`` block): the equations of a tutorial are
  printed from symrnn's derivation objects by its code cells;
* no ``eval``/``exec`` in the code cells.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"


def _toctree_entries():
    text = (TUTORIALS / "index.md").read_text()
    block = re.search(r"```\{toctree\}\n(.*?)```", text, re.S)
    assert block, "docs/tutorials/index.md has no toctree"
    return [line.strip() for line in block.group(1).splitlines()
            if line.strip() and not line.strip().startswith(":")]


def _front_matter(text):
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    return match.group(1) if match else ""


def test_toctree_lists_every_tutorial_and_nothing_else():
    entries = _toctree_entries()
    assert entries, "the toctree is empty"
    on_disk = sorted(p.stem for p in TUTORIALS.glob("*.md") if p.name != "index.md")
    assert sorted(entries) == on_disk
    assert len(set(entries)) == len(entries)


@pytest.mark.parametrize("name", _toctree_entries())
def test_tutorial_is_an_executable_mystnb_notebook(name):
    text = (TUTORIALS / f"{name}.md").read_text()
    front = _front_matter(text)
    assert "jupytext:" in front and "file_format: mystnb" in front, name
    assert re.search(r"kernelspec:\s*\n(\s+\w+:.*\n)*?\s+name: python3", front + "\n"), name
    cells = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", text, re.S)
    assert cells, f"{name} has no code cells"
    assert re.search(r"^# ", text, re.M), f"{name} has no title"
    for cell in cells:
        assert not re.search(r"\b(eval|exec)\(", cell), f"{name} calls eval/exec"


@pytest.mark.parametrize("name", _toctree_entries())
def test_no_display_math_typed_by_hand(name):
    text = (TUTORIALS / f"{name}.md").read_text()
    prose = re.sub(r"```\{code-cell\}.*?```", "", text, flags=re.S)
    assert "$$" not in prose and "{math}" not in prose, f"{name} types display math by hand"


# -- the tutorials import only public, documented names -----------------------------------------------
def _symrnn_names(code):
    """``(line, full name)`` of every name of symrnn a code cell imports or reads off an imported module
    of symrnn (``sr.Model``, ``V.verify_layer``)."""
    import ast

    tree = ast.parse(code)
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "symrnn":
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else "symrnn"
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "symrnn":
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            yield node.lineno, f"{aliases[node.value.id]}.{node.attr}"


def _is_public_and_documented(name, documented):
    import importlib

    if any(part.startswith("_") for part in name.split(".")):
        return False
    if name in documented or any(d.startswith(name + ".") for d in documented):  # a name or a documented module
        return True
    module, _, attr = name.rpartition(".")
    try:
        owner = importlib.import_module(module)
    except ImportError:
        return False
    return attr in getattr(owner, "__all__", ()) and f"{module}.{attr}" in documented


@pytest.mark.parametrize("name", _toctree_entries())
def test_tutorial_imports_only_public_documented_names(name):
    """A tutorial is what a student copies: every symrnn name it uses is public (no ``_`` anywhere in its
    path) and on a page of the API reference (docs/api/*.rst), e.g. ``Derivation.show`` instead of the
    report's internal builder and printer."""
    from test_docs import documented_names

    documented = documented_names()
    text = (TUTORIALS / f"{name}.md").read_text()
    cells = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", text, re.S)
    bad = []
    for cell in cells:
        code = re.sub(r"^:\w+:.*\n", "", cell)
        bad += [used for _, used in _symrnn_names(code) if not _is_public_and_documented(used, documented)]
    assert not bad, f"{name} uses names that are private or not in docs/api: {sorted(set(bad))}"


def test_the_import_check_catches_an_internal_name():
    from test_docs import documented_names

    code = "import symrnn as sr\nfrom symrnn.report.sections import ReportBuilder\nsr.Model\nsr._OldModulePaths\n"
    used = [n for _, n in _symrnn_names(code)]
    assert "symrnn.report.sections.ReportBuilder" in used and "symrnn.Model" in used
    bad = [n for n in used if not _is_public_and_documented(n, documented_names())]
    assert bad == ["symrnn.report.sections.ReportBuilder", "symrnn._OldModulePaths"]

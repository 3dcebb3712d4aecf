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

"""Cheap checks of the documentation sources (docs/). The full build, with warnings as errors,
executed notebooks and the doctests of the API pages, is `make docs`, run by .ci/run."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC_MODULES = ("symrnn", "symrnn.verify", "symrnn.decay")


def documented_names() -> set:
    """Full names the API reference documents: autosummary entries and object directives, each
    under the module its page sets with ``currentmodule`` / ``automodule``."""
    names = set()
    for page in sorted((DOCS / "api").glob("*.rst")):
        module, in_autosummary = None, False
        for line in page.read_text().splitlines():
            directive = re.match(r"\.\. (currentmodule|automodule):: (\S+)", line)
            if directive:
                module = directive.group(2)
                continue
            obj = re.match(r"\.\. (?:py:)?(?:data|class|function|exception):: ([A-Za-z_]\w*)", line)
            if obj:
                names.add(f"{module}.{obj.group(1)}")
                continue
            if line.startswith(".. autosummary::"):
                in_autosummary = True
                continue
            if in_autosummary:
                entry = re.match(r"\s+(~?[A-Za-z_][\w.]*)\s*$", line)
                if entry:
                    names.add(f"{module}.{entry.group(1).lstrip('~')}")
                elif line.strip() and not line.lstrip().startswith(":"):
                    in_autosummary = False
    return names


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module_name):
    module = importlib.import_module(module_name)
    documented = documented_names()
    missing = [f"{module_name}.{n}" for n in module.__all__ if f"{module_name}.{n}" not in documented]
    assert not missing, f"public names missing from docs/api/*.rst: {missing}"


def toctree_entries(page: Path) -> list:
    """The entries of the toctrees of a MyST (```{toctree}```) or reST (.. toctree::) page."""
    entries, inside = [], False
    for line in page.read_text().splitlines():
        if line.startswith("```{toctree}") or line.startswith(".. toctree::"):
            inside = True
            continue
        if inside:
            stripped = line.strip()
            if stripped.startswith("```") or (page.suffix == ".rst" and line and not line.startswith(" ")):
                inside = False
            elif stripped and not stripped.startswith(":"):
                entries.append(stripped)
    return entries


def source_of(base: Path, entry: str):
    for suffix in (".md", ".rst", ".ipynb"):
        if (base / f"{entry}{suffix}").is_file():
            return base / f"{entry}{suffix}"
    return None


def test_every_toctree_entry_exists():
    pages = [DOCS / "index.md", DOCS / "guide" / "index.md", DOCS / "api" / "index.rst"]
    for page in pages:
        entries = toctree_entries(page)
        assert entries, f"{page.relative_to(ROOT)} has no toctree"
        for entry in entries:
            if entry == "tutorials/index":  # written elsewhere (docs/tutorials/), checked by the build
                continue
            assert source_of(page.parent, entry), f"{page.relative_to(ROOT)} lists {entry!r}, which does not exist"


def test_the_site_links_the_guides_the_tutorials_and_the_api():
    assert toctree_entries(DOCS / "index.md") == ["guide/index", "tutorials/index", "api/index", "architecture"]
    guides = toctree_entries(DOCS / "guide" / "index.md")
    assert {"derive", "verify", "decay", "custom-cells"} <= set(guides)


def test_guides_execute_their_examples():
    """Every guide is a MyST notebook whose code cells run when the site is built."""
    for guide in (DOCS / "guide").glob("*.md"):
        if guide.name == "index.md":
            continue
        text = guide.read_text()
        assert text.startswith("---\nfile_format: mystnb"), f"{guide.name} is not a MyST notebook"
        assert "```{code-cell}" in text, f"{guide.name} has no executed example"


def test_the_build_is_strict_and_offline():
    conf = (DOCS / "conf.py").read_text()
    assert "nb_execution_raise_on_error = True" in conf
    path = re.search(r'^mathjax_path = "([^"]+)"', conf, re.M).group(1)
    assert not re.match(r"\w+://", path), "MathJax must be served from the site, not a CDN"
    makefile = (ROOT / "Makefile").read_text()
    docs_rule = makefile[makefile.index("\ndocs:"):]
    assert "-W" in makefile and "-b html" in docs_rule and "-b doctest" in docs_rule
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"docs/_build/", "docs/_vendor/", "docs/api/generated/"} <= set(ignored)
    assert "make docs" in (ROOT / ".ci" / "run").read_text()

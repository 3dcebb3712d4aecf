"""Sphinx configuration of the symrnn documentation site (``make docs``)."""
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# document the working tree's symrnn, not an installed copy of another checkout
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

import symrnn  # noqa: E402

project = "symrnn"
author = "the symrnn developers"
copyright = "the symrnn developers, BSD 3-Clause licence"
version = release = symrnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_vendor", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# --- API reference -------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {}  # members: listed by the templates; bases: on the exceptions
autodoc_typehints = "none"          # numpydoc's Parameters sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists members with autosummary
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Cross-references are not nitpicky: the types in numpydoc sections ("ndarray", "dict of str to
# ndarray") name NumPy's and Python's objects, which no intersphinx inventory can resolve offline.
nitpicky = False

# --- doctests (``sphinx-build -b doctest``, run by ``make docs``) -----------------------------
doctest_global_setup = """
import numpy as np
np.set_printoptions(precision=4, suppress=True)
"""
import doctest as _doctest  # noqa: E402
doctest_default_flags = _doctest.ELLIPSIS | _doctest.NORMALIZE_WHITESPACE | _doctest.DONT_ACCEPT_TRUE_FOR_1

# --- MyST and notebooks -------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True    # $$...$$ inside a paragraph is display math too
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600
nb_merge_streams = False  # a label printed before a formula stays next to it
nb_render_markdown_format = "myst"   # Markdown outputs (agreement tables) with tables and math

# --- HTML ---------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"symrnn {release}"
html_static_path = ["_static"]
html_css_files = ["symrnn.css"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # no icon links: they would load nothing, but the site must not reach for the network
    "icon_links": [],
}
html_sidebars = {"index": []}
html_show_sourcelink = False

# MathJax is served from the site itself (no CDN): ``make docs`` installs the npm package
# mathjax into docs/_vendor and copies its browser build to docs/_vendor/static/mathjax, which
# is added to the static files below.
MATHJAX = DOCS / "_vendor" / "static" / "mathjax" / "tex-chtml.js"
if not MATHJAX.is_file():
    raise RuntimeError(f"MathJax is missing ({MATHJAX.relative_to(ROOT)}): build the site with `make docs`, "
                       "which installs it from the npm registry.")
html_static_path.append(str(DOCS / "_vendor" / "static"))
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {
    "tex": {"tags": "ams"},
    # the components MathJax loads later (fonts, TeX extensions) come from the folder of
    # tex-chtml.js, which MathJax finds from its own script address
}

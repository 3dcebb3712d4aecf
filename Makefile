# symrnn: `make demo`, `make test`, `make bench`, `make docs`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench derivations dist wheel-smoke docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m symrnn.demo --out reports

# on every core (pytest-xdist): the suite is single-threaded NumPy and SymPy work; tests that share
# an expensive session fixture carry one xdist_group and run on one worker; the slowest are listed
test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -n auto --dist loadgroup --durations=25

bench: $(STAMP)
	$(PY) benchmarks/run.py --out reports/benchmarks.md

dist: $(STAMP)
	$(PY) -m pip install --quiet 'build>=1.0'
	rm -rf dist
	$(PY) -m build --outdir dist .

# the wheel and the sdist installed into fresh virtual environments, away from the repository
wheel-smoke: dist
	bash .ci/wheel-smoke dist

# the documentation site: docs/_build/html/index.html. Sphinx with warnings as errors, then the
# doctests of the pages (the API reference's Examples sections). MathJax is served from the site
# (no CDN): the npm package, pinned, is installed into docs/_vendor (not in git) the first time.
DOCS_STAMP := $(VENV)/.installed-docs
MATHJAX_VERSION := 3.2.2
MATHJAX := docs/_vendor/static/mathjax
SPHINX := $(PY) -m sphinx -W --keep-going

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

$(MATHJAX)/tex-chtml.js:
	npm install --prefix docs/_vendor/npm --no-save --no-audit --no-fund --loglevel=error mathjax@$(MATHJAX_VERSION)
	rm -rf $(MATHJAX) && mkdir -p $(MATHJAX)
	cd docs/_vendor/npm/node_modules/mathjax/es5 && cp -r tex-chtml.js input output a11y ui sre $(CURDIR)/$(MATHJAX)/

docs: $(DOCS_STAMP) $(MATHJAX)/tex-chtml.js
	rm -rf docs/api/generated  # autosummary's stubs: a stale one (a member since removed) fails the -W build
	$(SPHINX) -b html docs docs/_build/html
	$(SPHINX) -b doctest docs docs/_build/doctest
	@echo "documentation: docs/_build/html/index.html"

derivations: $(STAMP)
	$(PY) -m symrnn.cli derive-all --out derivations

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis docs/_build docs/api/generated docs/_vendor

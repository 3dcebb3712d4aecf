# symrnn: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench derivations dist wheel-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m symrnn.demo --out reports

test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run.py --out reports/benchmarks.md

dist: $(STAMP)
	$(PY) -m pip install --quiet 'build>=1.0'
	rm -rf dist
	$(PY) -m build --outdir dist .

# the wheel and the sdist installed into fresh virtual environments, away from the repository
wheel-smoke: dist
	bash .ci/wheel-smoke dist

derivations: $(STAMP)
	$(PY) -m symrnn.cli derive-all --out derivations

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

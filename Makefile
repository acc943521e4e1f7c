# inferlab: `make demo` and `make test` each create .venv and install from constraints.txt first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-full test test-fast mutants lint bench venv clean docs docs-quick docs-check

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	# bytecode for the repository's own modules (pip compiles site-packages; PYTHONDONTWRITEBYTECODE would leave
	# every command recompiling ours, about 0.3 s a process); stale files are ignored by Python
	$(PY) -m compileall -q models inference > /dev/null
	touch $(STAMP)

venv: $(STAMP)

# The demo: Poisson MF on a 20 x 30 synthetic count matrix (K = 3), fitted by CAVI (200 sweeps), Gibbs (4 chains x
# 2,000 draws, thin 10, the reference), Pyro SVI (1,500 steps) and EM (5 restarts), compared on one held-out split
# (about 30 s). demo-full adds NUTS (2 chains x 200 + 200 iterations, about 30 s more).
demo: $(STAMP)
	$(VENV)/bin/inferlab compare poisson-mf --data synthetic --seed 0 --methods cavi,gibbs,svi,em --out demo-out

demo-full: $(STAMP)
	$(VENV)/bin/inferlab compare poisson-mf --data synthetic --seed 0 --methods cavi,gibbs,svi,nuts,em --out demo-full-out

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow" --durations=10

# every mutant of tests/mutation/catalogue.py against the fast tier; prints the ones that survive (exit 1 if any)
mutants: $(STAMP)
	$(PY) tests/mutation/run.py --out mutants.md

# the documentation site: every notebook executed in full (about 9 minutes on 2 cores), mkdocs --strict into
# build/site, then every page opened in headless Chromium (Debian's chromium package; screenshots in build/screenshots)
docs: $(STAMP)
	$(PY) docs/site/build.py
	$(PY) docs/site/check.py build/site --screenshots build/screenshots

# the same with INFERLAB_NB_QUICK=1 (small iteration counts; what CI builds and checks)
docs-quick: $(STAMP)
	$(PY) docs/site/build.py --quick
	$(PY) docs/site/check.py build/site --screenshots build/screenshots

docs-check: $(STAMP)
	$(PY) docs/site/check.py build/site --screenshots build/screenshots

lint: $(STAMP)
	$(VENV)/bin/lint-imports --config pyproject.toml

bench: $(STAMP)
	$(PY) benchmarks/poisson_mf_bench.py

clean:
	rm -rf $(VENV) demo-out demo-full-out .pytest_cache build

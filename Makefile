# fpscale: two-command quick start (`make run`, `make test`) on a machine with
# only Python 3.11+ and make. Set-up is idempotent: the venv and the install
# are redone only when pyproject.toml or constraints.txt change.

# First Python >= 3.11 on PATH (override with `make PYTHON=/path/to/python3.12`).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.fpscale-installed
PIP     := $(BIN)/python -m pip --disable-pip-version-check -q
SCENARIO ?= scenarios/default.toml
OUT     ?= results/default
# Numba's on-disk cache of compiled kernels: one ignored folder here, with a
# sub-folder per version of the sources; hand runs from this checkout use the
# same folder by default (see fpscale/bench/__init__.py).
export FPSCALE_NUMBA_CACHE ?= $(CURDIR)/.numba_cache

.PHONY: setup run test test-slow bench bench-check perf-smoke lock clean

setup: $(STAMP)

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "fpscale needs Python 3.11 or newer on PATH (or make PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt pip setuptools
	$(PIP) install -c constraints.txt --no-build-isolation -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/fpscale run $(SCENARIO) --out $(OUT) --overwrite

# The ten slowest tests are listed at the end: the suite must stay under
# 10 minutes on 2 cores, and this shows where its time goes. Test files run
# in parallel processes (pytest-xdist, one file per process at a time, so a
# module's fixtures are built once): on a fresh clone the first run compiles
# every numba kernel, which one process leaves the second core idle through.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider --benchmark-disable \
		-n $(TEST_WORKERS) --dist loadfile --durations=10 --ignore=tests/benchmarks tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -p no:cacheprovider --benchmark-disable \
		--ignore=tests/benchmarks tests

# The suites at full size (1M gallery); the ratio tests at the end check the
# issue targets from medians measured in this same run.
bench: $(STAMP)
	@mkdir -p results/bench
	$(BIN)/python -m pytest tests/benchmarks -p no:cacheprovider -v \
		--benchmark-json=results/bench/benchmark.json

# Ratio-only performance smoke check (numba exact against faiss on the same
# data and threads), small enough for CI.
perf-smoke: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks/test_perf_smoke.py -p no:cacheprovider -q -s

# Benchmark REF and the working tree one after the other on this machine and
# fail when a median regresses past BENCH_MARGIN (pytest-benchmark compare).
# Only fpscale's own kernels are compared (faiss and index builds move with
# the machine, not with this code), over BENCH_ROUNDS rounds each.
REF ?= HEAD
BENCH_MARGIN ?= 15%
BENCH_SCALE ?= 0.2
BENCH_ROUNDS ?= 9
BENCH_SELECT := (numba or plain_impressions or minutiae) and not build
bench-check: $(STAMP)
	@rm -rf .bench-ref .benchmarks/check && mkdir -p .benchmarks/check
	git worktree add --detach .bench-ref $(REF)
	cd .bench-ref && FPSCALE_BENCH_SCALE=$(BENCH_SCALE) FPSCALE_BENCH_ROUNDS=$(BENCH_ROUNDS) \
		PYTHONPATH=$(CURDIR)/.bench-ref $(CURDIR)/$(BIN)/python -m pytest tests/benchmarks \
		-p no:cacheprovider -q --benchmark-only -k "$(BENCH_SELECT)" \
		--benchmark-storage=$(CURDIR)/.benchmarks/check --benchmark-save=ref \
		|| { git worktree remove --force .bench-ref; exit 1; }
	git worktree remove --force .bench-ref
	FPSCALE_BENCH_SCALE=$(BENCH_SCALE) FPSCALE_BENCH_ROUNDS=$(BENCH_ROUNDS) $(BIN)/python -m pytest \
		tests/benchmarks -p no:cacheprovider -q --benchmark-only -k "$(BENCH_SELECT)" \
		--benchmark-storage=$(CURDIR)/.benchmarks/check \
		--benchmark-compare=0001 --benchmark-compare-fail=median:$(BENCH_MARGIN)
	$(MAKE) perf-smoke

# Pin the versions the current environment resolved to.
lock: $(STAMP)
	@{ echo "# Exact versions for reproducible installs; the Makefile installs with \`-c constraints.txt\`."; \
	   echo "# Regenerate with \`make lock\` after changing dependencies in pyproject.toml."; } > constraints.txt.new
	$(BIN)/python -m pip freeze --exclude-editable --exclude fpscale | sort -f >> constraints.txt.new
	@echo "pip==$$($(BIN)/python -m pip --version | cut -d' ' -f2)" >> constraints.txt.new
	@echo "setuptools==$$($(BIN)/python -c 'import setuptools; print(setuptools.__version__)')" >> constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .numba_cache results .pytest_cache .hypothesis .benchmarks

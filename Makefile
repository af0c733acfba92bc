# One-line set-up: `make quickstart` (the main job) and `make test` (the suite).
# torch is pinned to the local CPU wheel here; pyproject.toml declares a range.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
# everything, optional extras included (the tests of [tf] and [parquet] must run); quickstart needs neither
INSTALL = $(PIP) -e ".[dev,tf,parquet]"
INSTALL_CORE = $(PIP) -e ".[dev]"
MTX = $(PYTHON) -m microtransformer

.PHONY: install quickstart test bench

install:
	$(INSTALL)

quickstart:
	$(INSTALL_CORE)
	$(MTX) quickstart --out_dir runs/quickstart --overwrite

# The install above brings every optional extra, so no test may skip for a missing one.
test: install
	MTX_REQUIRE_OPTIONAL=1 $(PYTHON) -m pytest -q

bench:
	$(INSTALL_CORE)
	$(PYTHON) benchmarks/bench_tokenizers.py

# One-line set-up: `make quickstart` (the main job) and `make test` (the suite).
# torch is pinned to the local CPU wheel here; pyproject.toml declares a range.
PYTHON ?= python3
INSTALL = $(PYTHON) -m pip install --quiet --disable-pip-version-check "torch==2.13.0" -e ".[dev]"
MTX = $(PYTHON) -m microtransformer

.PHONY: install quickstart test bench

install:
	$(INSTALL)

quickstart: install
	$(MTX) quickstart --out_dir runs/quickstart --overwrite

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/bench_tokenizers.py

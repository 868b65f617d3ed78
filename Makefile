# Two commands do all the set-up on a fresh machine:
#   make run    create .venv if missing, install, start the service on the embedded catalog
#   make test   same set-up, then the full test suite
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.tunecast-installed
HOST    ?= 127.0.0.1
PORT    ?= 8000
# torch is pinned in the same pip command as everything that depends on it: otherwise peft,
# accelerate or bitsandbytes pull a multi-GB CUDA build (see ../shared/design/PROFILING_NOTES.md).
TORCH   := torch==2.13.0

.PHONY: setup run test lint typecheck bench clean

setup: $(STAMP)

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q $(TORCH) -e ".[profiler,service,plots,dev]"
	@# Headless Chromium for the dashboard's real-browser test (Debian package); without it that
	@# one test skips, so a machine without apt access still sets up.
	-./scripts/install_chromium.sh || echo "chromium not installed: the browser test will skip"
	touch $(STAMP)

run: setup
	$(BIN)/estimate serve --host $(HOST) --port $(PORT)

test: setup
	$(BIN)/python -m pytest -n 2 -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy estimator service

bench: setup
	$(BIN)/python benchmarks/accuracy.py
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

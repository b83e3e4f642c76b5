# Two commands, on a fresh machine with Python 3.11:
#   make demo   - set up .venv, install SeedBrachyLib, run the built-in synthetic case
#   make test   - same set-up, then the whole test suite (pytest-xdist: one worker per core, at most 4;
#                 each test file on one worker, so a file's module fixtures are built once)
#   make test-fast  - ruff and every test but the slow ones (minutes)
#   make test-quick - ruff and the quick lane: a few fast tests of every room (about 30 s)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
XDIST := -n auto --maxprocesses 4 --dist loadfile

.PHONY: demo test test-fast test-quick bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/seedbrachy demo --out build/demo --force

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q $(XDIST) Testing

test-fast: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow" Testing

test-quick: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -m quick Testing

bench: $(STAMP)
	for b in Testing/benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build

# Two commands set everything up from a fresh clone: `make demo` and `make test`.
# Each creates the virtual environment if missing and installs what it needs (see DEVELOPERS.md).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of torch, installed before anything that depends on torch (a plain `pip install torch`
# would pull a multi-GB CUDA build). Override on machines with a GPU: make test TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test test-fast lint bench clean help

help:
	@echo "make demo   - set up and run the embedded default model on a shipped example image"
	@echo "make test   - set up and run the test suite"
	@echo "make bench  - run the benchmarks in benchmarks/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Core + transformers backend: enough for the demo.
$(VENV)/.demo-deps: pyproject.toml | $(BIN)/python
	$(PIP) "$(TORCH_SPEC)"
	$(PIP) -e ".[hf]"
	touch $@

# Everything the tests exercise.
$(VENV)/.test-deps: pyproject.toml $(VENV)/.demo-deps
	$(PIP) -e ".[hf,train,dev,langchain,mcp]"
	touch $@

demo: $(VENV)/.demo-deps
	$(BIN)/awares demo --out out/demo

test: $(VENV)/.test-deps
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; exit 1; fi; exit $$rc

test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(VENV)/.test-deps
	$(BIN)/python benchmarks/crop_engine.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis

# Two commands set everything up from a fresh clone: `make demo` and `make test`.
# Each creates the virtual environment if missing and installs what it needs (see DEVELOPERS.md).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of torch, installed before anything that depends on torch (a plain `pip install torch`
# would pull a multi-GB CUDA build). Override on machines with a GPU: make test TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q
# llama-cpp-python builds from source (about 4-6 minutes on 2 cores; pip caches the wheel). Portable build:
# no -march=native, so a cached wheel works on any x86-64 machine with AVX2.
LLAMA_ENV := CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2

.PHONY: demo test test-fast lint bench clean help system-deps reproduce bench-base reproduce-synthetic reproduce-from-scratch default-model

help:
	@echo "make demo   - set up and run the embedded default model on shipped example images"
	@echo "make test   - set up and run the test suite"
	@echo "make bench  - run the benchmarks in benchmarks/"
	@echo "make reproduce              - the AwaRes stages (data, SFT, GRPO, eval) on awares-bench from the shipped tiny-base"
	@echo "make bench-base             - a stage A+B base adapted to awares-bench (reading, grounding; resumable)"
	@echo "make reproduce-synthetic    - the same stages on the synthetic one-code task (the first reproduction)"
	@echo "make reproduce-from-scratch - the base model from random weights, its benchmark adaptation, the stages"
	@echo "make default-model          - after make reproduce: the embedded default (benchmark + one-code task)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Core + transformers and llama.cpp backends: the demo runs the embedded model on both.
$(VENV)/.demo-deps: pyproject.toml | $(BIN)/python
	$(PIP) "$(TORCH_SPEC)"
	$(LLAMA_ENV) $(PIP) -e ".[hf,llamacpp]"
	touch $@

# Everything the tests exercise.
$(VENV)/.test-deps: pyproject.toml $(VENV)/.demo-deps
	$(LLAMA_ENV) $(PIP) -e ".[hf,train,dev,langchain,mcp,serve,ui,embed,ocr,smolagents,openai-agents,openai,llamacpp-server]"
	$(PIP) --no-deps "lmms-eval==0.7.3" "loguru>=0.7" "evaluate>=0.4"  # its own pins would replace torch
	@$(MAKE) --no-print-directory system-deps
	touch $@

# Debian packages the tests use: Tesseract (OCR grounding) and Chromium (the browser test; never
# `playwright install`, which downloads its own browser). Skipped where apt is unavailable or not root;
# the tests that need them then skip with a reason.
SYSTEM_PKGS := $(if $(shell command -v tesseract),,tesseract-ocr) $(if $(shell command -v chromium),,chromium)
system-deps:
	@if [ -n "$(strip $(SYSTEM_PKGS))" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PKGS)) \
	      || echo "warning: could not install $(SYSTEM_PKGS); their tests will be skipped" >&2; \
	  else echo "note: install $(SYSTEM_PKGS) for the OCR and browser tests" >&2; fi; \
	fi

demo: $(VENV)/.demo-deps
	$(BIN)/awares demo --out out/demo

test: $(VENV)/.test-deps
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; exit 1; fi; exit $$rc

test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -q -m "not slow"

# The tiny AwaRes reproduction on awares-bench (docs/reproduce-bench-call/results.md): one training seed of the
# AwaRes stages from the shipped tiny-base (the benchmark-adapted base that `make bench-base` builds; ~75 min on
# 2 cores). Resumable: a rerun skips finished stages (SFT and GRPO continue from their last checkpoint); delete
# runs/reproduce-bench to start over. REPRODUCE_ARGS=--threads 1 while other jobs share the CPU;
# REPRODUCE_ARGS="--seeds 0,1,2" for the three seeds (same work folder: seed 0 is reused).
REPRODUCE_ARGS ?=
reproduce: $(VENV)/.test-deps
	$(BIN)/awares-train reproduce --work runs/reproduce-bench --docs docs/reproduce-bench-call $(REPRODUCE_ARGS)

# The embedded default (awares_tool/models/tiny-awares): the same SFT + GRPO from the same base on the
# benchmark's and the one-code task's trajectories, so that one model answers both; evaluated on both test
# splits (~40 min after make reproduce). Ship it with
# `python -m awares_train.tiny.ship runs/default` (copies the model, writes its card, exports the GGUF).
default-model: $(VENV)/.test-deps
	$(BIN)/python -m awares_train.tiny.train_default --bench-work runs/reproduce-bench --work runs/default

# The reproduction's base from a stage A+B base (BENCH_BASE_FROM: make reproduce-from-scratch trains one), in
# six phases, each from the last one's model (the card lists them):
# reading the benchmark's views (BENCH_BASE_READ_STEPS), then grounding from coarse to the crop set's regions
# (the quarter holding the evidence; quarters and regions; regions), then the same regions named in the
# get_crops call, under a prefix (request), then in SFT's own context (call), with reading and the old task
# mixed in. A base trained on regions alone did not ground (docs/reproduce-bench/results.md); one that named
# regions in words but not in the call gave SFT 13% region accuracy, with the request and call phases 24%
# (README); with the call phase alone (2,000 steps, request a tenth of the mix) 9.9%
# (docs/reproduce-bench-five-phases/). Budgets are steps (the shipped base's phases, rounded: their wall-clock
# boxes gave a busy machine fewer steps; its two GPU request phases made 2,531 + 742); 237 minutes on 2 cores.
BENCH_BASE_READ_STEPS ?= 3000
BENCH_BASE_FROM ?=
BENCH_BASE_DIR ?= runs/bench-base
ADAPT = $(BIN)/python -m awares_train.tiny.train_bench_base --eval-every-min 100 --eval-n 50 --final-n 200
bench-base: $(VENV)/.test-deps
	@test -n "$(BENCH_BASE_FROM)" || { echo "error: set BENCH_BASE_FROM=<stage A+B base> (the shipped tiny-base is \
	already adapted; make reproduce-from-scratch trains a stage A+B base)" >&2; exit 2; }
	$(ADAPT) --base $(BENCH_BASE_FROM) --out $(BENCH_BASE_DIR)/read \
	  --work $(BENCH_BASE_DIR)/work-read --steps $(BENCH_BASE_READ_STEPS) --decay-share 0.35
	$(ADAPT) --base $(BENCH_BASE_DIR)/read --out $(BENCH_BASE_DIR)/quarter --work $(BENCH_BASE_DIR)/work-quarter \
	  --steps 1500 --decay-share 0.2 --plan quarter:32,crop:8,old:8
	$(ADAPT) --base $(BENCH_BASE_DIR)/quarter --out $(BENCH_BASE_DIR)/regions --work $(BENCH_BASE_DIR)/work-regions \
	  --steps 2100 --decay-share 0.25 --plan quarter:16,where:24,crop:16,low:24,old:8
	$(ADAPT) --base $(BENCH_BASE_DIR)/regions --out $(BENCH_BASE_DIR)/where --work $(BENCH_BASE_DIR)/work-where \
	  --steps 950 --decay-share 0.3 --plan where:32,crop:16,low:24,old:8
	$(ADAPT) --base $(BENCH_BASE_DIR)/where --out $(BENCH_BASE_DIR)/request --work $(BENCH_BASE_DIR)/work-request \
	  --steps 3300 --decay-share 0.3 --workers 1 --plan request:24,where:8,crop:16,low:24,old:8
	$(ADAPT) --base $(BENCH_BASE_DIR)/request --out $(BENCH_BASE_DIR)/model --work $(BENCH_BASE_DIR)/work-call \
	  --steps 1300 --decay-share 0.3 --workers 1 --plan call:16,request:8,where:8,crop:16,low:24,old:8

# The first reproduction, on the synthetic one-code task (docs/reproduce/results.md).
reproduce-synthetic: $(VENV)/.test-deps
	$(BIN)/awares-train reproduce --dataset synthetic --work runs/reproduce --docs docs/reproduce $(REPRODUCE_ARGS)

# The base model from random weights (stage A + B: the steps the shipped stage A+B base made in its 31 + 80
# minutes, rounded; then its adaptation to the benchmark), then the AwaRes stages.
reproduce-from-scratch: $(VENV)/.test-deps
	$(BIN)/python -m awares_train.tiny.train_base --out runs/scratch/tiny-base-synthetic --work runs/scratch/base \
	  --a-steps 1300 --b-steps 2700
	$(MAKE) --no-print-directory bench-base BENCH_BASE_FROM=runs/scratch/tiny-base-synthetic \
	  BENCH_BASE_DIR=runs/scratch/bench-base
	$(BIN)/awares-train reproduce --base runs/scratch/bench-base/model --work runs/scratch/reproduce-bench \
	  --docs docs/reproduce-bench-from-scratch $(REPRODUCE_ARGS)

bench: $(VENV)/.test-deps
	$(BIN)/python benchmarks/crop_engine.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis

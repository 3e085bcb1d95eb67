# diff4mmlits — the two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_CPU := torch==2.13.0

.PHONY: demo test lint bench install clean

# The venv: install the machine's CPU torch first when none is there (never let a bare `torch`
# requirement pull a multi-GB CUDA build), keep a torch that is already installed.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_CPU)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,elastix,convexadam]"
	@touch $(STAMP)

install: $(STAMP)

# One torch/OpenMP thread per process unless you say otherwise: the demo's tensors are small and
# a busy 2-core machine runs oversubscribed threads several times slower (measured: the inpainter
# 823 s with 2 threads under load vs 68 s with 1).
demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/diff4mmlits demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs/demo phantom .pytest_cache

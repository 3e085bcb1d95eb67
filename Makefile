# diff4mmlits — the two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_CPU := torch==2.13.0

.PHONY: demo test lint bench install clean

# The venv: install the machine's CPU torch first when none is there (never let a bare `torch`
# requirement pull a multi-GB CUDA build), keep a torch that is already installed.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_CPU)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,elastix,convexadam,dicom]"
	@touch $(STAMP)

install: $(STAMP)

# The CLI chooses its own threads and processes (diff4mmlits.threads: the cores not busy with
# other work); `make demo THREADS=1` or OMP_NUM_THREADS=1 pins one.
demo: $(STAMP)
	$(BIN)/diff4mmlits $(if $(THREADS),--threads $(THREADS)) demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs/demo phantom .pytest_cache

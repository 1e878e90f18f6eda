# Two commands for a fresh clone:
#   make demo   create .venv, install bastion, run `bastion demo` on bundled real data
#   make test   create .venv, install bastion with its test extras, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# torch is pinned (a CPU build lies on this machine's disk); never let pip pick a newer one
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.demo-installed: $(BIN)/python pyproject.toml
	$(PIP) install --quiet '$(TORCH_PIN)'
	$(PIP) install --quiet -e '.[onnx,torch]'
	touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml
	$(PIP) install --quiet '$(TORCH_PIN)'
	$(PIP) install --quiet -e '.[test]'
	# torchattacks is a test-only reference; its declared dependencies pin an old requests and
	# pull a torchvision that does not import beside this torch build; its code needs neither
	$(PIP) install --quiet --no-deps 'torchattacks==3.5.1'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/bastion demo --out bastion-demo

test: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

clean:
	rm -rf $(VENV) bastion-demo .pytest_cache .mypy_cache .ruff_cache

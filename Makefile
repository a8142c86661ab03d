# Two set-up commands on a fresh machine: `make demo` and `make test` (both create .venv when missing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned so pip never resolves a CUDA build on CPU machines;
# on a GPU machine use e.g. `make demo TORCH_SPEC="torch==2.13.0 --index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test lint install install-dev clean browser lmms

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/sevila demo --out demo_out

browser:
	bash scripts/install_browser.sh

test: $(VENV)/.installed-dev browser lmms
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# lmms-eval in its own environment, so the main one is never downgraded (docs/frames.md): our package first, then
# lmms-eval 0.7.3 under exact pins; the torchvision and timm it drags in are removed and PyAV goes back to >= 17.1.
LMMS_VENV ?= .venv-lmms
LMMS_PINS := scripts/lmms-constraints.txt

$(LMMS_VENV)/.installed: pyproject.toml $(LMMS_PINS)
	rm -rf $(LMMS_VENV)
	$(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_VENV)/bin/python -m pip install -q -c $(LMMS_PINS) torch==2.13.0
	$(LMMS_VENV)/bin/python -m pip install -q -c $(LMMS_PINS) -e .
	$(LMMS_VENV)/bin/python -m pip install -q -c $(LMMS_PINS) lmms-eval==0.7.3 av==15.1.0 torchvision==0.28.0 timm==1.0.31
	$(LMMS_VENV)/bin/python -m pip uninstall -y -q torchvision timm
	$(LMMS_VENV)/bin/python -m pip install -q av==18.1.1
	touch $@

lmms: $(LMMS_VENV)/.installed

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf demo_out sevila_demo .pytest_cache build *.egg-info

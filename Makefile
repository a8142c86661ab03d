# Two set-up commands on a fresh machine: `make demo` and `make test` (both create .venv when missing).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned so pip never resolves a CUDA build on CPU machines;
# on a GPU machine use e.g. `make demo TORCH_SPEC="torch==2.13.0 --index-url ..."`.
# $(VENV)/.torch holds the spec that installed torch: a different TORCH_SPEC reinstalls torch (`make clean` keeps
# the venv and the marker; delete .venv to start over).
TORCH_SPEC ?= torch==2.13.0
TORCH_MARK := $(VENV)/.torch
# the package is reinstalled when its metadata changes (pyproject.toml, or the version in sevila_tools/__init__.py)
PYTEST_ARGS ?=

.PHONY: demo test lint install install-dev clean browser lmms
ifneq ($(shell cat $(TORCH_MARK) 2>/dev/null),$(strip $(TORCH_SPEC)))
.PHONY: $(TORCH_MARK)
endif

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(TORCH_MARK): | $(BIN)/python
	@if [ -f $@ ]; then \
	  echo "TORCH_SPEC changed ('$$(cat $@)' -> '$(strip $(TORCH_SPEC))'): reinstalling torch"; \
	  $(BIN)/python -m pip uninstall -q -y torch; \
	fi
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	printf '%s\n' '$(strip $(TORCH_SPEC))' > $@

$(VENV)/.installed: pyproject.toml sevila_tools/__init__.py $(TORCH_MARK)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml sevila_tools/__init__.py $(TORCH_MARK)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/sevila demo --out demo_out

browser:
	bash scripts/install_browser.sh

# the suite, then the lmms-eval end-to-end run in .venv-lmms as its own step (it fails, never skips)
test: $(VENV)/.installed-dev browser lmms
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not lmms" $(PYTEST_ARGS)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m lmms

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

# ruff on everything; mypy on the files listed under [tool.mypy] in pyproject.toml
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf demo_out sevila_demo .pytest_cache build *.egg-info

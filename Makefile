# The two commands: `make run` and `make test`. Both install what is needed and start
# Redis and PostgreSQL when they are not running.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install services migrate run test bench eval lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

services:
	@bash scripts/ensure_services.sh

# Apply the PostgreSQL schema (Alembic) to DATABASE_URL (from the environment or .env).
migrate: install services
	$(BIN)/alembic upgrade head

# The API, a Celery worker and Celery beat together; Ctrl-C stops all three.
run: install services migrate
	BIN=$(BIN) HOST=$(HOST) PORT=$(PORT) bash scripts/run_stack.sh

test: install services migrate
	$(BIN)/pytest

bench: install services migrate
	@bash scripts/apt_install.sh /usr/sbin/nginx nginx-light  # the scale bench's balancer
	$(BIN)/python -m bench

# Triage accuracy on the labelled corpus (bench/triage_corpus) through the public API of a
# real replica; not part of `make test`. `make eval ARGS=--transcripts` shows each mismatch.
eval: install services migrate
	$(BIN)/python -m bench.triage_eval $(ARGS)

lint: install
	$(BIN)/ruff check backend workers scripts tests bench
	$(BIN)/ruff format --check backend workers scripts tests bench
	$(BIN)/mypy backend workers
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix backend workers scripts tests bench
	$(BIN)/ruff format backend workers scripts tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Everyday verbs. `make run` and `make test` are the two commands README.md promises.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: install run test lint bench token manage worker clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## Start the emulator, migrate, provision, load demo data, run web server + worker (Ctrl-C stops).
run: install
	scripts/run-local.sh

## Lint, import contracts and the whole test suite (SQLite unless DATABASE_URL is set).
test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/cfn-lint infra/shop.yaml
	$(BIN)/hadolint Dockerfile

## Benchmarks (PostgreSQL, the emulator, gunicorn, workers): make bench [BENCH_SIZE=tiny]
bench: install
	$(BIN)/python bench/run.py --size $(or $(BENCH_SIZE),full)

## Print an ID token for a demo customer while `make run` is up: make -s token EMAIL=bob@example.com
token: install
	@scripts/run-local.sh token $(or $(EMAIL),alice@example.com)

## A management command against the running shop: make -s manage CMD="dlq_list"
manage: install
	@scripts/run-local.sh manage $(CMD)

clean:
	rm -rf $(VENV) var db.sqlite3 staticfiles

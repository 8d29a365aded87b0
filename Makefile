# Everyday verbs. `make run` and `make test` are the two commands README.md promises.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pytest-xdist processes for `make test`, each with its own emulator and database. More than
# the 2 cores: the end-to-end tests spend much of their time waiting on other processes. Tests
# go to them one at a time, longest first (tests/conftest.py), so that none is left with a
# queue of long tests while the others are idle. Handed out so, 3 processes finished as soon
# as 4 (232-240 s against 238-243 s) on 358-383 CPU-seconds against 414: the suite is
# CPU-bound, and a fourth adds an emulator and contention.
PYTEST_WORKERS ?= 3
XDIST := --dist load --maxschedchunk 1
# Python's bytecode caches (__pycache__/, ignored by git) are written even where the environment
# says not to (PYTHONDONTWRITEBYTECODE, set on this machine): the test suite starts some 300
# Python processes, and without them each compiles the project's modules again and each pytest
# process rewrites the asserts of ~480 modules (4 s of CPU per xdist process).
unexport PYTHONDONTWRITEBYTECODE
STAMP := $(VENV)/.installed-$(shell cat requirements.lock requirements-dev.lock | cksum | cut -d' ' -f1)

.PHONY: install run test check lint lock system-packages bench token manage worker clean

# The dev lock, hashes required; then pip-sync removes whatever the lock does not name.
$(STAMP): requirements.lock requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/pip-sync --quiet requirements-dev.lock
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## The emulator, migrate, provision, demo data, then the Procfile's processes under honcho (Ctrl-C stops all).
run: install
	scripts/run-local.sh

## Lint, import contracts and the whole test suite (SQLite unless DATABASE_URL is set).
test: install lint system-packages
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(XDIST) --durations=15

## The fast lane: lint, import contracts and the tests that start no other process.
# On PostgreSQL the test databases are kept between runs (pytest-django's --reuse-db; new
# migrations are still applied); SQLite's are one file per run, quick to make. Three xdist
# processes on 2 cores: a few of these tests wait on a slow fake server (timeouts).
check: install lint
	$(BIN)/python -m pytest -n 3 $(XDIST) -m "not subprocess" $(if $(filter postgres%,$(DATABASE_URL)),--reuse-db)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/cfn-lint infra/shop.yaml
	$(BIN)/hadolint Dockerfile
	$(BIN)/python scripts/lock.py check

## Compile requirements*.lock from requirements*.txt (asks PyPI): make lock [UPGRADE="pkg ..."]
lock: install
	$(BIN)/python scripts/lock.py compile $(foreach package,$(UPGRADE),-P $(package))

## Debian packages the tests need (chromium, chromium-driver, wrk): installed when missing.
system-packages:
	scripts/system-packages.sh

## Benchmarks (PostgreSQL, the emulator, gunicorn, workers): make bench [BENCH_SIZE=tiny]
bench: install system-packages
	$(BIN)/python bench/run.py --size $(or $(BENCH_SIZE),full)

## Print an ID token for a demo customer while `make run` is up: make -s token EMAIL=bob@example.com
token: install
	@scripts/run-local.sh token $(or $(EMAIL),alice@example.com)

## A management command against the running shop: make -s manage CMD="dlq_list"
manage: install
	@scripts/run-local.sh manage $(CMD)

clean:
	rm -rf $(VENV) var db.sqlite3 staticfiles

# Named commands. Each target is a thin wrapper: without make, run the script directly
# (bash deploy/run.sh, bash deploy/test.sh, ...).

SHELL := /bin/bash
VENV := .venv
ARGS ?=

.PHONY: help run test test-fast lint format bench bench-quick services bootstrap clean fleet fleet-down fleet-test

help:
	@echo "make run        everything on this machine (PostgreSQL, Redis, sandbox, api, worker, beat, console) + demo"
	@echo "make test       the test suite, same set-up (pass pytest options with ARGS='-k name -x')"
	@echo "make test-fast  unit and in-process worker tests, seconds, PostgreSQL and Redis only"
	@echo "make fleet      a fleet on this machine (root): hosts as network namespaces, haproxy,"
	@echo "                PostgreSQL, Redis, RabbitMQ, Prometheus; prints the addresses, runs the demo"
	@echo "make fleet-down remove the fleet: every connxt-* namespace, link, rule and process"
	@echo "make fleet-test the fleet's chaos tests (-m fleet, a few minutes; .ci/run runs them)"
	@echo "make lint       ruff check + ruff format --check + mypy"
	@echo "make format     ruff format + ruff check --fix"
	@echo "make bench      benchmarks with wrk, ~10 min (ARGS='--only accept,webhooks', '--worker-args ...')"
	@echo "make bench-quick under 2 min: shorter runs, smaller backlogs, fewer scenarios"
	@echo "make services   make sure PostgreSQL and Redis are installed, running and ready"
	@echo "make bootstrap  .venv with the project installed, then services"
	@echo "make clean      remove .venv and caches (keeps .connxt/, which holds the local key)"

run:
	bash deploy/run.sh

test:
	bash deploy/test.sh $(ARGS)

test-fast:
	@bash deploy/bootstrap.sh
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -m pytest -p no:cacheprovider -q -n 3 tests/unit tests/workers $(ARGS)

bootstrap:
	bash deploy/bootstrap.sh

fleet:
	bash deploy/fleet/fleet.sh up
	bash deploy/fleet/fleet.sh demo

fleet-down:
	bash deploy/fleet/fleet.sh down

fleet-test:
	bash deploy/test.sh -m fleet tests/fleet $(ARGS)

services:
	bash deploy/services.sh

lint:
	@CONNXT_SKIP_SERVICES=1 bash deploy/bootstrap.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format:
	@CONNXT_SKIP_SERVICES=1 bash deploy/bootstrap.sh
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench:
	bash deploy/bootstrap.sh
	$(VENV)/bin/python -m bench $(ARGS)

bench-quick:
	bash deploy/bootstrap.sh
	$(VENV)/bin/python -m bench --quick $(ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Credit Ledger: `make run` serves everything, `make test` runs the whole suite.
# Both bootstrap .venv from the pinned requirements on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEVSTACK := $(PY) -m creditledger.devstack
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run dev test lint format migrate superuser verify relay replay verify-projections schema bench up down logs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-19s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the pinned requirements

run: $(STAMP) ## migrate and serve everything on http://127.0.0.1:4000 (PORT=8000 make run: another port)
	$(DEVSTACK) run

dev: $(STAMP) ## like run, with Django's auto-reloading development server for editing code
	$(DEVSTACK) run --reload

test: $(STAMP) ## run the whole test suite against a real PostgreSQL and Kafka-protocol broker
	DJANGO_SETTINGS_MODULE=config.settings.test $(DEVSTACK) test -- $(PY) -m pytest $(PYTEST_ARGS)

# mypy's Django plugin loads the settings, which need a DATABASE_URL; nothing connects to it.
lint: $(STAMP) ## ruff (lint and format check), mypy and import-linter: what CI runs before the tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DATABASE_URL=postgres://lint@127.0.0.1/not-connected $(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-logo

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The operator targets below run `manage.py`, which uses the running `make run` stack
# (.data/stack.env), else the embedded PostgreSQL; the Kafka ones need `make run` up.

migrate: $(STAMP) ## apply migrations
	$(PY) manage.py migrate

superuser: $(STAMP) ## create a staff superuser for the admin (no prompt when DJANGO_SUPERUSER_USERNAME, _EMAIL and _PASSWORD are set)
	$(PY) manage.py createsuperuser $(if $(DJANGO_SUPERUSER_PASSWORD),--no-input)

verify: $(STAMP) ## recompute every balance from the entries and check every invariant
	$(PY) manage.py verify_ledger $(ARGS)

relay: $(STAMP) ## drain the outbox to Kafka once, every shard in turn (needs make run's broker); ARGS='--shard 1' drains one
	$(PY) manage.py relay_outbox $(ARGS)

replay: $(STAMP) ## rebuild the read model and swap it in; ARGS=--from-kafka rebuilds from the topics
	$(PY) manage.py replay_projections $(ARGS)

verify-projections: $(STAMP) ## compare the read model with the ledger; ARGS='--wait 10' waits for the consumer
	$(PY) manage.py verify_projections $(ARGS)

schema: $(STAMP) ## write the OpenAPI schema to openapi.yaml
	$(PY) manage.py spectacular --validate --fail-on-warn --file openapi.yaml

bench: $(STAMP) ## run every benchmark scenario (~15 min, +10 the first time), then update benchmarks/README.md; BENCH_ARGS=... passes options
	$(PY) -m benchmarks.run $(BENCH_ARGS); status=$$?; $(PY) -m benchmarks.report; exit $$status

.PHONY: bench-smoke
bench-smoke: $(STAMP) ## every benchmark scenario at tiny sizes, in a minute or two (results under benchmarks/.work)
	@echo "bench-smoke: checks that every scenario runs; at these sizes its targets are not judged"
	$(PY) -m benchmarks.run --smoke --results-dir benchmarks/.work/smoke-results $(BENCH_ARGS)

up: ## build the image and start the docker-compose demo (docs/observability.md)
	docker compose up -d --build

down: ## stop the docker-compose demo and delete its volumes
	docker compose down -v

logs: ## follow the docker-compose demo's logs
	docker compose logs -f --tail=200

clean: ## remove the virtualenv and embedded data
	rm -rf $(VENV) .data

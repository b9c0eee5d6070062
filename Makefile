# Two entry points for a newcomer: `make demo` (a real sweep on the embedded SQLite default)
# and `make test` (the whole suite). Both set up .venv first; nothing else needs installing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The smoke study needs only a few hundred images: the committed slice of real CIFAR-10 works offline.
export SWEEPER_DATA_DIR ?= $(CURDIR)/tests/fixtures/cifar-10-batches-py

.PHONY: setup demo test test-fast lint system-packages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,jax-cpu,test]"
	touch $@

# The operators' checks (checkov, hadolint, bandit) in an environment of their own: checkov pins
# packages sweeper also uses. Only the tests need them, so `make demo` does not install them.
$(VENV)/ops/.installed: tests/operator-tools.txt
	$(PYTHON) -m venv $(VENV)/ops
	$(VENV)/ops/bin/python -m pip install --quiet -r tests/operator-tools.txt
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/sweeper sweep studies/smoke.toml --workers 2
	$(BIN)/sweeper report smoke

# System packages the tests drive for real: Debian's Chromium for the dashboard's browser test
# (Playwright's own browser download cannot work offline), PgBouncer for the Kubernetes tests,
# kubectl (with kustomize) to render the manifests. Installing needs root, as CI has; elsewhere
# the tests that need a missing one say they skipped, and why.
system-packages:
	@missing=""; for p in chromium pgbouncer kubectl; do command -v $$p >/dev/null || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite: lint, the fast part, then the load and outage tests (slow) and the Docker engine
# tests (engine), which run alone: they load every core themselves or start their own engine.
test: test-fast
	$(BIN)/python -m pytest -m "slow or engine" --durations=5

# Everything but the load, outage and engine tests, on 2 processes: each test runs real workers
# and training children that keep both cores busy; a third process only adds contention.
test-fast: setup $(VENV)/ops/.installed system-packages lint
	$(BIN)/python -m pytest -n 2 --dist worksteal -m "not slow and not engine" --durations=15

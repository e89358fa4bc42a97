# ows_pipeline: the two commands are `make demo` and `make test`; everything else is set-up they call.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OWS_HOME ?= $(CURDIR)/.ows
DAGSTER_HOME ?= $(OWS_HOME)/dagster
export OWS_HOME DAGSTER_HOME

.PHONY: demo test install system-deps dev webserver daemon validate bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed  ## virtualenv with the package and its test tools

system-deps:  ## Chromium, nginx and openssl for the end-to-end tests (Debian packages), when missing and apt is usable
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's$$missing for the end-to-end tests"; \
		policy=""; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' > $$policy; chmod +x $$policy; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		status=$$?; [ -z "$$policy" ] || rm -f $$policy; exit $$status; \
	fi

$(DAGSTER_HOME)/dagster.yaml:  ## the embedded instance: SQLite run storage under OWS_HOME
	@mkdir -p $(DAGSTER_HOME)
	@printf '# Embedded default instance: runs, events and schedules in SQLite in this folder.\ntelemetry:\n  enabled: false\n' > $@

demo: install $(DAGSTER_HOME)/dagster.yaml  ## build the demo source and run the weekly pipeline on the embedded default
	$(BIN)/ows-pipeline demo

test: install system-deps  ## dg check defs, then the whole test suite (PostgreSQL at 127.0.0.1:5432, Chromium, nginx)
	env -u DAGSTER_HOME $(BIN)/dg check defs
	$(BIN)/python -m pytest -q ows_pipeline_tests

dev: install $(DAGSTER_HOME)/dagster.yaml  ## the Dagster UI and daemon on http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

validate: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: install  ## all benchmarks at their default (small) sizes
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .ows .pytest_cache .hypothesis test-artifacts

# firebreak — the two commands a newcomer needs: `make demo` and `make test`.
# Both install what they need on a fresh Debian 12/13 machine (apt packages as root, a venv).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= /tmp/firebreak-demo
PYTEST_ARGS ?=
BENCH_ARGS ?=
# make test runs the tests in this many workers at once (pytest-xdist): most of their time is
# spent waiting on restic, servers and daemons, not on the 2 cores CI has. 1: one process.
TEST_WORKERS ?= 4

# Programs the tests and the demo run for real, and the Debian package that brings each.
APT_NEEDS := restic:restic rclone:rclone sshd:openssh-server initdb:postgresql \
	nft:nftables ip:iproute2 runuser:util-linux promtool:prometheus \
	amtool:prometheus-alertmanager pg_dump:postgresql-client mariadb-dump:mariadb-client \
	mkfs.ext4:e2fsprogs chromium:chromium \
	qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils debootstrap:debootstrap socat:socat

# Other restic releases the tests run (Debian trixie's and sid's), unpacked into a cache.
RESTIC_CACHE ?= $(HOME)/.cache/firebreak-tests/restic
export FIREBREAK_TEST_RESTICS := $(RESTIC_CACHE)

.PHONY: help deps venv restic-versions lint typecheck generate test test-fast test-systemd soak bench bench-fleet demo demo-once demo-stop clean

help:
	@echo "make demo    - set everything up, run the daemon on a demo config (three demo sites, a cycle a minute)"
	@echo "make test    - set everything up, then lint, type-check and run the whole test suite"
	@echo "make lint | typecheck | test-fast | restic-versions | test-systemd | bench | bench-fleet | generate | demo-once | demo-stop | clean"

deps:
	@missing=""; \
	for need in $(APT_NEEDS); do \
		prog=$${need%%:*}; pkg=$${need##*:}; \
		if ! command -v $$prog >/dev/null 2>&1 && ! ls /usr/sbin/$$prog /usr/lib/postgresql/*/bin/$$prog >/dev/null 2>&1; then \
			missing="$$missing $$pkg"; fi; \
	done; \
	if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run make as root, or apt-get install them)"; exit 1; fi; \
		echo "installing Debian packages:$$missing"; \
		apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

restic-versions: deps  ## restic 0.18 and 0.19 (and restic-rest-server) from Debian's archive into RESTIC_CACHE; the system stays as it is
	bash tests/support/restic-versions.sh $(RESTIC_CACHE)

lint: venv
	$(BIN)/ruff check daemon migrations tests
	$(BIN)/ruff format --check daemon migrations tests

typecheck: venv
	$(BIN)/mypy

generate: venv  ## rewrite config/schema.json, config/firebreak.example.yaml, docs/configuration.md
	$(BIN)/python -m firebreak.config.generate --write .

test: deps venv restic-versions lint typecheck
	$(BIN)/pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS)) $(PYTEST_ARGS)

bench: deps venv  ## every target of docs/performance.md, PASS/FAIL: firebreak beside plain restic on a seeded 1 GiB dataset, slow links, the daemon, a 1M-run history (BENCH_ARGS=--small: a quick run)
	$(BIN)/python -m tests.benchmarks.bench $(BENCH_ARGS)

bench-fleet: deps venv  ## a fleet exporter over 100 hosts and 10M runs (BENCH_DATABASE_URL=postgresql+psycopg://…, emptied)
	$(BIN)/python -m tests.benchmarks.fleet

soak: deps venv  ## the daemon for SOAK_SECONDS (600) with random faults, then nothing may be lost (not in make test)
	$(BIN)/python -m tests.soak.soak

test-systemd: deps venv  ## the service on a real systemd, in a qemu guest (make test runs it too)
	$(BIN)/pytest tests/systemd $(PYTEST_ARGS)

test-fast: venv  ## unit tests only, no servers (about 30 s)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

demo: deps venv
	DEMO_DIR=$(DEMO_DIR) FIREBREAK=$(abspath $(BIN))/firebreak bash deploy/demo/run-demo.sh

demo-once: deps venv  ## one cycle and `firebreak status`, no daemon
	DEMO_DIR=$(DEMO_DIR) FIREBREAK=$(abspath $(BIN))/firebreak bash deploy/demo/run-demo.sh --once

demo-stop:
	DEMO_DIR=$(DEMO_DIR) bash deploy/demo/run-demo.sh --stop

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The two commands: `make run` and `make test`. Both create .venv and install
# the package on first use (and again only when pyproject.toml changes).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.textwire-installed

.PHONY: run test lint typecheck install browsers clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,postgres]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/textwire sandbox

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

# The browser tests drive the system's Chromium (Playwright cannot download
# its own here). Installed once with apt-get when missing and we are root;
# otherwise those tests skip locally (and fail in CI).
CHROMIUM ?= /usr/bin/chromium

browsers:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium >/dev/null; } \
		|| echo "warning: could not install chromium; the browser tests need it"; \
	else \
		echo "note: $(CHROMIUM) missing (apt-get install chromium); browser tests skip"; \
	fi

test: lint typecheck browsers
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build src/*.egg-info

# Benchmarks against the quickstart baseline (not part of `make test`): writes
# bench/results/latest.md and latest.json; see bench/__main__.py for settings.
# Needs wrk (installed with apt-get when missing and we are root) and the
# PostgreSQL server at 127.0.0.1:5432.
.PHONY: bench
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get install -y -qq wrk >/dev/null 2>&1 \
			|| { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }; } \
		|| { echo "bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python -m bench

# Soak under faults (not part of `make test`, which runs a short version in
# tests/test_soak.py): gunicorn -w 2 + 2 `textwire worker` on PostgreSQL at
# 127.0.0.1:5432 against the emulator injecting 500s, 429s and stalls, one
# worker SIGKILLed midway; writes bench/results/soak.md and soak.json and fails
# on any duplicate, lost reply or /metrics disagreement. SOAK_MESSAGES=20000 by
# default; see bench/soak.py for the other settings.
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m bench.soak

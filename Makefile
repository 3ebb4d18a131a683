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

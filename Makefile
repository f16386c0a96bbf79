# reengage — `make run` brings the whole system up, `make test` runs the suite.
# Both create .venv and install on first use; nothing else is needed but Python.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run banner test lint format snippet screenshots check-deploy clean-data embedded-status embedded-stop sdk-packages

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[embedded,dev]'
	@touch $@

install: $(STAMP)

# Reads .env when there is one (variables already set in the shell win), e.g.
# PORT=8001 or an ESP's ANYMAIL_* settings; see README.md.
run: $(STAMP)
	$(if $(wildcard .env),$(VENV)/bin/dotenv -f .env run --no-override --) $(PY) manage.py devserver

# The URLs of a running `make run`, printed again (Enter in its terminal does the same).
banner: $(STAMP)
	@$(if $(wildcard .env),$(VENV)/bin/dotenv -f .env run --no-override --) $(PY) manage.py devserver --banner

test: $(STAMP) lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The official Segment and RudderStack JS SDKs the tests run (tests/sdk/), from npm
# into .data/npm/ (tests/sdk_packages.py); the tests install them too when missing.
sdk-packages: $(STAMP)
	$(PY) -m tests.sdk_packages

# Rebuild static/reengage/reengage.js after editing reengage.src.js.
snippet: $(STAMP)
	$(PY) -m tracking.snippet_build

# Retake docs/img/ from the end-to-end test's key screens (tools/docs_screenshots.py).
screenshots: $(STAMP)
	$(PY) tools/docs_screenshots.py

embedded-status: $(STAMP)
	$(PY) -m reengage.embedded status

embedded-stop: $(STAMP)
	$(PY) -m reengage.embedded stop

clean-data: embedded-stop
	rm -rf .data

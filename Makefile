# NovaCron Stream — two commands: `make run` and `make test`.
# Prerequisites: Python 3.11+, Java 17+, Maven 3 (the local Kafka broker comes from Maven
# Central), kcat for the contract tests and chromium for the status-page test (both installed
# with apt-get when missing, as root).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup tools run test unit integration lint docs clean

setup: $(STAMP) tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "novacron needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

tools:
	@command -v java >/dev/null || { echo "java not found: install Java 17+ (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "mvn not found: install Maven 3 (e.g. apt-get install maven)"; exit 1; }
	@command -v kcat >/dev/null || command -v kafkacat >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing kcat (Debian package) for the contract tests"; \
	    (apt-get install -y -qq kcat >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq kcat)) ; \
	  else echo "kcat not found: install it (Debian/Ubuntu: apt-get install kcat; macOS: brew install kcat)"; exit 1; fi; }
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (Debian package) for the status page tests"; \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)) ; \
	  else echo "chromium not found: install it (Debian/Ubuntu: apt-get install chromium; macOS: brew install --cask chromium)"; exit 1; fi; }
	@$(BIN)/python -c 'from streams.broker import ensure_jars; ensure_jars()'

## Start a local broker, a worker and a live replay of real traces; Ctrl-C stops all of it.
run: setup
	$(BIN)/novacron run

## Every test: unit, doctests and integration against the real local broker.
test: setup
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit streams agents schemas

integration: setup
	$(BIN)/pytest tests/integration

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

docs: setup
	$(BIN)/novacron settings --markdown > docs/settings.md

clean:
	rm -rf .novacron .pytest_cache .mypy_cache .ruff_cache

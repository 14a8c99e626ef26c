# The two commands: `make up` starts everything, `make test` runs the whole test suite.
# Both create .venv and install Braid into it first (torch is pinned to its CPU build).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.braid-installed

.PHONY: up test bench soak lint tools

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[models,dev]'
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/braid up

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Debian's packages the tests use: docker-compose validates compose.yaml; chromium and its
# chromedriver drive the job page (/ui) in a real headless browser
tools:
	@command -v docker-compose >/dev/null && command -v chromedriver >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose chromium chromium-driver >/dev/null; }

test: lint tools
	$(VENV)/bin/pytest

# Braid against BentoML (installed into its own venv under .braid/bench on first use)
bench: $(STAMP)
	$(PY) -m bench --against bentoml

# 2,000 jobs while worker processes are killed every 10 s and Redis restarts once (minutes)
soak: $(STAMP)
	$(PY) -m tests.soak

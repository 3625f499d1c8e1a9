# Two entry points: `make run` (the app on the embedded default) and `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run test setup demo bench clean-var

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.req-stamp: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev-stamp: requirements-dev.txt $(VENV)/.req-stamp
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@

setup: $(VENV)/.req-stamp
	$(BIN)/python -m audit setup

# One worker runs beside the app (jobs: reports, full audits, reference sets) and stops with it.
run: setup
	$(BIN)/python -m audit worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT; trap 'exit 130' INT TERM; \
	$(BIN)/python -m streamlit run serve.py --server.address $(HOST) --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false

test: $(VENV)/.dev-stamp
	$(BIN)/python -m pytest

demo: $(VENV)/.req-stamp
	$(BIN)/python -m audit demo

bench: $(VENV)/.dev-stamp
	$(BIN)/python -m audit.bench attribution
	$(BIN)/python -m audit.bench tcav
	$(BIN)/python -m audit.bench text

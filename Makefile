# ggzy — every target sets itself up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: install demo test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	GGZY_HOME=$${GGZY_HOME:-var/demo} $(BIN)/ggzy init
	GGZY_HOME=$${GGZY_HOME:-var/demo} $(BIN)/ggzy deploy rules forms bpmn
	GGZY_HOME=$${GGZY_HOME:-var/demo} $(BIN)/python -m engine.demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/ggzy bench

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

# ggzy — every target sets itself up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
VENDOR := web/static/vendor

.PHONY: install demo test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml package.json package-lock.json
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/pico $(VENDOR)/htmx
	cp node_modules/@picocss/pico/css/pico.min.css $(VENDOR)/pico/
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/htmx/
	cp -r node_modules/bpmn-js/dist $(VENDOR)/bpmn-js
	cp -r node_modules/dmn-js/dist $(VENDOR)/dmn-js
	cp -r node_modules/diff2html/bundles $(VENDOR)/diff2html
	touch $(STAMP)

DEMO_HOME ?= var/demo

demo: install
	rm -rf $(DEMO_HOME)
	GGZY_HOME=$(DEMO_HOME) GGZY_SWEEP_SECONDS=$${GGZY_SWEEP_SECONDS:-2} $(BIN)/ggzy demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/ggzy bench
	$(BIN)/python -m web.bench

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache node_modules $(VENDOR)

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint serve bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/chartkeeper demo-setup
	$(BIN)/chartkeeper serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

serve: $(STAMP)
	$(BIN)/chartkeeper serve --host 127.0.0.1 --port 8000

clean:
	rm -rf $(VENV) var build *.egg-info

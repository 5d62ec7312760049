# Two commands matter: `make serve` and `make test` (`make dev` for development). Each creates .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
export FLASK_APP := app

.PHONY: serve dev test e2e lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

serve: $(VENV)/.installed  ## migrate and serve the portal on http://127.0.0.1:5000 (Granian, app/serve.py)
	$(BIN)/flask db upgrade
	exec $(BIN)/python -m app.serve --host $(HOST) --port $(PORT)

dev: $(VENV)/.installed  ## the same with Flask's reloading development server
	$(BIN)/flask db upgrade
	$(BIN)/flask run --debug --host $(HOST) --port $(PORT)

# Test processes: one per CPU (pytest-xdist); TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= auto

test: $(VENV)/.installed-dev  ## the whole suite in parallel (SQLite unless DATABASE_URL says otherwise)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

e2e: $(VENV)/.installed-dev  ## only the browser tests (Debian chromium)
	$(BIN)/python -m pytest -m e2e tests/e2e

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache

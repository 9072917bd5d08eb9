# The README's two quickstart commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: install run test test-fast lint eval bench browser postgres clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned requirements

run: $(STAMP)  ## set up, build the index if needed, start the app on 127.0.0.1:7860
	$(BIN)/python ingest.py --skip-invalid
	$(BIN)/python app.py

test: $(STAMP) browser postgres  ## set up and run lint + the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-fast: $(STAMP) browser postgres  ## lint + the fast tier (< 2 min): tests not marked slow, with a small fake embedder
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	CHATBOT_TEST_EMBEDDER=fake $(BIN)/python -m pytest -m "not slow"

eval: $(STAMP)
	$(BIN)/python -m chatbot eval

browser:  ## Debian's headless Chromium for the UI tests (Playwright's own download is not used)
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

postgres:  ## Debian's PostgreSQL server binaries for the CHATBOT_DATABASE_URL tests (they start their own server)
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql; }

clean:
	rm -rf .chroma var .pytest_cache .ruff_cache

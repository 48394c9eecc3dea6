# The two commands a newcomer needs: `make run` and `make test`. Both install what they need first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/pgvault serve

# --dist loadgroup: the tests of one PostgreSQL major of the version matrix share a backed-up source on one worker.
# A private temporary folder per run: pytest prunes "old" numbered folders of other sessions under
# /tmp/pytest-of-$USER, which would pull the data folders out from under a concurrent run's servers.
test: install
	bash scripts/test-deps.sh
	tmp=$$(mktemp -d /tmp/pgvault-tests.XXXXXX); \
	$(BIN)/python -m pytest -n 2 --dist loadgroup --basetemp="$$tmp/t" $(PYTEST_ARGS); rc=$$?; rm -rf "$$tmp"; exit $$rc

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: install
	@command -v zstd >/dev/null 2>&1 || { echo "make bench needs the zstd command-line tool (the floor pipeline): apt-get install zstd"; exit 1; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# Two commands: `make run` (set up, build the demo repository, serve it) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo-repository
PORT   ?= 8000

.PHONY: setup frameworks run test lint format proto bench-swap bench-memory bench-throughput bench-batching bench-profile bench-many-models clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

setup: $(STAMP)

# The framework backends' packages (large): installed for the tests, not needed by `make run`.
FRAMEWORKS := $(VENV)/.frameworks-installed
$(FRAMEWORKS): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,fleet,torch,tensorflow,paddle]'
	touch $@

frameworks: $(FRAMEWORKS)

run: setup
	$(BIN)/baton demo-repository $(DEMO)
	$(BIN)/baton serve --repository $(DEMO) --http-port $(PORT)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache

format: setup
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

proto: setup
	$(BIN)/python src/baton/api/grpc/generate.py

test: setup frameworks lint
	$(BIN)/pytest

BENCH := $(VENV)/.bench-installed
$(BENCH): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $@

bench-swap: $(BENCH)
	$(BIN)/python bench/swap_under_load.py

bench-memory: $(BENCH)
	$(BIN)/python bench/swap_memory.py

bench-throughput: $(BENCH)
	$(BIN)/python bench/throughput.py

bench-batching: $(BENCH)
	$(BIN)/python bench/batching.py

bench-profile: $(BENCH)
	$(BIN)/python bench/profile_hot_path.py

bench-many-models: $(BENCH)
	$(BIN)/python bench/many_models.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache src/*.egg-info

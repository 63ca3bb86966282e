# Two commands: `make run` (set up, build the demo repository, serve it) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo-repository
PORT   ?= 8000

# `make run-fleet`: etcd, an S3 stand-in and three nodes on loopback (see README: Fleet).
.PHONY: setup frameworks run run-fleet etcd chromium test screenshot lint format proto bench-swap bench-memory bench-throughput bench-batching bench-profile bench-many-models bench-fleet bench-workers bench-sequences bench-peers clean

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

# The fleet tests and `make run-fleet` run a real etcd: Debian's etcd-server, installed when
# missing (as root, or with sudo).
etcd:
	@command -v etcd >/dev/null 2>&1 || { \
	  echo "installing Debian's etcd-server (for the fleet tests and make run-fleet)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq etcd-server >/dev/null; }

# The dashboard's browser tests drive Debian's chromium through Playwright (never
# `playwright install`, which downloads a browser): installed when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (for the dashboard's browser tests)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

FLEETDEPS := $(VENV)/.fleet-installed
$(FLEETDEPS): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,fleet]'
	touch $@

run-fleet: $(FLEETDEPS) etcd
	$(BIN)/python -m baton.dev.fleet_demo

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache

format: setup
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

proto: setup
	$(BIN)/python src/baton/api/grpc/generate.py

test: setup frameworks etcd chromium lint
	$(BIN)/pytest

# The README's picture of the dashboard, taken by the browser test during a canary rollout.
screenshot: setup chromium
	BATON_SCREENSHOT=docs/dashboard.png $(BIN)/pytest -q tests/integration/test_dashboard.py -k canary

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

bench-fleet: $(BENCH) $(FLEETDEPS) etcd
	$(BIN)/python bench/fleet.py

bench-workers: $(BENCH)
	$(BIN)/python bench/workers.py

bench-sequences: $(BENCH)
	$(BIN)/python bench/sequences.py

# MLServer, KServe, Ray Serve and TorchServe (Java) in venvs of their own: ~10 min to install
bench-peers: $(BENCH)
	$(BIN)/python bench/peers.py --rounds 2

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache src/*.egg-info

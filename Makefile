# Metamorphostreams: the commands. `make run` starts a broker, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ./data
PORT ?= 9092

.PHONY: install run test test-reference reference-kafka lint gen gen-check bench bench-quick bench-profile bench-cluster clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: install
	$(BIN)/mms broker --data-dir $(DATA_DIR) --port $(PORT)

test: install
	bash tools/install-test-deps.sh
	$(BIN)/python tools/gen_protocol.py --check
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

reference-kafka:
	bash tools/reference-kafka/fetch.sh

test-reference: install reference-kafka
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/reference tests/interop $(PYTEST_ARGS)

bench: install reference-kafka
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: install reference-kafka
	$(BIN)/python bench/run.py --quick $(BENCH_ARGS)

# Three of our brokers (and a ZooKeeper: tools/install-test-deps.sh) beside three Kafka nodes.
bench-cluster: install reference-kafka
	$(BIN)/python bench/cluster.py $(BENCH_ARGS)

bench-profile: install reference-kafka
	$(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python bench/run.py --brokers ours --rounds 1 --profile $(BENCH_ARGS)
	$(BIN)/python bench/profile_top.py bench/out/profile-*.txt

lint: install
	$(BIN)/ruff check src tools tests bench
	$(BIN)/mypy

gen: install
	$(BIN)/python tools/gen_protocol.py

gen-check: install
	$(BIN)/python tools/gen_protocol.py --check

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

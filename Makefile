# Perimeter — the two commands a new user needs:
#   make run    fetch and verify the models, build, ingest the sample corpus, serve on 127.0.0.1:8080
#   make test   build and run the whole test suite
# Everything they need is installed by scripts/setup.sh and scripts/fetch-models.py.

DATA_DIR ?= data
LISTEN   ?= 127.0.0.1:8080
BIN      := target/release/perimeter
CARGO    ?= cargo

.PHONY: run test setup models build bench clean-data

run: setup models build
	scripts/run.sh "$(BIN)" "$(DATA_DIR)" "$(LISTEN)"

test: setup models
	$(CARGO) test --release --locked --workspace
	scripts/test-openai-client.sh "$(BIN)"
	scripts/test-api-fuzz.sh "$(BIN)"

setup:
	scripts/setup.sh

models:
	python3 scripts/fetch-models.py

build: setup
	$(CARGO) build --release --locked -p perimeter-cli

bench: setup models build
	scripts/bench.sh "$(BIN)"

clean-data:
	rm -rf "$(DATA_DIR)"

# token-broker: every task a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Pinned build tools, installed from PyPI into a venv under target/ when missing.
CARGO_LAMBDA_VERSION := 1.9.2
# zig 0.16.0 broke ring's and aws-lc's builds; 0.17.1 works.
ZIG_VERSION := 0.17.1
SAM_CLI_VERSION := 1.170.0
TOOLS := target/tools-venv
TOOLS_BIN := $(abspath $(TOOLS))/bin
FUNCTIONS := login callback token verify revoke import keepalive
# The bench measures the functions that serve clients and monitors; import is an admin action.
BENCH_FUNCTIONS := $(filter-out import,$(FUNCTIONS))

.PHONY: help serve keepalive discover test lint fmt build tools deploy watch invoke bench fuzz clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

serve: ## Run the whole broker locally on 127.0.0.1:9000, configured from .env (see .env.example)
	cargo run --release --locked --features local --bin serve

keepalive: ## Run one keep-alive pass over the local store (or REDIS_URL) and print the report
	cargo run --release --locked --features local --bin serve -- keepalive

discover: ## Print the variables an OAuth/OIDC issuer's metadata gives, to pin (make discover ISSUER=https://...)
	$(if $(ISSUER),ISSUER='$(ISSUER)') cargo run --release --locked --features local --bin serve -- discover

test: ## Run every test against real stores (Redis, a Redis Cluster, a DynamoDB emulator; installed when missing) and fake providers
	cargo fmt --all -- --check
	scripts/with-services.sh cargo test --all-targets --all-features --locked
	cargo clippy --all-targets --all-features --locked -- -D warnings
	scripts/lint-template.sh
	scripts/lint-openapi.sh
	scripts/e2e.sh
	$(MAKE) --no-print-directory bench BENCH=short BENCH_VARIANTS= BENCH_AGAINST=

lint: ## Formatting, clippy, the SAM template lint and the OpenAPI validation
	cargo fmt --all -- --check
	cargo clippy --all-targets --all-features --locked -- -D warnings
	scripts/lint-template.sh
	scripts/lint-openapi.sh

fmt: ## Format the code
	cargo fmt --all

$(TOOLS)/.installed:
	python3 -m venv $(TOOLS) || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv $(TOOLS); }
	$(TOOLS_BIN)/pip install -q cargo-lambda==$(CARGO_LAMBDA_VERSION) ziglang==$(ZIG_VERSION) aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

tools: $(TOOLS)/.installed ## Install cargo-lambda, zig and the SAM CLI into target/tools-venv
	rustup target add aarch64-unknown-linux-gnu

build: tools ## Build one arm64 bootstrap.zip per function in target/lambda/<function>/
	PATH="$(TOOLS_BIN):$$PATH" cargo lambda build --release --arm64 --output-format zip
	@for f in $(FUNCTIONS); do ls -l target/lambda/$$f/bootstrap.zip; done

deploy: tools ## Build with SAM and deploy (asks for the parameters on the first run)
	PATH="$(TOOLS_BIN):$$PATH" sam build
	PATH="$(TOOLS_BIN):$$PATH" sam deploy --guided

# Not 9000, where `make serve` listens, so that both can run at once.
WATCH_PORT ?= 9100
watch: tools ## Serve the functions locally through cargo-lambda's emulator on :9100 (WATCH_PORT), configured from .env
	@[ -f .env ] || { echo "make watch: create .env first (cp .env.example .env; REDIS_URL is required here)" >&2; exit 1; }
	PATH="$(TOOLS_BIN):$$PATH" cargo lambda watch --invoke-port $(WATCH_PORT) --env-file .env

FN ?= token
EVENT ?= $(FN)
invoke: tools ## Send events/$(EVENT).json to function $(FN) running under `make watch`
	PATH="$(TOOLS_BIN):$$PATH" cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port $(WATCH_PORT) $(FN) --data-file events/$(EVENT).json && echo

BENCH ?= full
# Alternatives to measure beside today's code: folders of bench/variants/, or "all" (BENCHMARKS.md).
BENCH_VARIANTS ?=
# A git revision whose token to measure beside today's (BENCHMARKS.md).
BENCH_AGAINST ?=
bench: ## Benchmark the functions against a hello-world (BENCH=short: check that it runs; BENCH_VARIANTS=all: the alternatives too); see BENCHMARKS.md
	BENCH=$(BENCH) BENCH_VARIANTS="$(BENCH_VARIANTS)" BENCH_AGAINST="$(BENCH_AGAINST)" FUNCTIONS="$(BENCH_FUNCTIONS)" scripts/bench.sh

FUZZ_SECONDS ?= 60
fuzz: ## Fuzz the parsers with cargo-fuzz, FUZZ_SECONDS (default 60) per target; installs cargo-fuzz if missing
	scripts/fuzz.sh $(FUZZ_SECONDS)

clean: ## Remove build output
	cargo clean

# The single interface to the project. CI (.ci/run) calls these same targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_OUT := protos/python/src
PROTO_FILES := protos/lipsync/v1/lipsync.proto protos/optimized_lipsyncsrv.proto
PY_SOURCES := $(wildcard services protos/python loadtests deploy)
PORT ?= 50051
WS_PORT ?= 8086
# The address `make run` binds (server, its metrics and the proxy); HOST=0.0.0.0 opens it to the network.
HOST ?= 127.0.0.1

.PHONY: help venv protos protos-check run run-server test lint fmt clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/activate: requirements-dev.txt services/*/requirements*.txt services/*/pyproject.toml \
  protos/python/pyproject.toml deploy/otlp-sink/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt \
	  -r services/lipsync-server/requirements.txt -r services/proxy/requirements.txt \
	  -e protos/python -e services/common -e services/lipsync-server -e services/proxy -e services/protocol \
	  -e deploy/otlp-sink
	touch $@

venv: $(BIN)/activate ## Create .venv with both services and everything the tests and linters use

protos: $(BIN)/activate ## Generate Python code and .pyi stubs from protos/ into lipsync_protos
	rm -rf $(PROTO_OUT)/lipsync_protos/lipsync $(PROTO_OUT)/lipsync_protos/optimized_lipsyncsrv_pb2*
	$(BIN)/python -m grpc_tools.protoc -Ilipsync_protos=protos \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
	  --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) \
	  --grpc_python_out=$(PROTO_OUT) --mypy_grpc_out=$(PROTO_OUT) $(PROTO_FILES)

protos-check: protos ## Fail when the committed generated code differs from protos/
	git diff --exit-code -- $(PROTO_OUT)
	test -z "$$(git status --porcelain -- $(PROTO_OUT))"

run-server: $(BIN)/activate ## Run lipsync-server alone with the demo avatar
	$(BIN)/lipsync-server --host $(HOST) --port $(PORT)

# Both processes in the foreground; Ctrl-C (or either one exiting) stops both.
run: $(BIN)/activate ## Run server + proxy natively on 127.0.0.1 (HOST=… widens it); open http://localhost:8086/
	@$(BIN)/lipsync-server --host $(HOST) --port $(PORT) & server=$$!; \
	$(BIN)/lipsync-proxy --host $(HOST) -ws-port $(WS_PORT) -grpc-addr 127.0.0.1:$(PORT) & proxy=$$!; \
	trap 'kill -TERM $$server $$proxy 2>/dev/null' INT TERM; \
	echo "open http://localhost:$(WS_PORT)/  (Ctrl-C stops both)"; \
	wait -n; kill -TERM $$server $$proxy 2>/dev/null; wait

test: $(BIN)/activate ## Run every test
	$(BIN)/pytest

lint: $(BIN)/activate deploy-lint ## ruff, ruff format --check, mypy --strict, and the deploy linters
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy services/common/src services/lipsync-server/src services/proxy/src services/protocol/src \
	  deploy/otlp-sink/src deploy/smoke deploy/scripts deploy/tests loadtests

fmt: $(BIN)/activate ## Format and fix what ruff can
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

clean: ## Remove the venv, caches and build output
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +

include deploy/deploy.mk
include loadtests/loadtests.mk
include loadtests/reliability.mk

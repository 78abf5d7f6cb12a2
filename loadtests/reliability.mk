# Fuzzing and the fault suite (docs/reliability.md). Included by the root Makefile, which defines BIN
# (the virtualenv's bin directory) and $(BIN)/activate; atheris comes from requirements-dev.txt.

# The whole fuzz budget in seconds, shared equally by the seven targets, e.g. FUZZ_SECONDS=3600.
FUZZ_SECONDS ?= 60
# Extra pytest flags for the fault suite, e.g. CHAOS_ARGS="-k overload".
CHAOS_ARGS ?=

.PHONY: fuzz chaos reliability-doc

fuzz: $(BIN)/activate ## atheris on the codecs, the package loader and the server's RPCs, FUZZ_SECONDS in all
	$(BIN)/python -m loadtests.fuzz --seconds $(FUZZ_SECONDS)

chaos: $(BIN)/activate ## The fault suite: real processes on loopback, every fault measured and asserted (~2 min)
	$(BIN)/pytest loadtests/chaos/tests -p no:cacheprovider $(CHAOS_ARGS)

reliability-doc: $(BIN)/activate ## Write the figures of the last `make chaos` and `make fuzz` into docs/reliability.md
	$(BIN)/python -m loadtests.chaos.report

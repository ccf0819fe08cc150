# Two commands set up a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# The CPU build of torch lies on local disk; an unpinned torch would download GBs of CUDA wheels.
TORCH := torch==2.13.0

.PHONY: demo test test-all bench install dev clean lint-imports engines mutate fuzz

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e . $(TORCH)
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]' $(TORCH)
	touch $(STAMP) $@

install: $(STAMP)
dev: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/stoker demo

# lint-imports: the layers contract in pyproject.toml (docs/ARCHITECTURE.md); a wrong-way
# import fails here, naming the importing module and line. ruff: the rules pinned in
# pyproject.toml ([tool.ruff.lint]).
test: $(DEV_STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks tools examples
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

test-all: $(DEV_STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks tools examples
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint-imports: $(DEV_STAMP)
	$(BIN)/lint-imports

# Deliberate breaks of the guarantees (tools/mutate/mutations.py), applied one at a time to a
# scratch copy of src/; each must make its named tests fail. Not part of `make test`.
mutate: $(DEV_STAMP)
	$(BIN)/python tools/mutate/run.py

# The property test of untrusted input (tests/package/test_untrusted_fuzz.py) with a larger
# budget than `make test` gives it (fixed seed either way; FUZZ_EXAMPLES=N to change it).
FUZZ_EXAMPLES ?= 3000
fuzz: $(DEV_STAMP)
	STOKER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/package/test_untrusted_fuzz.py

# QUICK=1: every benchmark with --quick (tiny sizes, seconds; what `make test` runs).
bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick)

# Root-only provisioning of the real engines the launch tests use (Slurm + munge, Docker, sshd).
# Not part of `make test`: without it those tests report "skipped: no engine" instead.
engines:
	bash tools/engines/install.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info

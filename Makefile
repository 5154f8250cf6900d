# The two commands that matter: `make run` (whole local stack) and `make test` (everything CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQUIREMENTS := requirements.txt requirements-dev.txt requirements-lambda-runtime.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | cksum | cut -d' ' -f1)
# boto3/botocore as the Lambda runtime provides them, apart from the dev venv's: the package-as-Lambda test
# (tests/e2e/test_package_runs_as_lambda.py) puts only these and the unzipped package on a fresh interpreter's path.
LAMBDA_RUNTIME := $(VENV)/lambda-runtime
PORT ?= 8000
MOTO_PORT ?= 5050
SANDBOX_PORT ?= 8081
BRAZE_PORT ?= 8082

.PHONY: install run test lint unit e2e bench clean package soak soak-spill soak-sync sim mutants

$(STAMP): $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -rf $(LAMBDA_RUNTIME)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --target $(LAMBDA_RUNTIME) \
		-r requirements-lambda-runtime.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m localworld run --port $(PORT) --moto-port $(MOTO_PORT) --sandbox-port $(SANDBOX_PORT) --braze-port $(BRAZE_PORT) \
		$(if $(QUEUED),--queued,)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Test modules run in parallel, one module per worker at a time (some share a moto server or a port).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")
test: lint
	PYTHONHASHSEED=0 $(BIN)/python -m pytest --durations=20 -n $(TEST_WORKERS) --dist loadfile

unit: install
	$(BIN)/python -m pytest -m "not e2e"

e2e: install
	$(BIN)/python -m pytest -m e2e

bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench.figures

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# chalice package, then the bytecode of the modules the Lambda init imports (scripts/bytecode.py: compiled by
# this venv's Python, which must be the functions' runtime; Lambda's /var/task is read-only, so it cannot cache it).
STAGE ?= prod
package: install
	mkdir -p build
	$(BIN)/python -m bridgectl --stage $(STAGE) stage merge-template > build/merge-$(STAGE).json
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/chalice package --stage $(STAGE) \
		--merge-template build/merge-$(STAGE).json build/$(STAGE)
	$(BIN)/cfn-lint build/$(STAGE)/sam.json
	$(BIN)/python -m scripts.bytecode build/$(STAGE)/deployment.zip --runtime-dir $(LAMBDA_RUNTIME)
	@ls -l build/$(STAGE)/deployment.zip

soak: install
	$(BIN)/python -m bench.soak

soak-spill: install
	SOAK_MODE=spill $(BIN)/python -m bench.soak

soak-sync: install
	$(BIN)/python -m bench.sync_soak

# The deterministic simulator (tests/simulation): SEEDS seeds from START, one process per CPU; prints
# seeds/second and every violation with its short history and the command that replays it.
SEEDS ?= 200
START ?= 1
sim: install
	PYTHONHASHSEED=0 $(BIN)/python -m tests.simulation --seeds $(SEEDS) --start $(START)

# Break each mechanism by hand (tests/mutants/*.patch) and see whether a test fails.
mutants: install
	$(BIN)/python -m tests.mutants

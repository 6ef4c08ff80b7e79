# The two commands a newcomer needs: `make run` and `make test`. Each does its whole set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit integration bench system-deps venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[console,postgres,test]'
	touch $(STAMP)

# gssapi (the kerberos extra) builds from source against libkrb5-dev, which system-deps installs:
# it comes after them, and only for the tests and benchmarks (make run needs neither).
KRB_STAMP := $(VENV)/.kerberos
$(KRB_STAMP): pyproject.toml | $(STAMP) system-deps
	$(BIN)/python -m pip install -q -e '.[kerberos]'
	touch $(KRB_STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

## run: set up, then start the admin console on SQLite (./var/egress.db) at http://127.0.0.1:8080/
## (the first run prints the admin password once and imports examples/egress.yaml)
run: $(STAMP)
	$(BIN)/egress console --import examples/egress.yaml $(ARGS)

## test: set up, then lint, type-check and run every test against real services
test: $(STAMP) system-deps $(KRB_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider src/egress tests/unit

bench: $(STAMP) system-deps $(KRB_STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis build src/*.egg-info

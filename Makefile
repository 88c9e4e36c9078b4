# The two commands of the README: `make start` runs the gateway, `make test` runs every test.
PYTHON ?= python3

.PHONY: start test lint bench

start:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e .
	$(PYTHON) -m gateway

test:
	bash scripts/install-test-deps.sh
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint:
	ruff check gateway tests bench

bench:
	$(PYTHON) -m bench

# The two commands of the README: `make start` runs the gateway, `make test` runs every test.
PYTHON ?= python3
# Re-installed only when pyproject.toml changed (or the interpreter did): the stamp records it.
STAMP := .make/installed-$(notdir $(PYTHON))

.PHONY: start test lint bench

start: $(STAMP)
	$(PYTHON) -m gateway

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e .
	@mkdir -p $(dir $@) && touch $@

test:
	bash scripts/install-test-deps.sh
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint:
	ruff check gateway tests bench

bench:
	$(PYTHON) -m bench

# The two commands: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov

.PHONY: demo test test-unit bench lint clean catalog

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# checkov clashes with python-hcl2, so it lives in its own virtualenv.
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q "checkov>=3.2,<4"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m functions.local.demo $(if $(KEEP),--keep)

# Both virtualenvs are built side by side; then two test workers, a test file each at a time:
# most tests wait on processes and emulators, so two files at once use the second core (each
# worker starts emulators of its own).
test:
	$(MAKE) -j2 $(VENV)/.installed $(CHECKOV_VENV)/.installed
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -n 2 --dist loadfile

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

# Regenerate functions/domain/catalog.json from Google's discovery documents (docs/catalog.md).
catalog: $(VENV)/.installed
	$(PY) -m tools.catalog

bench: $(VENV)/.installed
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .hypothesis .run .cache

# The two commands of the README: `make run` and `make test`. Each creates .venv
# on first use (only python3 and make are needed) and reinstalls when
# pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
RUN_ARGS ?=
OUT ?= runs/default

.PHONY: run test lint bench bench-test findings clean

$(VENV)/.stamp-all: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[all]"
	touch $@

$(VENV)/.stamp-dev: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[dev]"
	touch $@ $(VENV)/.stamp-all

# The benchmarks' optional baselines (equinox, PyTorch) on top of dev.
$(VENV)/.stamp-bench: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[dev,bench]"
	touch $@ $(VENV)/.stamp-dev $(VENV)/.stamp-all

run: $(VENV)/.stamp-all
	$(VENV)/bin/jaxstab sweep --out $(OUT) --resume $(RUN_ARGS)

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check jaxstab tests benchmarks experiments
	$(VENV)/bin/ruff format --check jaxstab tests benchmarks experiments
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest -n 2 --durations=15 -m "not bench"

# The benchmark machinery end to end at toy size (whole processes; several minutes).
bench-test: $(VENV)/.stamp-bench
	$(VENV)/bin/pytest -n 2 -m bench tests/test_benchmarks.py

bench: bench-test
	$(PY) -m benchmarks

# docs/findings.md from the committed full-config results in experiments/results/.
findings: $(VENV)/.stamp-all
	$(PY) experiments/_findings.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

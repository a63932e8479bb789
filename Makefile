# neuralcodec — the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
SAMPLE := examples/sample.png

.PHONY: all setup build demo test test-slow check-wheel lint format asan fuzz bench-entropy bench-rd clean

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

# (Re)build the C extensions in place whenever their sources change.
EXT_STAMP := build/.ext-built
EXT_SOURCES := neuralcodec/entropy/_rangecoder.c neuralcodec/entropy/_rangecoder_api.h \
	neuralcodec/kernels/_exact.c neuralcodec/kernels/_inr_arm.c \
	neuralcodec/kernels/_intnet.c neuralcodec/kernels/_adaptive.c neuralcodec/kernels/_buffers.h
$(EXT_STAMP): $(STAMP) $(EXT_SOURCES) setup.py
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

# Build a wheel, install it into a fresh venv outside the checkout (dependencies from .venv) and
# run codec list / encode / decode / info with every shipped codec from there.
check-wheel: $(STAMP)
	PYTHON=$(PY) bash scripts/check_wheel.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check neuralcodec tests scripts
	$(VENV)/bin/ruff format --check neuralcodec tests scripts

format: $(STAMP)
	$(VENV)/bin/ruff format neuralcodec tests scripts

# AddressSanitizer + UBSan build of the C extensions (range coder, kernels), then the coder
# tests, the fuzz test, the kernel parity tests, the INR tests and the geometry codecs' tests.
EXT_BUILT := neuralcodec/entropy/_rangecoder*.so neuralcodec/kernels/_exact*.so \
	neuralcodec/kernels/_inr_arm*.so neuralcodec/kernels/_adaptive*.so
asan: $(STAMP)
	rm -f $(EXT_STAMP)
	rm -f $(EXT_BUILT)
	NEURALCODEC_ASAN=1 $(PY) setup.py -q build_ext --inplace --force -b build/asan -t build/asan-tmp
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 $(PY) -m pytest -q -p no:cacheprovider tests/test_rangecoder.py tests/test_rangecoder_fuzz.py \
	  tests/test_kernels.py tests/test_inr.py tests/test_pointcloud_codec.py tests/test_mesh_codec.py \
	  -k "not process and not cli"
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 $(PY) -m pytest -q -p no:cacheprovider tests/test_compress.py \
	  -k "int16 or sparse or every_path or gdn or flattened"
	rm -f $(EXT_BUILT)
	$(PY) setup.py -q build_ext --inplace --force

# Structure-aware fuzzing of every .ncf decoder (neuralcodec/fuzz.py): FUZZ_CASES cases (default
# 1,000,000) on FUZZ_WORKERS subprocesses; seeded and resumable, state and reproducers in build/fuzz.
fuzz: build
	$(PY) -m neuralcodec.fuzz --out build/fuzz --plugin tests/conftest.py \
	  --cases $(or $(FUZZ_CASES),1000000) --workers $(or $(FUZZ_WORKERS),2)

bench-entropy: $(STAMP)
	$(VENV)/bin/codec bench entropy --json results/entropy.json

bench-rd: $(STAMP)
	$(VENV)/bin/codec bench rd --out results/kodak

clean:
	rm -rf build *.egg-info neuralcodec/entropy/*.so neuralcodec/kernels/*.so .pytest_cache .ruff_cache

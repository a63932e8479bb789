# neuralcodec — the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
SAMPLE := examples/sample.png

.PHONY: all setup build demo test test-slow lint format asan bench-entropy bench-rd clean

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

# Rebuild the C extension in place (after editing neuralcodec/entropy/*.c).
build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace --force

demo: $(STAMP)
	$(PY) -m neuralcodec.app.cli demo-report $(SAMPLE)

test: $(STAMP) build
	$(PY) -m pytest -q

test-slow: $(STAMP) build
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check neuralcodec tests scripts
	$(VENV)/bin/ruff format --check neuralcodec tests scripts

format: $(STAMP)
	$(VENV)/bin/ruff format neuralcodec tests scripts

# AddressSanitizer + UBSan build of the range coder, then the coder tests and the fuzz test.
asan: $(STAMP)
	rm -f neuralcodec/entropy/_rangecoder*.so
	NEURALCODEC_ASAN=1 $(PY) setup.py -q build_ext --inplace --force -b build/asan -t build/asan-tmp
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 $(PY) -m pytest -q -p no:cacheprovider tests/test_rangecoder.py tests/test_rangecoder_fuzz.py
	rm -f neuralcodec/entropy/_rangecoder*.so
	$(PY) setup.py -q build_ext --inplace --force

bench-entropy: $(STAMP)
	$(VENV)/bin/codec bench entropy --json results/entropy.json

bench-rd: $(STAMP)
	$(VENV)/bin/codec bench rd --dataset ../shared/data/kodak --out results/kodak

clean:
	rm -rf build *.egg-info neuralcodec/entropy/*.so .pytest_cache .ruff_cache

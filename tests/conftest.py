"""Shared fixtures, and two test-only ``.ncf`` codecs that exercise the container for real.

* ``test-zlib`` (id 250): lossless, zlib over the raw RGB pixels; the compression level is the
  quality and lands in the file's metadata.
* ``test-raw`` (id 251): lossless, the raw pixels in two streams (first row, the rest), with a
  model id and the sha256 of a fixed "weights" blob, so the weights check runs. Its output does not
  depend on any library version, so the golden files are made with it.

Both register when pytest loads this file. CLI tests run the real entry point in a subprocess
through ``run_cli``, which imports this file first so the subprocess knows the same codecs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from neuralcodec.codecs.base import Codec, CodecError, Encoded, register

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
KODAK_DIR = REPO_DIR.parent / "shared" / "data" / "kodak"
TEST_RAW_WEIGHTS = b"test-raw weights, version 1"
TEST_RAW_SHA256 = hashlib.sha256(TEST_RAW_WEIGHTS).hexdigest()


def _rgb(data: object) -> np.ndarray:
    arr = np.asarray(data)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise CodecError(f"expected HxWx3 uint8, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def _stream(encoded: Encoded, name: str) -> bytes:
    if name not in encoded.streams:
        raise CodecError(f"missing stream {name!r}")
    return encoded.streams[name]


def _pixels(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    h, w, c = shape
    if len(raw) != h * w * 3:
        raise CodecError("stream size does not match the shape")
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3).copy()


@register
class ZlibTestCodec(Codec):
    name = "test-zlib"
    codec_id = 250
    modality = "image"
    quality_range = (1, 9)
    description = "test-only lossless codec: zlib over raw RGB pixels"

    def encode(self, data: object, quality: int) -> Encoded:
        q = self.check_quality(quality)
        arr = _rgb(data)
        header = {"shape": arr.shape, "quality": q, "level": q}
        return Encoded(self.name, header, {"pixels": zlib.compress(arr.tobytes(), q)})

    def decode(self, encoded: Encoded) -> np.ndarray:
        h, w, _ = encoded.header["shape"]
        d = zlib.decompressobj()
        try:  # never inflate past the size the header claims
            raw = d.decompress(_stream(encoded, "pixels"), h * w * 3 + 1)
        except zlib.error as exc:
            raise CodecError(f"test-zlib: corrupt stream ({exc})") from None
        return _pixels(raw, (h, w, 3))


@register
class RawTestCodec(Codec):
    name = "test-raw"
    codec_id = 251
    modality = "image"
    quality_range = (1, 4)
    description = "test-only lossless codec: raw RGB pixels, with a weights hash"

    def __init__(self, weights: bytes = TEST_RAW_WEIGHTS) -> None:
        self._sha = hashlib.sha256(weights).hexdigest()

    def weights_sha256(self, model_id: str | None = None) -> str | None:
        return self._sha if model_id in (None, "raw-v1") else None

    def encode(self, data: object, quality: int) -> Encoded:
        q = self.check_quality(quality)
        arr = _rgb(data)
        header = {
            "shape": arr.shape,
            "quality": q,
            "model_id": "raw-v1",
            "weights_sha256": self._sha,
        }
        raw = arr.tobytes()
        row = arr.shape[1] * 3
        return Encoded(self.name, header, {"first-row": raw[:row], "rest": raw[row:]})

    def decode(self, encoded: Encoded) -> np.ndarray:
        h, w, _ = encoded.header["shape"]
        return _pixels(_stream(encoded, "first-row") + _stream(encoded, "rest"), (h, w, 3))


_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import conftest; "
    "from neuralcodec.app.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run_cli_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``codec ARGS...`` in a fresh interpreter that also knows the test codecs."""
    cmd = [sys.executable, "-c", _BOOT, str(TESTS_DIR), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or REPO_DIR, timeout=120)


@pytest.fixture
def run_cli():
    return run_cli_process


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def smooth_image() -> np.ndarray:
    """A small deterministic RGB image with structure (gradients + a square), 24x40."""
    y, x = np.mgrid[0:24, 0:40]
    img = np.stack([x * 6, y * 10, (x + y) * 4], axis=2) % 256
    img[6:14, 10:22] = (200, 30, 90)
    return img.astype(np.uint8)


@pytest.fixture
def kodak_image_path() -> Path:
    path = KODAK_DIR / "kodim23.png"
    if not path.is_file():
        pytest.skip(f"Kodak image not found at {path}")
    return path


# ----------------------------------------------------------------------------- shared helpers


def shared(path: Path) -> Path:
    """``path`` under ``../shared/data``, or skip the test where that folder is absent."""
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


# (threads, environment): instruction sets forced down and thread counts varied
ISA_ENVIRONMENTS = [
    (1, {"ONEDNN_MAX_CPU_ISA": "SSE41"}),
    (8, {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    (2, {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
         "NEURALCODEC_MALLOC": "system"}),
]  # fmt: skip

# the command line's allocator settings (runtime.py) except where NEURALCODEC_MALLOC=system
_DECODE_HASH = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from neuralcodec.runtime import tune_allocator
tune_allocator()
from neuralcodec.api import decode_bytes
data = open(sys.argv[2], "rb").read()
print(hashlib.sha256(decode_bytes(data)[0].tobytes()).hexdigest())
"""


def decoded_hash_in_subprocess(path: Path, threads: int, env: dict[str, str]) -> str:
    """sha256 of what a fresh process decodes from the ``.ncf`` at ``path`` with ``threads``
    torch threads under the extra environment ``env``."""
    out = subprocess.run(
        [sys.executable, "-c", _DECODE_HASH, str(threads), str(path)],
        cwd=REPO_DIR, env={**os.environ, **env}, check=True, timeout=600, capture_output=True,
        text=True,
    )  # fmt: skip
    return out.stdout.strip()


def one_line_error(exc_type, fn, *args, match: str, **kw):
    """``fn(*args)`` raises ``exc_type`` matching ``match`` with a one-line message."""
    with pytest.raises(exc_type, match=match) as err:
        fn(*args, **kw)
    assert "\n" not in str(err.value)


def ply_text(fmt: str, body: bytes, elements: str, comment: bool = False) -> bytes:
    """A PLY file: header of ``format fmt`` (+ a comment line) with ``elements``, then ``body``."""
    note = "comment test\n" if comment else ""
    return f"ply\nformat {fmt} 1.0\n{note}{elements}end_header\n".encode() + body

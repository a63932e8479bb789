"""Classical benchmark codecs: round trips, quality ordering, colour conversion, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KODAK_DIR

from neuralcodec.bench.metrics import psnr_rgb
from neuralcodec.codecs import classical
from neuralcodec.codecs.base import CodecError, codec_class, codec_names, get_codec
from neuralcodec.codecs.classical import rgb_to_ycbcr, to_uint8, ycbcr_to_rgb

# The benchmark-only image codecs, as the registry lists them (the 3D anchors: test_*_codec.py).
CLASSICAL_CODECS = [n for n in codec_names(modality="image") if not codec_class(n).writes_ncf]

# Codecs that code full-resolution chroma (or near-lossless at their top quality).
HIGH_FIDELITY = ("jpeg", "avif", "jpegxl", "x265", "svtav1")


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """64x96 crop of a Kodak image (a synthetic textured image when Kodak is absent)."""
    path = KODAK_DIR / "kodim23.png"
    if path.is_file():
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))[200:264, 300:396].copy()
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:64, 0:96]
    base = np.stack([x * 2.5, y * 3.5, (x + y) * 1.5], axis=2)
    return to_uint8(base + rng.normal(0, 12, base.shape))


def _available(name: str):
    cls = codec_class(name)
    if not cls.available():
        pytest.skip(f"{name} unavailable: {cls.unavailable_reason()}")
    return cls()


def test_every_classical_codec_registers_as_benchmark_only():
    names = codec_names(modality="image")
    for name in CLASSICAL_CODECS:
        assert name in names
        codec = get_codec(name)
        assert codec.writes_ncf is False and codec.codec_id == 0
        lo, hi = codec.quality_range
        assert list(codec.bench_qualities) == sorted(set(codec.bench_qualities))
        assert 5 <= len(codec.bench_qualities) <= 9
        assert lo <= codec.bench_qualities[0] and codec.bench_qualities[-1] <= hi
        assert codec.description
        assert codec.info()["available"] == codec.available()


@pytest.mark.parametrize("name", CLASSICAL_CODECS)
def test_round_trip_and_higher_quality_costs_more_and_looks_better(name, crop):
    codec = _available(name)
    low_q, high_q = codec.bench_qualities[1], codec.bench_qualities[-2]
    low, high = codec.compress(crop, low_q), codec.compress(crop, high_q)
    assert isinstance(low, bytes) and 0 < len(low) < len(high)
    out_low, out_high = codec.decompress(low), codec.decompress(high)
    for out in (out_low, out_high):
        assert out.shape == crop.shape and out.dtype == np.uint8
    assert 18.0 < psnr_rgb(crop, out_low) < psnr_rgb(crop, out_high)


@pytest.mark.parametrize("name", HIGH_FIDELITY)
def test_top_quality_is_near_transparent(name, crop):
    # catches colour conversion and chroma siting bugs
    codec = _available(name)
    out = codec.decompress(codec.compress(crop, codec.quality_range[1]))
    assert psnr_rgb(crop, out) > 40.0


def test_ycbcr_conversion_round_trips_within_rounding():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    back = ycbcr_to_rgb(to_uint8(rgb_to_ycbcr(img)))
    assert np.abs(back.astype(int) - img).max() <= 2
    assert psnr_rgb(img, back) > 50.0
    grey = np.full((4, 4, 3), 77, np.uint8)
    ycc = rgb_to_ycbcr(grey)
    assert np.allclose(ycc[0], 77) and np.allclose(ycc[1:], 128)


def test_chroma_resampling_keeps_flat_planes_flat():
    plane = np.full((6, 8), 90.0)
    assert np.allclose(classical._upsample2(classical._downsample2(plane)), 90.0)
    ramp = np.tile(np.arange(8.0), (4, 1))
    up = classical._upsample2(classical._downsample2(ramp))
    assert np.abs(up[:, 1:-1] - ramp[:, 1:-1]).max() < 1e-9


@pytest.mark.parametrize("name", CLASSICAL_CODECS)
def test_bad_input_is_refused_with_codec_error(name, crop):
    codec = _available(name)
    with pytest.raises(CodecError, match="HxWx3 uint8"):
        codec.compress(crop.astype(np.float32), codec.bench_qualities[0])
    with pytest.raises(CodecError, match="HxWx3 uint8"):
        codec.compress(crop[..., 0], codec.bench_qualities[0])
    with pytest.raises(CodecError, match="quality"):
        codec.compress(crop, codec.quality_range[1] + 1)
    with pytest.raises(CodecError, match="quality"):
        codec.compress(crop, 2.5)
    with pytest.raises(CodecError):
        codec.decompress(b"")
    with pytest.raises(CodecError):
        codec.decompress(b"\x00\x01 not an image at all" * 8)


def test_truncated_jpeg_is_refused(crop):
    codec = _available("jpeg")
    data = codec.compress(crop, 50)
    with pytest.raises(CodecError):
        codec.decompress(data[:20])


def test_svtav1_refuses_odd_sizes(crop):
    codec = _available("svtav1")
    with pytest.raises(CodecError, match="even"):
        codec.compress(crop[:63], 30)


@pytest.mark.parametrize("name", CLASSICAL_CODECS)
def test_encoding_leaves_the_threads_scheduling_as_it_was(name, crop):
    """SVT-AV1 makes its calling thread real-time FIFO where it may (root); a process started
    from such a thread starves its own threads (a multi-threaded decode then never ends)."""
    import os

    if not hasattr(os, "sched_getscheduler"):
        pytest.skip("no POSIX scheduling on this platform")
    codec = _available(name)
    before = (os.sched_getscheduler(0), os.sched_getparam(0))
    codec.decompress(codec.compress(crop, codec.quality_range[1] // 2))
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before


def test_unavailable_codec_says_why(monkeypatch, crop):
    monkeypatch.setattr(
        classical.JpegXlCodec, "unavailable_reason", classmethod(lambda cls: "no libjxl here")
    )
    codec = get_codec("jpegxl")
    assert codec.available() is False
    with pytest.raises(CodecError, match="no libjxl here"):
        codec.compress(crop, 50)


def test_jpegxl_distance_follows_the_cjxl_mapping():
    d = classical.JpegXlCodec.distance
    assert d(100) == pytest.approx(0.1) and d(90) == pytest.approx(1.0)
    assert d(30) == pytest.approx(6.4)
    assert d(1) > d(10) > d(29) > d(30)

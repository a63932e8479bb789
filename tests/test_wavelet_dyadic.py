"""Format 3 of the ``wavelet`` codec (``codecs/dyadic.py``): the integer CDF 9/7 synthesis, the
step tables, the context-coded bands (C kernel), round trips, golden bytes, old formats, bad input.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error
from PIL import Image

from neuralcodec import api
from neuralcodec.codecs import dyadic
from neuralcodec.codecs.base import CodecError, get_codec
from neuralcodec.container.fields import ContainerError
from neuralcodec.entropy import adaptive, rangecoder

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(11)
FORMAT2_FILE = ROOT / "tests" / "golden" / "wavelet_format2_48x64_q3.ncf"
FORMAT2_PIXELS = "2eeca7aadbab15c7a319504729308494077ce2df55235e0a3e02978f5e9df6c7"
# _photo() at quality 4, format 3 (this version's bitstream; changing it needs a new format)
GOLDEN_STREAM = "8e2ffcc261882f94778611e14757eae1a5945894b12f1c45c4d6e2f7e5da6334"
GOLDEN_PIXELS = "a38b2c0b383641862b82625efa1f1240c8216d849a5c8270da40fefd5d5a1730"


def _photo(h: int = 96, w: int = 128) -> np.ndarray:
    img = np.asarray(Image.open(ROOT / "examples" / "sample.png").convert("RGB"))
    return np.ascontiguousarray(img[200 : 200 + h, 300 : 300 + w])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


# ----------------------------------------------------------------------------- transform


@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (9, 130), (1, 7), (2, 2)])
def test_float_lifting_reconstructs_perfectly(shape):
    x = RNG.normal(size=shape) * 50
    levels = dyadic.levels_for(*shape, dyadic.MAX_LEVELS)
    bands = dyadic.analysis(x, levels)
    assert [b.shape for b in bands[:1]] == [dyadic.band_shapes(*shape, levels)[0]]
    assert np.abs(dyadic.synthesis(bands) - x).max() < 1e-9


def test_levels_keep_the_low_band_at_least_four_samples():
    assert dyadic.levels_for(512, 768, 6) == 6
    assert dyadic.levels_for(64, 64, 6) == 4
    assert dyadic.levels_for(7, 1000, 6) == 0


def test_integer_synthesis_tracks_the_float_one():
    x = RNG.normal(size=(48, 80)) * 40
    bands = dyadic.analysis(x, 4)
    unit = 1 << dyadic.FRAC
    ints = [np.round(bands[0] * unit).astype(np.int64)] + [
        tuple(np.round(b * unit).astype(np.int64) for b in t) for t in bands[1:]
    ]
    rec = dyadic.synthesis_int(ints) / unit
    assert np.abs(rec - x).max() < 0.05  # rounding of 4 lifting steps per level, at 2^-8


def test_step_tables_are_the_float_recipe():
    detail, ll = dyadic.step_table()
    assert np.abs(np.array(detail) - np.array(dyadic.DETAIL_MUL)).max() <= 1
    assert np.abs(np.array(ll) - np.array(dyadic.LL_MUL)).max() <= 1
    c = np.array(dyadic.COLOUR, np.float64) / (1 << dyadic.COLOUR_SHIFT)
    assert np.abs(c @ c.T - np.eye(3)).max() < 2e-3  # orthonormal: the inverse is the transpose
    ll_step, det = dyadic.steps(0, 6)
    assert ll_step >= 1 and all(s >= 1 for t in det for s in t)
    assert dyadic.steps(7, 6)[0] < ll_step  # finer steps at higher quality


# ----------------------------------------------------------------------------- band coding


@pytest.mark.parametrize("mode", [0, 1])
def test_band_kernel_round_trips(mode):
    h, w = 23, 31
    v = (RNG.laplace(size=(h, w)) * 3).astype(np.int32)
    v[3, 4] = 1 << 20  # a large value: the encoder's first symbol buffer is too small
    parent = (RNG.laplace(size=(12, 16)) * 3).astype(np.int32) if mode == 0 else np.zeros(0)
    luma = (RNG.laplace(size=(h, w)) * 3).astype(np.int32) if mode == 0 else np.zeros(0)
    edges = dyadic.EDGES if mode == 0 else dyadic.LL_EDGES
    par = [mode, 4, 4, 1, 1, 1 if mode == 0 else 0, 1, len(edges) + 1, 2, 64 * 40, 64, *edges]
    st = adaptive.states(64 * 41)
    sym, idx = adaptive.wav_band_symbols(v, parent, luma, par, st)
    enc = rangecoder.RangeEncoder()
    enc.encode(sym, idx, adaptive.bank())
    data = enc.finish()
    assert 8 * len(data) == pytest.approx(adaptive.symbol_bits(sym, idx), abs=64)
    dec = rangecoder.RangeDecoder(data)
    out = adaptive.decode_wav_band(dec, (h, w), parent, luma, par, adaptive.states(64 * 41))
    assert np.array_equal(out, v)


def test_band_kernel_refuses_bad_parameters():
    st = adaptive.states(64 * 4)
    v = np.zeros((4, 4), np.int32)
    for par in (
        [2, 1, 1, 1, 1, 1, 1, 2, 0, 0, 64, 1],  # mode
        [0, 1, 1, 1, 1, 1, 1, 2, 3, 0, 64, 1],  # sets beyond the states
        [0, 1, 1, 1, 1, 1, 1, 2, 0, 0, 1, 1],  # rate
        [0, 1, 1, 1, 1, 1, 1, 3, 0, 0, 64, 1],  # edge count
        [0, 1, 65, 1, 1, 1, 1, 2, 0, 0, 64, 1],  # a weight
    ):
        one_line_error(ValueError, adaptive.wav_band_symbols, v, [], [], par, st, match="band")


# ----------------------------------------------------------------------------- the codec


@pytest.mark.parametrize("quality", [1, 4, 8])
def test_round_trip_is_exact_and_the_estimate_is_the_size(quality):
    img = _photo()
    codec = get_codec("wavelet")
    enc, recon = codec.encode_with_reconstruction(img, quality)
    assert enc.header["format"] == 3 and enc.header["model_id"] == "wavelet-filter"
    assert np.array_equal(codec.decode(enc), recon)
    data = api.encode_array(img, "wavelet", quality)
    assert np.array_equal(api.decode_bytes(data)[0], recon)
    coded = 8 * enc.payload_bytes
    assert codec.estimated_bits(img, quality) == pytest.approx(
        coded, rel=0.01, abs=128
    )  # the coder's flush
    q, levels = dyadic.quantise(img, quality - 1)
    bands = dyadic.decode_bands(enc.streams["w"], *img.shape[:2], levels)
    for c in range(3):
        assert np.array_equal(bands[c][0], q[c][0])
        for li in range(1, levels + 1):
            assert all(np.array_equal(bands[c][li][o], q[c][li][o]) for o in range(3))
    assert _psnr(img, recon) > 20 + 2 * quality


def test_qualities_span_the_rates_and_grow():
    img = _photo()
    bpp, psnr = [], []
    for q in range(1, 9):
        enc, rec = get_codec("wavelet").encode_with_reconstruction(img, q)
        bpp.append(8 * enc.payload_bytes / img.shape[0] / img.shape[1])
        psnr.append(_psnr(img, rec))
    assert bpp == sorted(bpp) and psnr == sorted(psnr)
    assert bpp[0] < 0.5 and bpp[-1] > 2 * bpp[3] > 4 * bpp[0]
    assert psnr[-1] > psnr[0] + 12


def test_format_3_golden_bitstream_and_pixels():
    codec = get_codec("wavelet")
    enc = codec.encode(_photo(), 4)
    assert hashlib.sha256(enc.streams["w"]).hexdigest() == GOLDEN_STREAM
    assert hashlib.sha256(codec.decode(enc).tobytes()).hexdigest() == GOLDEN_PIXELS


def test_format_2_golden_file_still_decodes():
    from neuralcodec.container.binary import unpack

    data = FORMAT2_FILE.read_bytes()
    assert unpack(data).header is not None
    rec = api.decode_bytes(data)[0]
    assert hashlib.sha256(rec.tobytes()).hexdigest() == FORMAT2_PIXELS


def test_the_post_filter_is_integer_and_tiles_without_seams(monkeypatch):
    filt = dyadic.load_filter()
    assert filt is not None and filt.gains[0] > 0
    img = _photo()
    q, levels = dyadic.quantise(img, 3)
    rec = dyadic.reconstruct(q, *img.shape[:2], levels, 3)
    out = filt(rec, 3)
    assert out.dtype == np.uint8 and not np.array_equal(out, rec)
    assert _psnr(img, out) > _psnr(img, rec)  # it removes some of the ringing
    big = np.ascontiguousarray(np.tile(rec, (6, 1, 1)))  # three row tiles: no seams
    tiled = filt(big, 3)
    monkeypatch.setattr(dyadic, "FILTER_TILE", 1024)
    assert np.array_equal(filt(big, 3), tiled)
    off = dyadic.PostFilter(filt.net, (0,) * 8, "")
    assert np.array_equal(off(rec, 3), rec)


def test_files_name_the_post_filter_and_refuse_another():
    codec = get_codec("wavelet")
    enc = codec.encode(_photo(), 2)
    assert enc.header["weights_sha256"] == dyadic.load_filter().sha256
    assert codec.weights_sha256("wavelet-filter") == enc.header["weights_sha256"]
    for key, value in (("weights_sha256", "0" * 64), ("model_id", "wavelet-l3")):
        bad = copy.deepcopy(enc)
        bad.header[key] = value
        one_line_error(CodecError, codec.decode, bad, match="post-filter")
    data = api.encode_array(_photo(), "wavelet", 2)
    assert api.decode_bytes(data)[1]["weights_sha256"] == enc.header["weights_sha256"]
    plain = copy.deepcopy(enc)
    del plain.header["weights_sha256"]  # the same stream without the filter
    q, levels = dyadic.quantise(_photo(), 1)
    assert np.array_equal(codec.decode(plain), dyadic.reconstruct(q, 96, 128, levels, 1))


def test_format_3_needs_no_wavelet_weights(tmp_path):
    enc = get_codec("wavelet").encode(_photo(), 3)
    want = get_codec("wavelet").decode(enc)
    other = get_codec("wavelet", weights=str(tmp_path / "missing.safetensors"))
    assert np.array_equal(other.decode(enc), want)


def test_bad_headers_and_streams_fail_in_one_line():
    codec = get_codec("wavelet")
    enc = codec.encode(_photo(), 4)
    for key, value, match in (
        ("shape", [0, 5, 3], "shape"),
        ("shape", [1 << 20, 5, 3], "shape"),
        ("shape", [4000, 4000, 3], "cannot hold"),  # more pixels than the stream can code
        ("shape", "x", "shape"),
        ("quality", 9, "quality"),
    ):
        bad = copy.deepcopy(enc)
        bad.header[key] = value
        one_line_error(CodecError, codec.decode, bad, match=match)
    bad = copy.deepcopy(enc)
    bad.streams = {}
    one_line_error(CodecError, codec.decode, bad, match="stream")
    for data in (enc.streams["w"][:5], b"", bytes(RNG.integers(0, 256, 300, dtype=np.uint8))):
        bad = copy.deepcopy(enc)
        bad.streams["w"] = data
        try:
            rec = codec.decode(bad)
        except CodecError as exc:
            assert "\n" not in str(exc)
        else:  # a range decoder may read a damaged stream as other values: pixels, no crash
            assert rec.shape == (96, 128, 3) and rec.dtype == np.uint8


def test_flat_images_are_padded_to_the_minimum_stream_length():
    flat = np.full((256, 256, 3), 128, np.uint8)
    codec = get_codec("wavelet")
    enc, recon = codec.encode_with_reconstruction(flat, 1)
    assert len(enc.streams["w"]) == 256 * 256 // 1024
    assert np.array_equal(codec.decode(enc), recon)


def test_truncated_files_fail_cleanly():
    data = api.encode_array(_photo(), "wavelet", 5)
    for bad in (data[: len(data) // 2], data[:-7]):
        with pytest.raises((CodecError, ContainerError)) as err:
            api.decode_bytes(bad)
        assert "\n" not in str(err.value)

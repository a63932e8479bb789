"""The learned video codec ``elic-ip``: exact round trips through the API and the CLI, identical
frames under every instruction set and thread count, motion and residual coding, bad inputs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_DIR, one_line_error

from neuralcodec import api
from neuralcodec.codecs.base import CodecError, Encoded, get_codec, weights_available
from neuralcodec.codecs.latent.sinks import DecoderSinks, EncoderSinks
from neuralcodec.codecs.learned_video import (
    MAX_BFRAMES,
    coding_order,
    rgb_to_yuv420,
    yuv420_to_rgb,
)
from neuralcodec.codecs.video_motion import (
    MODE_BI,
    MODE_BWD,
    MODE_FWD,
    MVD_RANGE,
    AdaptiveFlagModel,
    AdaptiveMvdModel,
    AdaptiveSymbolModel,
    QuarterPelPlane,
    SplitModels,
    _predict_plane_numpy,
    blend_modes,
    code_modes,
    code_split_flags,
    code_sub_vectors,
    code_vectors,
    half_pel_plane,
    obmc_weights,
    predict_frame,
    predict_frame_split,
    predict_luma,
    predict_plane,
    scale_vectors,
)
from neuralcodec.codecs.video_residual import (
    KINDS,
    NC,
    Q_LIMIT,
    RES_HINTS,
    adaptive_plane_bits,
    code_plane_adaptive,
    deblock,
    load,
    prediction_hints,
    quantise_rd_adaptive,
    residual_base,
    residual_states,
)
from neuralcodec.codecs.weights import weights_dir
from neuralcodec.datasets.video import VideoInfo, frames_source, read_video, write_y4m
from neuralcodec.entropy.cdf import counts_to_quantized_cdf, tables_from_cdfs
from neuralcodec.entropy.tables import PRECISION
from neuralcodec.kernels import _ext

needs_weights = pytest.mark.skipif(
    not weights_available("elic-ip"), reason="elic-int or elic-ip weights not shipped here"
)
W, H = 72, 40  # not multiples of the 16-pixel motion blocks nor of the 8-pixel transform


def moving_clip(n: int, w: int = W, h: int = H, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """A textured scene panning by (1.5, 2) pixels a frame, as 4:2:0 planes."""
    rng = np.random.default_rng(seed)
    big_h, big_w = h + 4 * n + 8, w + 4 * n + 8
    y, x = np.mgrid[0:big_h, 0:big_w]
    base = 110 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + rng.normal(0, 6, (big_h, big_w))
    base[10:22, 14:40] += 50
    rgb = np.clip(np.stack([base, base * 0.8 + 30, 255 - base], -1), 0, 255).astype(np.uint8)
    frames = []
    for i in range(n):
        oy, ox = int(2 * i), int(1.5 * i)
        frames.append(rgb_to_yuv420(rgb[oy : oy + h, ox : ox + w]))
    return frames


def source_of(frames, fps=Fraction(30000, 1001)):
    info = VideoInfo(W, H, "420", 8, fps, Fraction(1), "p", {}, frames=len(frames))
    return frames_source(info, iter(frames), "clip")


def clip_file(tmp_path: Path, n: int = 4) -> Path:
    path = tmp_path / "clip.y4m"
    write_y4m(path, source_of(moving_clip(n)))
    return path


def plane_psnr(a, b) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-9))


# ----------------------------------------------------------------------------- pieces


def test_integer_prediction_follows_whole_and_fractional_vectors():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (48, 64)).astype(np.uint8)
    mv = np.zeros((3, 4, 2), np.int32)
    mv[1, 2] = (8, -4)  # 2 pels down, 1 pel left, in quarter pels
    pred = predict_plane(ref, mv, 16, 2)
    assert np.array_equal(pred[16:32, 32:48], ref[18:34, 31:47])
    assert np.array_equal(pred[:16, :16], ref[:16, :16])
    mv[0, 0] = (0, 2)  # half a pel right: the rounded mean of two neighbours
    half = predict_plane(ref, mv, 16, 2)[:16, :15].astype(int)
    r = ref.astype(int)
    want = (r[:16, :15] * 2 + r[:16, 1:16] * 2 + 2) >> 2
    assert np.array_equal(half, want)
    mv[2, 3] = (400, 400)  # far outside: the edge repeats
    assert np.all(predict_plane(ref, mv, 16, 2)[32:, 48:] == ref[-1, -1])


@pytest.mark.skipif(not hasattr(_ext._exact, "bilinear"), reason="C kernels not built")
@pytest.mark.parametrize("up, frac_bits, block", [(2, 1, 16), (1, 3, 8), (1, 2, 4)])
def test_c_motion_compensation_equals_the_numpy_reference(up, frac_bits, block):
    rng = np.random.default_rng(up * 10 + frac_bits)
    ref = rng.integers(0, 256, (37 * up, 53 * up)).astype(np.int32)  # not block multiples
    nby, nbx = 5, 7
    mv = rng.integers(-40, 41, (nby, nbx, 2)).astype(np.int32)
    mv[0, 0] = (-5000, 7000)  # far outside on two sides
    mv[-1, -1] = (1 << 23, -(1 << 23))
    mv[2, 3] = (-1, -1)  # negative fractions round towards minus infinity
    want = _predict_plane_numpy(ref, mv, block, frac_bits, up)
    assert np.array_equal(predict_plane(ref, mv, block, frac_bits, up), want)
    rows = np.array([0, 3, nby * block - 1, 3], np.int32)  # any subset, repeats allowed
    cols = np.arange(1, nbx * block, 5, dtype=np.int32)
    sub = predict_plane(ref, mv, block, frac_bits, up, rows, cols)
    assert np.array_equal(sub, want[rows][:, cols])
    assert np.array_equal(sub, _predict_plane_numpy(ref, mv, block, frac_bits, up, rows, cols))


@pytest.mark.skipif(not hasattr(_ext._exact, "bilinear"), reason="C kernels not built")
def test_the_quarter_pel_plane_is_the_same_from_c_and_numpy(monkeypatch):
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 256, (40, 56)).astype(np.uint8)
    field = rng.integers(-90, 90, (3, 4, 2)).astype(np.int32)
    fast = QuarterPelPlane(half_pel_plane(ref))
    got = fast.predict(field, 16), fast.block(1, 2, field[1, 2], 16)
    monkeypatch.setattr(_ext, "_exact", None)  # the NumPy versions
    slow = QuarterPelPlane(half_pel_plane(ref))
    assert np.array_equal(fast.plane, slow.plane)
    assert np.array_equal(got[0], slow.predict(field, 16))
    assert np.array_equal(got[1], slow.block(1, 2, field[1, 2], 16))
    assert np.array_equal(got[0], predict_luma(half_pel_plane(ref), field))  # the decoder's


@pytest.mark.skipif(not hasattr(_ext._exact, "bilinear"), reason="C kernels not built")
def test_c_motion_compensation_rejects_what_does_not_fit():
    ref = np.zeros((16, 16), np.int32)
    mv = np.zeros((1, 1, 2), np.int32)
    rows = cols = np.arange(16, dtype=np.int32)
    out = np.zeros((16, 16), np.int32)
    bad = [
        (ref, mv, 16, 2, 1, rows, cols + 1, out),  # a column past the field
        (ref, mv, 16, 0, 1, rows, cols, out),  # no fraction bits
        (ref, np.full((1, 1, 2), 1 << 24, np.int32), 16, 2, 1, rows, cols, out),
        (ref, mv, 16, 2, 1, rows, cols, np.zeros((16, 15), np.int32)),
        (ref.astype(np.int64), mv, 16, 2, 1, rows, cols, out),
    ]
    for args in bad:
        with pytest.raises((ValueError, TypeError)):
            _ext._exact.bilinear(*args)
    _ext._exact.bilinear(ref, mv, 16, 2, 1, rows, cols, out)


@pytest.mark.skipif(not hasattr(_ext._exact, "counts_cdf"), reason="C kernels not built")
def test_the_c_cdf_of_counts_is_the_python_one():
    rng = np.random.default_rng(11)
    rows = [np.zeros(5, np.int64), np.full(3, 7, np.int64), np.array([0, 1 << 62, 3], np.int64)]
    rows += [np.array([1 << 20] * 2 + [0] * 3000, np.int64)]  # a deficit spread over many
    for k in (2, 3, 7, 50, 300, 4000):
        rows += [rng.integers(0, 10, k), rng.integers(0, 1 << 40, k)]
        rows += [(rng.pareto(0.5, k) * 10).astype(np.int64)]
    for row in rows:
        for precision in (16, 12):
            if len(row) > 1 << precision:
                continue
            out = np.empty(len(row) + 1, np.int32)
            _ext._exact.counts_cdf(row, precision, out)
            assert np.array_equal(out, counts_to_quantized_cdf(row, precision))
    for bad in (np.array([3], np.int64), np.array([1, -1], np.int64), np.zeros(70000, np.int64)):
        with pytest.raises(ValueError):
            _ext._exact.counts_cdf(bad, 16, np.empty(len(bad) + 1, np.int32))


def test_incremental_tables_equal_a_full_rebuild():
    rng = np.random.default_rng(3)
    mvd, flags, symbols = AdaptiveMvdModel(), AdaptiveFlagModel(4), AdaptiveSymbolModel(3, 5)
    for step in range(40):
        mvd.update(rng.integers(0, 6, 9), rng.integers(-30, 31, 9))
        flags.update(rng.integers(0, 4, 5), rng.integers(0, 2, 5))
        symbols.update(rng.integers(0, 3, 4), rng.integers(0, 5, 4))
        if step == 20:  # counts set from outside, as a carried state is
            flags.counts[2] = (1, 90, 1)
            flags._tables = None
        for model, offset in ((mvd, -MVD_RANGE), (flags, 0), (symbols, 0)):
            got = model.tables()
            cdfs = [counts_to_quantized_cdf(c, PRECISION) for c in model.counts]
            fresh = tables_from_cdfs(cdfs, [offset] * len(cdfs), PRECISION)
            assert np.array_equal(got.cdfs, fresh.cdfs)
            assert np.array_equal(got.cdf_lengths, fresh.cdf_lengths)
            assert np.array_equal(got.offsets, fresh.offsets)
            got.validate()  # built without the check, and valid


def test_vectors_round_trip_through_the_adaptive_model():
    rng = np.random.default_rng(1)
    mv = rng.integers(-6, 7, (5, 7, 2)).astype(np.int32)
    mv[2, 3] = (-300, 1000)  # escape-coded differences
    sinks = EncoderSinks()
    assert np.array_equal(code_vectors(sinks["p"], (5, 7), mv), mv)
    data = sinks.finish()["p"]
    assert np.array_equal(code_vectors(DecoderSinks({"p": data})["p"], (5, 7), None), mv)
    smooth = np.zeros((5, 7, 2), np.int32) + 3
    s2 = EncoderSinks()
    code_vectors(s2["p"], (5, 7), smooth)
    assert len(s2.finish()["p"]) < len(data) // 4  # a uniform field costs little


@needs_weights
def test_residual_coefficients_round_trip_and_reconstruct_exactly():
    model = load(weights_dir() / "elic-ip.safetensors")
    rng = np.random.default_rng(2)
    residual = rng.normal(0, 12, (24, 40)).round().astype(np.int32)
    for kind in KINDS:
        q = model.quantise(residual, kind, 300)
        assert np.any(q)
        sinks = EncoderSinks()
        model.code_plane(sinks["p"], kind, q.shape[:2], q)
        back = model.code_plane(DecoderSinks(sinks.finish())["p"], kind, q.shape[:2], None)
        assert np.array_equal(back, q)
        rec = model.dequantise(q, kind, 300)
        assert rec.dtype == np.int32 and rec.shape == residual.shape
        assert np.abs(rec - residual).mean() < np.abs(residual).mean()


def test_adaptive_residual_coefficients_round_trip_with_carried_states():
    rng = np.random.default_rng(3)
    enc_states, dec_states = residual_states(), residual_states()
    sinks = EncoderSinks()
    planes = []
    for n in range(3):  # three planes in one stream, the states carried from one to the next
        q = np.zeros((5, 7, NC), np.int32)
        mask = rng.random(q.shape) < np.linspace(0.5, 0.01, NC) * (rng.random((5, 7, 1)) < 0.6)
        q[mask] = rng.laplace(0, 3, mask.sum()).round().astype(np.int32)
        q[1, 2, 63] = 5  # the last coefficient, where no end flag follows
        q[2, 3, 0], q[3, 4, 10] = Q_LIMIT, -70000  # exp-Golomb escapes
        q[4] = 0
        hints = rng.integers(0, RES_HINTS, (5, 7)).astype(np.int32)
        base = residual_base(KINDS[n % 2], 20 + n)
        bits = adaptive_plane_bits(q, hints, enc_states.copy(), base)
        assert bits > 0
        got = code_plane_adaptive(sinks["p"], (5, 7), q, hints, enc_states, base)
        assert np.array_equal(got, q)
        planes.append((q, hints, base))
    dec = DecoderSinks(sinks.finish())["p"]
    for q, hints, base in planes:
        back = code_plane_adaptive(dec, (5, 7), None, hints, dec_states, base)
        assert np.array_equal(back, q)
    assert np.array_equal(enc_states, dec_states) and np.any(enc_states != residual_states())
    # the hints are the decoder's contexts too: other hints decode other coefficients or fail
    with pytest.raises(ValueError, match="hint"):
        code_plane_adaptive(dec, (5, 7), None, np.full((5, 7), RES_HINTS), dec_states, 0)


def test_prediction_hints_grow_with_texture_against_the_step():
    flat = np.full((16, 24), 90, np.int32)
    assert not np.any(prediction_hints(flat, 256))
    tex = flat.copy()
    tex[:, 8:16] += (np.indices((16, 8)).sum(0) % 2 * 40).astype(np.int32)
    h = prediction_hints(tex, 256)
    assert h.shape == (2, 3) and h.dtype == np.int32
    assert h[0, 1] == RES_HINTS - 1 and h[0, 0] >= 0 and h[0, 2] == 0
    assert prediction_hints(tex, 1 << 14)[0, 1] < h[0, 1]  # a coarser step: a smaller class


@needs_weights
def test_adaptive_rate_distortion_levels_spend_only_where_they_pay():
    model = load(weights_dir() / "elic-ip.safetensors")
    rng = np.random.default_rng(6)
    residual = rng.normal(0, 20, (32, 48)).round().astype(np.int32)
    residual[:8, :8] = 0
    hints = prediction_hints(np.zeros((32, 48), np.int32), 300)
    for kind in KINDS:
        st = residual_states()
        base = residual_base(kind, 20)
        nearest = quantise_rd_adaptive(model, residual, kind, 300, 1e-9, st, base, hints)
        rd = quantise_rd_adaptive(model, residual, kind, 300, 0.13, st, base, hints)
        assert np.any(rd) and not np.any(rd[0, 0])
        assert np.all(np.abs(rd) <= np.abs(nearest)) and np.abs(rd).sum() < np.abs(nearest).sum()
        none = quantise_rd_adaptive(model, residual, kind, 300, 1e6, st, base, hints)
        assert not np.any(none)
        assert np.array_equal(st, residual_states())  # the decisions leave the states alone


def test_quarter_pel_table_matches_the_decoder_prediction():
    rng = np.random.default_rng(4)
    ref = rng.integers(0, 256, (40, 72)).astype(np.uint8)
    ref2 = half_pel_plane(ref)
    table = QuarterPelPlane(ref2)
    mv = rng.integers(-90, 90, (3, 5, 2)).astype(np.int32)  # many point outside the plane
    want = predict_luma(ref2, mv)
    assert np.array_equal(table.predict(mv, 16), want)
    assert np.array_equal(table.block(1, 3, mv[1, 3], 16), want[16:32, 48:64])


@needs_weights
def test_rate_distortion_quantisation_spends_levels_only_where_they_pay():
    model = load(weights_dir() / "elic-ip.safetensors")
    rng = np.random.default_rng(6)
    residual = rng.normal(0, 20, (32, 48)).round().astype(np.int32)
    residual[:8, :8] = 0  # an empty block stays empty
    for kind in KINDS:
        plain = model.quantise(residual, kind, 300)
        rd = model.quantise_rd(residual, kind, 300, 0.13)
        assert np.any(rd) and not np.any(rd[0, 0])
        assert np.all(np.abs(rd) <= np.abs(plain) + 1) and np.abs(rd).sum() < np.abs(plain).sum()
        assert not np.any(model.quantise_rd(residual, kind, 300, 1e6))  # rate at any price: none
        err = np.abs(residual - model.dequantise(rd, kind, 300)).mean()
        assert err < np.abs(residual).mean()


def test_deblocking_smooths_small_steps_at_block_edges_only():
    step = 1024  # 64 pels: alpha 52, beta 13, tc 10
    flat = np.full((16, 24), 100, np.uint8)
    flat[:, 8:] = 106  # a small step on the edge at x = 8 (and none at 16)
    out = deblock(flat, step)
    assert out.dtype == np.uint8 and out.shape == flat.shape
    # p0 and q0 move by ((106 - 100) * 4 + (100 - 106) + 4) >> 3 = 2 towards each other
    assert np.all(out[:, 7] == 102) and np.all(out[:, 8] == 104)
    assert np.array_equal(out[:, :7], flat[:, :7]) and np.array_equal(out[:, 9:], flat[:, 9:])
    strong = np.full((16, 24), 40, np.uint8)
    strong[:, 8:] = 200  # a real edge: kept
    assert np.array_equal(deblock(strong, step), strong)
    inner = np.full((16, 24), 100, np.uint8)
    inner[:, 5:] = 106  # a step inside a block: not an edge of the transform
    assert np.array_equal(deblock(inner, step), inner)
    rows = np.full((24, 16), 100, np.uint8)
    rows[16:] = 104  # horizontal edges as well
    assert deblock(rows, step)[15, 0] == 102 and deblock(rows, step)[16, 0] == 102


def test_coding_order_covers_each_frame_once_after_its_references():
    for start, end, bgop in ((0, 32, 4), (0, 32, 8), (32, 40, 4), (0, 7, 16), (0, 5, 1), (3, 4, 4)):
        order = coding_order(start, end, bgop)
        assert sorted(i for i, _, _ in order) == list(range(start, end))
        assert order[0] == (start, (), 0)
        seen = set()
        for i, refs, depth in order:
            assert all(r in seen for r in refs)
            if len(refs) == 1:
                assert depth == 0 and 0 < i - refs[0] <= bgop
            elif refs:
                assert refs[0] < i < refs[1] and depth >= 1
            seen.add(i)
    assert [(i, r) for i, r, _ in coding_order(0, 4, 1)] == [
        (0, ()),
        (1, (0,)),
        (2, (1,)),
        (3, (2,)),
    ]
    assert [i for i, _, _ in coding_order(0, 9, 4)] == [0, 4, 2, 1, 3, 8, 6, 5, 7]


def test_b_modes_and_scaled_vectors():
    mv = np.array([[[8, -6], [3, 5]]], np.int32)
    assert np.array_equal(scale_vectors(mv, 2, 2), -mv)
    assert np.array_equal(scale_vectors(mv, 2, 1), [[[-4, 3], [-2, -3]]])  # halves round up
    modes = np.array([[MODE_FWD, MODE_BWD, MODE_BI]])
    f = (np.full((16, 48), 10, np.int32), np.full((8, 24), 10, np.int32))
    b = (np.full((16, 48), 21, np.int32), np.full((8, 24), 21, np.int32))
    y, c = blend_modes(f, b, modes)
    assert list(y[0, ::16]) == [10, 21, 16] and list(c[0, ::8]) == [10, 21, 16]
    rng = np.random.default_rng(7)
    m = rng.integers(0, 3, (4, 6))
    sinks = EncoderSinks()
    code_modes(sinks["p"], (4, 6), m, AdaptiveSymbolModel(4, 3))
    back = code_modes(DecoderSinks(sinks.finish())["p"], (4, 6), None, AdaptiveSymbolModel(4, 3))
    assert np.array_equal(back, m)


def test_integer_colour_conversion_round_trips_closely():
    frame = moving_clip(1)[0]
    back = rgb_to_yuv420(yuv420_to_rgb(*frame))
    for a, b in zip(frame, back, strict=True):
        assert np.abs(a.astype(int) - b).max() <= 2


# ----------------------------------------------------------------------------- round trips


@needs_weights
def test_api_round_trip_is_exact_and_inter_frames_are_cheap():
    frames = moving_clip(5)
    codec = get_codec("elic-ip", gop=4)
    seen = []
    encoded, sizes = codec.encode_frames(source_of(frames), 4, keep=lambda i, o, d: seen.append(d))
    assert len(sizes) == 5 and sorted(encoded.streams) == ["g0", "g1"]
    assert max(sizes[1:4]) < sizes[0] / 2  # P frames cost far less than the I frame
    data, report = api.encode_with_report(source_of(frames), "elic-ip", 4, {"gop": 4}, "video")
    assert report.shape == (5, H, W, 3) and report.colorspace == "yuv420"
    first, info = api.decode_bytes(data)
    first = list(first)
    again = list(api.decode_bytes(data)[0])
    for enc_side, a, b, orig in zip(seen, first, again, frames, strict=True):
        for p, q, r in zip(enc_side, a, b, strict=True):
            assert np.array_equal(p, q) and np.array_equal(q, r)
        assert plane_psnr(orig[0], a[0]) > 27
    assert info["metadata"]["gop"] == 4 and info["codec_name"] == "elic-ip"


@needs_weights
def test_b_frames_round_trip_exactly_in_display_order(tmp_path):
    frames = moving_clip(8)
    codec = get_codec("elic-ip", gop=7, bframes=4)  # I0 P4 B2 B1 B3 P6 B5 | I7
    seen = []
    keep = lambda i, o, d: seen.append((i, d))  # noqa: E731
    encoded, sizes = codec.encode_frames(source_of(frames), 4, keep=keep)
    assert [i for i, _ in seen] == list(range(8)) and len(sizes) == 8
    assert encoded.header["bgop"] == 4 and encoded.header["tools"] & 8
    assert max(sizes[1], sizes[3], sizes[5]) < sizes[0] / 2
    decoded = list(get_codec("elic-ip").decode(encoded))
    for (_, a), b, orig in zip(seen, decoded, frames, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
        assert plane_psnr(orig[0], b[0]) > 27
    from neuralcodec.codecs.learned_video import ElicIpCodec
    from neuralcodec.container import from_encoded, pack

    assert ElicIpCodec.frame_sizes(pack(from_encoded(codec, encoded))) == sizes
    for bad in (0, 1, 99, "4"):
        broken = Encoded(encoded.codec, {**encoded.header, "bgop": bad}, encoded.streams)
        one_line_error(CodecError, codec.decode, broken, match="B-frame spacing")
    stray = Encoded(encoded.codec, {**encoded.header, "tools": 7}, encoded.streams)
    one_line_error(CodecError, codec.decode, stray, match="B-frame spacing")
    with pytest.raises(CodecError, match="bframes"):
        get_codec("elic-ip", bframes=MAX_BFRAMES + 1)


def test_overlapped_prediction_blends_only_across_edges_between_different_vectors():
    rng = np.random.default_rng(3)
    ref = tuple(rng.integers(0, 256, s).astype(np.uint8) for s in ((48, 64), (24, 32), (24, 32)))
    same = np.full((3, 4, 2), 5, np.int32)
    plain, ob = predict_frame(ref, same), predict_frame(ref, same, obmc=True)
    assert all(np.array_equal(a, b) for a, b in zip(plain, ob, strict=True))
    w = obmc_weights(16)
    assert list(w[:5]) == [28, 20, 12, 4, 0] and list(obmc_weights(8)[:3]) == [24, 8, 0]
    mv = same.copy()
    mv[1, 1] = (-6, 9)  # one block moves differently
    plain, ob = predict_frame(ref, mv), predict_frame(ref, mv, obmc=True)
    diff = plain[0] != ob[0]
    assert diff.any() and not diff[:12].any() and not diff[:, :12].any()  # far blocks untouched
    # at the edge row of the odd block: 28/64 of the neighbour's prediction, rounded
    edge = (plain[0].astype(np.int64) * 36 + predict_frame(ref, same)[0] * 28 + 32) >> 6
    assert np.array_equal(ob[0][16, 20:28], edge[16, 20:28])


def test_split_prediction_is_the_whole_blocks_where_nothing_is_split():
    rng = np.random.default_rng(4)
    ref = tuple(rng.integers(0, 256, s).astype(np.uint8) for s in ((48, 64), (24, 32), (24, 32)))
    mv = rng.integers(-20, 20, (3, 4, 2)).astype(np.int32)
    field = np.repeat(np.repeat(mv, 2, 0), 2, 1)
    whole = predict_frame(ref, mv, obmc=True)
    same = predict_frame_split(ref, field, np.zeros((3, 4), np.int64))
    assert all(np.array_equal(a, b) for a, b in zip(whole, same, strict=True))
    split = np.zeros((3, 4), np.int64)
    split[1, 1] = 1
    field[3, 3] = (5, -7)  # the bottom-right 8x8 cell of block (1, 1) moves on its own
    part = predict_frame_split(ref, field, split)
    changed = np.argwhere(part[0] != same[0])
    # the split block (its edges now blended over 2 rows) and the band its cell overlaps below
    assert changed.min() >= 16 and changed.max() < 36


def test_split_flags_and_sub_vectors_round_trip():
    rng = np.random.default_rng(2)
    shape = (4, 6)
    mv = rng.integers(-9, 10, (*shape, 2)).astype(np.int32)
    split = (rng.random(shape) < 0.4).astype(np.int64)
    field = np.repeat(np.repeat(mv, 2, 0), 2, 1)
    for by, bx in np.argwhere(split):
        field[2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2] = rng.integers(-40, 41, (2, 2, 2))
        field[2 * by, 2 * bx] = mv[by, bx]  # the block's own vector is its top-left cell's
    field[1, 1] = (-300, 500)  # escape-coded differences (block (0, 0) split or not)
    split[0, 0] = 1
    models = SplitModels(), SplitModels()
    sinks = EncoderSinks()
    for _ in range(2):  # twice: the carried adaptive state
        assert np.array_equal(code_split_flags(sinks["p"], shape, split, models[0]), split)
        assert np.array_equal(code_sub_vectors(sinks["p"], mv, split, field, models[0]), field)
    data = sinks.finish()["p"]
    dec = DecoderSinks({"p": data})["p"]
    for _ in range(2):
        got = code_split_flags(dec, shape, None, models[1])
        assert np.array_equal(code_sub_vectors(dec, mv, got, None, models[1]), field)


@needs_weights
def test_split_blocks_round_trip_and_are_chosen_where_two_motions_meet(monkeypatch):
    from neuralcodec.codecs import learned_video, video_motion
    from neuralcodec.codecs.learned_video import TOOL_OBMC, TOOL_SPLIT

    a, b = moving_clip(4, seed=1), moving_clip(4, seed=2)
    frames = []
    for i, (fa, fb) in enumerate(zip(a, b, strict=True)):  # two motions, the edge at x = 40
        fb = tuple(np.roll(p, 4 * i if k == 0 else 2 * i, axis=1) for k, p in enumerate(fb))
        frames.append(
            tuple(
                np.concatenate([p[:, : 40 >> (k > 0)], q[:, 40 >> (k > 0) :]], 1)
                for k, (p, q) in enumerate(zip(fa, fb, strict=True))
            )
        )
    calls = []
    real = video_motion.code_sub_vectors

    def spy(sink, mv, split, field, models):
        calls.append(int(split.sum()))
        return real(sink, mv, split, field, models)

    monkeypatch.setattr(learned_video, "code_sub_vectors", spy)
    codec = get_codec("elic-ip", gop=4)
    seen = []
    encoded, _ = codec.encode_frames(source_of(frames), 8, keep=lambda i, o, d: seen.append(d))
    assert encoded.header["tools"] & TOOL_SPLIT and sum(calls) > 0
    decoded = list(get_codec("elic-ip").decode(encoded))
    for x, y in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(x, y, strict=True))
    stray = Encoded(
        encoded.codec,
        {**encoded.header, "tools": encoded.header["tools"] & ~TOOL_OBMC},
        encoded.streams,
    )
    one_line_error(CodecError, lambda: list(codec.decode(stray)), match="overlapped")


@needs_weights
def test_files_without_split_blocks_still_round_trip(monkeypatch):
    from neuralcodec.codecs import learned_video

    monkeypatch.setattr(learned_video, "TOOLS", 87)  # the tools before bit 128
    seen = []
    encoded, _ = get_codec("elic-ip", gop=4).encode_frames(
        source_of(moving_clip(4)), 6, keep=lambda i, o, d: seen.append(d)
    )
    monkeypatch.undo()
    assert encoded.header["tools"] == 87
    decoded = list(get_codec("elic-ip").decode(encoded))
    for a, b in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


@needs_weights
def test_files_without_coding_tools_still_decode(monkeypatch):
    from neuralcodec.codecs import learned_video

    frames = moving_clip(4)
    monkeypatch.setattr(learned_video, "TOOLS", 0)  # the first format: no header "tools"
    monkeypatch.setattr(learned_video, "CHROMA_STEP", 0)
    codec = get_codec("elic-ip", gop=4)
    seen = []
    encoded, _ = codec.encode_frames(source_of(frames), 3, keep=lambda i, o, d: seen.append(d))
    del encoded.header["tools"]
    monkeypatch.undo()
    decoded = list(get_codec("elic-ip").decode(encoded))
    for a, b in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    encoded.header["tools"] = 1 << 20  # a bit no version has written
    with pytest.raises(CodecError, match="coding tools"):
        get_codec("elic-ip").decode(encoded)
    # files of the tools before the loop filter (tools 7) decode as they were coded
    monkeypatch.setattr(learned_video, "TOOLS", 7)
    monkeypatch.setattr(learned_video, "CHROMA_STEP", 0)
    seen = []
    encoded, _ = codec.encode_frames(source_of(frames), 3, keep=lambda i, o, d: seen.append(d))
    monkeypatch.undo()
    assert encoded.header["tools"] == 7
    decoded = list(get_codec("elic-ip").decode(encoded))
    for a, b in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


GOLDEN_TOOLS23 = REPO_DIR / "tests" / "golden" / "elic-ip_tools23_q3.ncf"
GOLDEN_TOOLS23_FRAMES = "bf9e7c8203128f90510954624e8a65ae1d0950039102ce8b66b761ff13c13e8c"


@needs_weights
def test_golden_file_of_the_previous_tools_decodes_and_encodes_as_written(monkeypatch):
    """A file of tools 23 (frozen residual tables) written before tools bit 64 existed."""
    from neuralcodec.codecs import learned_video, video_motion

    data = GOLDEN_TOOLS23.read_bytes()
    h = hashlib.sha256()
    for frame in api.decode_bytes(data)[0]:
        for plane in frame:
            h.update(plane.tobytes())
    assert h.hexdigest() == GOLDEN_TOOLS23_FRAMES
    monkeypatch.setattr(learned_video, "TOOLS", 23)
    monkeypatch.setattr(video_motion, "WIDE_SEARCH", False)  # the encoder's search then
    options = {"gop": 5, "bframes": 1}  # P frames only, as then
    again = api.encode_array(source_of(moving_clip(5)), "elic-ip", 3, options, "video")
    assert again == data


@needs_weights
def test_adaptive_residual_files_round_trip_and_truncated_p_frames_fail_in_one_line():
    from neuralcodec.codecs.learned_video import TOOL_RES_ADAPTIVE, _take

    codec = get_codec("elic-ip", gop=8)
    seen = []
    encoded, sizes = codec.encode_frames(
        source_of(moving_clip(4)), 5, keep=lambda i, o, d: seen.append(d)
    )
    assert encoded.header["tools"] & TOOL_RES_ADAPTIVE
    decoded = list(get_codec("elic-ip").decode(encoded))
    for a, b in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    g0 = encoded.streams["g0"]
    intra, pos = _take(g0, 0)
    p_frame, _ = _take(g0, pos)
    ref = codec._intra_decode(intra, H, W, 5)
    for cut in (len(p_frame) // 2, len(p_frame) - 3, 2):
        with pytest.raises(ValueError) as err:  # the range decoder's DecodeError
            codec._p_decode(p_frame[:cut], ref)
        assert "\n" not in str(err.value)
    damaged = Encoded(encoded.codec, dict(encoded.header), {"g0": g0[: len(g0) - 5]})
    one_line_error(CodecError, lambda: list(codec.decode(damaged)), match=".")


@pytest.mark.slow  # two CLI processes, each loading torch and both weight files
@needs_weights
def test_cli_round_trip_keeps_rate_size_and_is_identical_on_redecode(tmp_path, run_cli):
    src = clip_file(tmp_path, 4)
    out = run_cli("encode", src, tmp_path / "c.ncf", "--codec", "elic-ip", "-q", "3",
                  "--frames", "3", "--gop", "2")  # fmt: skip
    assert out.returncode == 0, out.stderr
    dec = run_cli("decode", tmp_path / "c.ncf", tmp_path / "a.y4m")
    assert dec.returncode == 0, dec.stderr
    api.decode_file(tmp_path / "c.ncf", tmp_path / "b.y4m")
    assert (tmp_path / "a.y4m").read_bytes() == (tmp_path / "b.y4m").read_bytes()
    back = read_video(tmp_path / "a.y4m")
    assert len(back) == 3 and (back.info.width, back.info.height) == (W, H)
    assert back.info.fps == Fraction(30000, 1001) and back.info.aspect == Fraction(1)
    api.decode_file(tmp_path / "c.ncf", tmp_path / "p.mp4")
    assert len(read_video(tmp_path / "p.mp4")) == 3
    info = api.file_info(tmp_path / "c.ncf")
    assert info["metadata"]["gop"] == 2 and info["shape"] == [3, H, W, 3]


@needs_weights
def test_demo_clip_function_reports_sizes_psnr_and_writes_the_decoded_clip(tmp_path):
    src = clip_file(tmp_path, 3)
    out = api.encode_video_clip(src, 4, tmp_path / "d.y4m", gop=2)
    assert out["codec"] == "elic-ip" and out["frames"] == 3 and out["gop"] == 2
    assert len(out["frame_bytes"]) == 3 and sum(out["frame_bytes"]) < out["bytes"]
    assert out["bytes"] == len(out["ncf"]) and 25 < out["psnr"] < 60
    decoded = list(read_video(out["decoded"]))
    again = list(api.decode_bytes(out["ncf"])[0])
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(decoded, again, strict=True))


_DECODE = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from neuralcodec.api import decode_bytes
h = hashlib.sha256()
for frame in decode_bytes(open(sys.argv[2], "rb").read())[0]:
    for plane in frame:
        h.update(plane.tobytes())
print(h.hexdigest())
"""

ENVIRONMENTS = [
    (1, {"ONEDNN_MAX_CPU_ISA": "SSE41"}),
    (8, {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    (2, {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}),
]


def assert_decodes_identically_everywhere(data: bytes, tmp_path: Path) -> None:
    """The frames of the .ncf ``data`` decode to the same bytes here and in fresh processes
    under every forced instruction set and thread count of ``ENVIRONMENTS``."""
    path = tmp_path / "x.ncf"
    path.write_bytes(data)
    h = hashlib.sha256()
    for frame in api.decode_bytes(data)[0]:
        for plane in frame:
            h.update(plane.tobytes())
    for threads, env in ENVIRONMENTS:
        out = subprocess.run(
            [sys.executable, "-c", _DECODE, str(threads), str(path)],
            cwd=REPO_DIR, env={**os.environ, **env}, check=True, timeout=300,
            capture_output=True, text=True,
        )  # fmt: skip
        assert out.stdout.strip() == h.hexdigest(), (threads, env)


@needs_weights
def test_decoded_frames_are_identical_under_every_instruction_set_and_thread_count(tmp_path):
    frames = moving_clip(5)  # I0, P4, then B frames 2, 1 and 3 (loop filter on)
    data = api.encode_array(source_of(frames), "elic-ip", 5, {"gop": 8, "bframes": 4}, "video")
    assert_decodes_identically_everywhere(data, tmp_path)


# ----------------------------------------------------------------------------- bad inputs


@needs_weights
def test_bad_inputs_fail_in_one_line_without_output(tmp_path, run_cli):
    not_video = tmp_path / "fake.y4m"
    not_video.write_bytes(b"hello, not a video\n")
    odd = tmp_path / "odd.y4m"
    odd.write_bytes(b"YUV4MPEG2 W15 H9 F25:1 C420jpeg\nFRAME\n" + bytes(15 * 9 * 3 // 2 + 10))
    empty = tmp_path / "empty.y4m"
    empty.write_bytes(b"YUV4MPEG2 W16 H16 F25:1 C420jpeg\n")
    full = tmp_path / "full.y4m"
    full.write_bytes(b"YUV4MPEG2 W16 H16 F25:1 C444\nFRAME\n" + bytes(16 * 16 * 3))
    clip = clip_file(tmp_path, 2)
    cases = [
        (not_video, {}, {}, "YUV4MPEG2"),
        (odd, {}, {}, "even"),
        (empty, {}, {}, "0-frame"),
        (full, {}, {}, "4:2:0"),
        (clip, {"gop": 0}, {}, "gop"),
        (clip, {}, {"max_frames": 0}, "max_frames"),
    ]
    for i, (src, options, read, words) in enumerate(cases):
        dst = tmp_path / f"o{i}.ncf"
        one_line_error(
            CodecError, api.encode_file, src, dst, "elic-ip", 3,
            options=options, read_options=read, match=words,
        )  # fmt: skip
        assert not dst.exists()
    out = run_cli("encode", not_video, tmp_path / "x.ncf", "--codec", "elic-ip", "--gop", "4")
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error:") and not (tmp_path / "x.ncf").exists()


@needs_weights
def test_truncated_or_misdirected_files_are_refused(tmp_path):
    data = api.encode_array(source_of(moving_clip(3)), "elic-ip", 3, {"gop": 2}, "video")
    cut = tmp_path / "cut.ncf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    one_line_error(Exception, api.decode_file, cut, tmp_path / "cut.y4m", match=".")
    assert not (tmp_path / "cut.y4m").exists()
    whole = tmp_path / "whole.ncf"
    whole.write_bytes(data)
    one_line_error(CodecError, api.decode_file, whole, tmp_path / "f.png", match="video")
    assert not (tmp_path / "f.png").exists()
    one_line_error(Exception, api.decode_bytes, data[:-7], match=".")


@needs_weights
def test_damaged_gop_payload_is_a_codec_error_before_or_while_streaming():
    codec = get_codec("elic-ip", gop=2)
    encoded, _ = codec.encode_frames(source_of(moving_clip(3)), 3)
    g0 = encoded.streams["g0"]
    for broken in (g0[: len(g0) // 2], g0 + b"\x00\x01", b"\xff" * 8):
        damaged = Encoded(encoded.codec, dict(encoded.header), {**encoded.streams, "g0": broken})
        with pytest.raises(CodecError) as err:
            list(codec.decode(damaged))
        assert "\n" not in str(err.value)
    missing = Encoded(encoded.codec, dict(encoded.header), {"g0": g0})
    one_line_error(CodecError, codec.decode, missing, match="GOP segments")


@needs_weights
def test_random_damage_to_p_frames_gives_an_error_or_frames_never_a_crash():
    from neuralcodec.codecs.learned_video import _take

    codec = get_codec("elic-ip", gop=8)
    encoded, _ = codec.encode_frames(source_of(moving_clip(2)), 4)
    g0 = encoded.streams["g0"]
    intra, pos = _take(g0, 0)
    p_frame, _ = _take(g0, pos)
    ref = codec._intra_decode(intra, H, W, 4)
    good = codec._p_decode(p_frame, ref)
    rng = np.random.default_rng(5)
    outcomes = []
    for _ in range(60):
        buf = bytearray(p_frame)
        for at in rng.integers(0, len(buf), 2):
            buf[at] = int(rng.integers(0, 256))
        try:
            frame = codec._p_decode(bytes(buf), ref)
            assert [p.shape for p in frame] == [p.shape for p in good]
            outcomes.append("frame")
        except ValueError as exc:  # CodecError and the range decoder's DecodeError
            assert "\n" not in str(exc)
            outcomes.append("error")
    assert len(outcomes) == 60


@needs_weights
def test_random_damage_to_b_frames_gives_a_one_line_error_or_all_frames():
    from neuralcodec.codecs.learned_video import _take

    codec = get_codec("elic-ip", gop=8, bframes=2)  # I0, P2, B1
    encoded, _ = codec.encode_frames(source_of(moving_clip(3)), 4)
    g0 = encoded.streams["g0"]
    _, start = _take(g0, 0)  # damage the inter frames only
    rng = np.random.default_rng(8)
    outcomes = set()
    for _ in range(12):
        buf = bytearray(g0)
        for at in rng.integers(start, len(buf), 2):
            buf[at] = int(rng.integers(0, 256))
        damaged = Encoded(encoded.codec, dict(encoded.header), {"g0": bytes(buf)})
        try:
            frames = list(codec.decode(damaged))
            assert len(frames) == 3 and all(f[0].shape == (H, W) for f in frames)
            outcomes.add("frames")
        except CodecError as exc:
            assert "\n" not in str(exc)
            outcomes.add("error")
    assert "error" in outcomes


@needs_weights
def test_an_mp4_input_is_read_through_pyav_and_coded(tmp_path):
    from neuralcodec.datasets.video import write_video

    src = tmp_path / "in.mp4"
    write_video(src, source_of(moving_clip(2)), lossless=True)
    report = api.encode_file(src, tmp_path / "m.ncf", "elic-ip", 3, options={"gop": 4})
    assert report.shape == (2, H, W, 3)
    frames = list(api.decode_bytes((tmp_path / "m.ncf").read_bytes())[0])
    original = list(read_video(src))
    assert len(frames) == 2 and plane_psnr(original[0][0], frames[0][0]) > 25


def test_full_pel_sads_c_kernel_equals_numpy(monkeypatch):
    """The motion search's block SADs: the C kernel and the NumPy loop give the same integers
    (so the encoder's vectors do not depend on whether the extension is built)."""
    from neuralcodec.codecs import video_motion as vm
    from neuralcodec.kernels import _ext

    if _ext._exact is None:
        pytest.skip("C kernels not built")
    rng = np.random.default_rng(5)
    for hh, ww, r in ((32, 48, 0), (48, 64, 3), (64, 32, 9)):
        cur = rng.integers(0, 256, (hh, ww)).astype(np.int16)
        rp = rng.integers(0, 256, (hh + 2 * r, ww + 2 * r)).astype(np.int16)
        c = vm.full_pel_sads(cur, rp, r, 16)
        with monkeypatch.context() as m:
            m.setattr(_ext, "_exact", None)
            ref = vm.full_pel_sads(cur, rp, r, 16)
        assert np.array_equal(c, ref)
        # offset (0, 0) is the plain block SAD
        k0 = (2 * r + 1) * r + r
        d = np.abs(cur.astype(np.int32) - rp[r : r + hh, r : r + ww])
        assert np.array_equal(c[k0], d.reshape(hh // 16, 16, ww // 16, 16).sum(axis=(1, 3)))
    with pytest.raises(ValueError, match="shapes"):
        _ext._exact.block_sads(cur, rp[1:], r, 16, np.empty_like(c))


def same(a, b) -> bool:
    return all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


@needs_weights
def test_chroma_step_offset_round_trips_and_is_checked(monkeypatch):
    from neuralcodec.codecs import learned_video

    frames = moving_clip(4)
    codec = get_codec("elic-ip", gop=4)
    sizes = {}
    for cstep in (0, 3):
        monkeypatch.setattr(learned_video, "CHROMA_STEP", cstep)
        seen = []
        encoded, sizes[cstep] = codec.encode_frames(
            source_of(frames), 4, keep=lambda i, o, d, out=seen: out.append(d)
        )
        monkeypatch.undo()
        assert bool(encoded.header["tools"] & 32) == bool(cstep)
        assert encoded.header.get("cstep", 0) == cstep
        decoded = list(get_codec("elic-ip").decode(encoded))
        assert all(same(a, b) for a, b in zip(seen, decoded, strict=True))
        again = list(get_codec("elic-ip").decode(encoded))
        assert all(same(a, b) for a, b in zip(again, decoded, strict=True))
    # a coarser chroma step gives smaller inter frames; the I frame is unchanged
    assert sizes[3][0] == sizes[0][0] and sum(sizes[3][1:]) < sum(sizes[0][1:])
    for bad in (17, -17, True, "1", None):
        broken = Encoded(encoded.codec, {**encoded.header, "cstep": bad}, encoded.streams)
        one_line_error(CodecError, codec.decode, broken, match="chroma step")
    stray = dict(encoded.header)
    stray["tools"] &= ~32
    one_line_error(
        CodecError, codec.decode, Encoded(encoded.codec, stray, encoded.streams), match="chroma"
    )
    # decoding with the offset ignored would give other frames: the field is honoured
    wrong = Encoded(encoded.codec, {**encoded.header, "cstep": -3}, encoded.streams)
    try:
        other = list(get_codec("elic-ip").decode(wrong))
    except CodecError:
        other = None
    assert other is None or not all(same(a, b) for a, b in zip(other, decoded, strict=True))


@needs_weights
def test_intra_quality_offset_is_the_headers_quality_and_decodes(monkeypatch):
    from neuralcodec.codecs import learned_video

    frames = moving_clip(3)
    codec = get_codec("elic-ip", gop=3)
    monkeypatch.setattr(learned_video, "INTRA_CHOICE", learned_video.INTRA_ELIC)
    base, base_sizes = codec.encode_frames(source_of(frames), 4)
    monkeypatch.setattr(learned_video, "INTRA_OFFSET", 1)
    seen = []
    encoded, sizes = codec.encode_frames(source_of(frames), 4, keep=lambda i, o, d: seen.append(d))
    monkeypatch.undo()
    assert base.header["quality"] == 4 and encoded.header["quality"] == 5
    assert sizes[0] > base_sizes[0]
    assert all(same(a, b) for a, b in zip(seen, get_codec("elic-ip").decode(encoded), strict=True))


def test_wide_search_finds_motion_far_beyond_the_window(monkeypatch):
    from neuralcodec.codecs import video_motion

    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 256, (24, 64))
    big = np.repeat(np.repeat(coarse, 4, 0), 4, 1) + rng.integers(-8, 9, (96, 256))
    big = np.clip(big, 0, 255).astype(np.uint8)
    ref, cur = big[:, 48:208], big[:, 8:168]  # cur(x) = ref(x - 40): 40 pels, window is 24
    inner = (slice(None), slice(4, None))  # blocks whose match lies inside the reference
    mv = video_motion.estimate(cur, ref, 4.0)
    assert (mv[inner] == (0, -160)).all()
    monkeypatch.setattr(video_motion, "WIDE_SEARCH", False)
    narrow = video_motion.estimate(cur, ref, 4.0)
    assert not (narrow[inner] == (0, -160)).all(-1).any()


def noisy_still_clip(n: int, seed: int = 1) -> list[tuple[np.ndarray, ...]]:
    """One scene with fresh sensor-like noise in every frame: prediction error that does not
    grow with the distance between frames."""
    rng = np.random.default_rng(seed)
    scene = moving_clip(1)[0]
    return [
        tuple(np.clip(p + rng.integers(-3, 4, p.shape), 0, 255).astype(np.uint8) for p in scene)
        for _ in range(n)
    ]


def test_the_encoder_chooses_b_frames_where_prediction_holds_over_several_frames():
    from neuralcodec.codecs.learned_video import choose_bgop

    still = [f[0] for f in noisy_still_clip(5)]
    assert choose_bgop(still) == 4
    rng = np.random.default_rng(1)
    base = moving_clip(1)[0][0].astype(np.int64)
    drift = rng.integers(-4, 5, base.shape)  # a change motion cannot compensate, growing
    changing = [np.clip(base + t * drift, 0, 255).astype(np.uint8) for t in range(5)]
    assert choose_bgop(changing) == 1
    assert choose_bgop(still[:2]) == 1  # too short to tell


@needs_weights
def test_default_encoder_writes_b_frames_where_they_pay_and_decodes_them_exactly():
    from neuralcodec.codecs.learned_video import TOOL_BFRAMES

    codec = get_codec("elic-ip", gop=6)
    seen = []
    encoded, sizes = codec.encode_frames(
        source_of(noisy_still_clip(6)), 4, keep=lambda i, o, d: seen.append((i, d))
    )
    assert encoded.header["tools"] & TOOL_BFRAMES and encoded.header["bgop"] == 4
    assert len(sizes) == 6 and [i for i, _ in seen] == list(range(6))
    decoded = list(get_codec("elic-ip").decode(encoded))
    for (_, a), b in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    with pytest.raises(CodecError, match="bframes"):
        get_codec("elic-ip", bframes=-1)


@needs_weights
def test_intra_periods_too_short_for_b_frames_skip_the_choice(monkeypatch):
    from neuralcodec.codecs import learned_video

    calls = []
    monkeypatch.setattr(learned_video, "choose_bgop", lambda luma: calls.append(1) or 4)
    encoded, _ = get_codec("elic-ip", gop=2).encode_frames(source_of(noisy_still_clip(4)), 3)
    assert not calls and "bgop" not in encoded.header
    assert not encoded.header["tools"] & learned_video.TOOL_BFRAMES


def test_chroma_lambda_follows_the_benchmark_weights(monkeypatch):
    from neuralcodec.codecs import learned_video

    w = learned_video._plane_weight
    assert w([40.0, 10.0, 10.0], 0) == 1.0  # luma keeps its lambda
    assert w([40.0, 10.0, 10.0], 1) == pytest.approx(1.5 * 10.25 / 40.25)
    assert w([40.0, 0.0, 0.0], 2) == learned_video.CHROMA_RD  # floor
    assert w([4.0, 40.0, 40.0], 1) == 1.0  # never above luma's
    monkeypatch.setattr(learned_video, "CHROMA_RD", 1.0)
    assert w([40.0, 1.0, 1.0], 1) == 1.0  # off


def test_weighted_chroma_lambda_buys_chroma_quality_in_block_intra_frames():
    """The I frames' chroma planes coded again at a smaller lambda (encoder only; the same
    stream syntax): more bytes, higher chroma PSNR, and the decoder rebuilds what the encoder
    reports."""
    from neuralcodec.codecs import video_intra

    frame = moving_clip(1, w=160, h=96, seed=3)[0]
    si = 14
    plain, rec0 = video_intra.encode_frame(frame, si, 0.13)
    weighted, rec1 = video_intra.encode_frame(frame, si, 0.13, lambda mse, i: 0.2)
    assert len(weighted) > len(plain)
    assert np.array_equal(rec1[0], rec0[0])  # luma untouched
    for c in (1, 2):
        assert plane_psnr(frame[c], rec1[c]) > plane_psnr(frame[c], rec0[c])
    again = video_intra.decode_frame(weighted, 96, 160)
    assert all(np.array_equal(a, b) for a, b in zip(again, rec1, strict=True))


# ----------------------------------------------------------------------------- scene cuts


def cut_clip(n: int, at: int) -> list[tuple[np.ndarray, ...]]:
    """``moving_clip`` whose frames from ``at`` on show another scene: a still pattern of
    other frequencies, orientation and colours."""
    y, x = np.mgrid[0:H, 0:W]
    base = 128 + 90 * np.sign(np.sin((x + 2 * y) / 2.5)) * np.cos(x / 9.0 - y / 3.0)
    rgb = np.clip(np.stack([255 - base, base, base * 0.5 + 60], -1), 0, 255).astype(np.uint8)
    return moving_clip(n)[:at] + [rgb_to_yuv420(rgb)] * (n - at)


def test_period_starts_restart_at_each_cut():
    from neuralcodec.codecs.learned_video import gop_starts

    assert gop_starts(10, 4, []) == [0, 4, 8]
    assert gop_starts(10, 4, [3]) == [0, 3, 7]
    assert gop_starts(10, 4, [4, 6]) == [0, 4, 6]
    assert gop_starts(3, 32, [1, 2]) == [0, 1, 2]


def test_scene_change_is_small_within_a_pan_and_large_across_a_cut():
    from neuralcodec.codecs.learned_video import CUT_RATIO, scene_change

    clip = cut_clip(6, 3)
    within = [scene_change(clip[i - 1][0], clip[i][0]) for i in (1, 2, 4, 5)]
    across = scene_change(clip[2][0], clip[3][0])
    assert max(within) < CUT_RATIO < across and across > 2 * max(within)
    assert scene_change(clip[3][0], clip[4][0]) == 0.0  # a still frame
    # a fade to dark over the pan is not a cut: brightness and contrast are matched first
    fade = [
        np.clip(16 + (f[0].astype(float) - 16) * (1 - i / 7), 0, 255) for i, f in enumerate(clip)
    ]
    fade = [np.rint(f).astype(np.uint8) for f in fade[:3]]
    assert max(scene_change(fade[i - 1], fade[i]) for i in (1, 2)) < CUT_RATIO


@needs_weights
def test_no_cut_right_after_a_period_starts(monkeypatch):
    from neuralcodec.codecs import learned_video

    codec = get_codec("elic-ip", gop=8, bframes=1)
    early, _ = codec.encode_frames(source_of(cut_clip(6, 2)), 4)  # 2 frames after the I frame
    assert "cuts" not in early.header and sorted(early.streams) == ["g0"]
    monkeypatch.setattr(learned_video, "CUT_GAP", 2)
    allowed, _ = codec.encode_frames(source_of(cut_clip(6, 2)), 4)
    assert allowed.header["cuts"] == [2]


@needs_weights
@pytest.mark.parametrize("bframes", [1, 4])
def test_a_scene_cut_starts_a_period_and_round_trips(monkeypatch, bframes):
    from neuralcodec.codecs import learned_video
    from neuralcodec.codecs.learned_video import TOOL_CUTS, ElicIpCodec
    from neuralcodec.container import from_encoded, pack

    frames = cut_clip(9, 5)
    codec = get_codec("elic-ip", gop=8, bframes=bframes)
    seen = []
    encoded, sizes = codec.encode_frames(
        source_of(frames), 4, keep=lambda i, o, d: seen.append((i, d))
    )
    assert encoded.header["cuts"] == [5] and encoded.header["tools"] & TOOL_CUTS
    assert sorted(encoded.streams) == ["g0", "g1"]  # frames 0-4, then 5-8 (not 0-7, 8)
    assert [i for i, _ in seen] == list(range(9))
    decoded = list(get_codec("elic-ip").decode(encoded))
    for (_, a), b, orig in zip(seen, decoded, frames, strict=True):
        assert same(a, b) and plane_psnr(orig[0], b[0]) > 27
    assert ElicIpCodec.frame_sizes(pack(from_encoded(codec, encoded))) == sizes
    monkeypatch.setattr(learned_video, "SCENECUT", False)
    plain, _ = codec.encode_frames(source_of(frames), 4)
    monkeypatch.undo()
    assert "cuts" not in plain.header and not plain.header["tools"] & TOOL_CUTS
    unasked, _ = get_codec("elic-ip", gop=8, bframes=bframes, scenecut=False).encode_frames(
        source_of(frames), 4
    )
    assert unasked.streams == plain.streams and unasked.header == plain.header
    with pytest.raises(CodecError, match="scenecut"):
        get_codec("elic-ip", scenecut=1)
    # the header is checked: the bit and the list go together, cuts increase inside the clip
    for bad in ([0], [9], [5, 5], [6, 5], [], "5", [True], None):
        broken = Encoded(encoded.codec, {**encoded.header, "cuts": bad}, encoded.streams)
        one_line_error(CodecError, codec.decode, broken, match="scene cuts")
    stray = {**encoded.header, "tools": encoded.header["tools"] & ~TOOL_CUTS}
    one_line_error(
        CodecError, codec.decode, Encoded(encoded.codec, stray, encoded.streams), match="scene"
    )
    moved = Encoded(encoded.codec, {**encoded.header, "cuts": [4]}, encoded.streams)
    try:
        other = list(get_codec("elic-ip").decode(moved))
    except CodecError:
        other = None
    assert other is None or not all(same(a, b) for (_, a), b in zip(seen, other, strict=False))


@needs_weights
def test_cli_codes_scene_cuts_unless_told_not_to(tmp_path, run_cli):
    src = tmp_path / "cut.y4m"
    write_y4m(src, source_of(cut_clip(6, 4)))
    for extra, cuts in (((), [4]), (("--no-scenecut",), None)):
        out = tmp_path / f"c{len(extra)}.ncf"
        done = run_cli(
            "encode", src, out, "--codec", "elic-ip", "-q", "2", "--bframes", "1", *extra
        )
        assert done.returncode == 0, done.stderr
        assert api.file_info(out)["metadata"].get("cuts") == cuts

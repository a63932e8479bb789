"""Block intra coding of ``elic-ip``'s I frames (``video_intra``, tools bit 256)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import one_line_error
from test_video_codec import (
    H,
    W,
    assert_decodes_identically_everywhere,
    moving_clip,
    needs_weights,
    plane_psnr,
    source_of,
)

from neuralcodec import api
from neuralcodec.codecs import learned_video, video_intra
from neuralcodec.codecs.base import CodecError, Encoded, get_codec
from neuralcodec.codecs.learned_video import INTRA_BLOCK, INTRA_ELIC, TOOL_INTRA_BLOCK, _take
from neuralcodec.codecs.video_residual import TB
from neuralcodec.kernels import _ext


def test_every_mode_predicts_a_flat_block_from_flat_edges_and_follows_its_edges():
    rec = np.full((24, 32), 77, np.uint8)
    for m in range(video_intra.INTRA_MODES):
        p = video_intra.predict(rec, 8, 8, m)
        assert p.dtype == np.int64 and p.shape == (TB, TB)
        assert (p == 77).all(), m
    rng = np.random.default_rng(1)
    rec = rng.integers(0, 256, (24, 32)).astype(np.uint8)
    assert (video_intra.predict(rec, 8, 8, 1) == rec[7, 8:16]).all()  # vertical
    assert (video_intra.predict(rec, 8, 8, 2) == rec[8:16, 7][:, None]).all()  # horizontal
    for m in range(video_intra.INTRA_MODES):
        p = video_intra.predict(rec, 8, 16, m)
        assert p.min() >= 0 and p.max() <= 255
    # the top-right edge beyond the plane repeats the last pixel above
    assert (video_intra.predict(rec, 8, 24, 4) >= 0).all()
    assert video_intra.predict(rec, 0, 0, 0)[0, 0] == 128  # DC with no edges
    for y, x, m in ((0, 8, 1), (8, 0, 2), (0, 8, 3), (8, 0, 5), (0, 0, 4), (8, 0, 9), (0, 8, 8)):
        assert not video_intra.available(y, x, m)
        with pytest.raises(ValueError):
            video_intra.predict(rec, y, x, m)


@needs_weights
def test_intra_planes_round_trip_and_the_decoder_rebuilds_the_encoders_pixels():
    from neuralcodec.codecs.latent.sinks import DecoderSinks, EncoderSinks

    model = video_intra.dct_model()
    y, u, v = moving_clip(1, 80, 48)[0]
    step = 128
    coded, recs, shapes = [], [], []
    for i, plane in enumerate((y, u, v)):
        kind = "luma" if i == 0 else "chroma"
        modes, q, rec = video_intra.encode_plane(
            model, video_intra.pad_plane(plane), kind, step, 0.13
        )
        assert (video_intra.decode_plane(model, modes, q, kind, step) == rec).all()
        coded.append((modes, q))
        recs.append(rec)
        shapes.append(modes.shape)
    assert len(np.unique(coded[0][0])) > 1  # more than DC alone on a textured plane
    sinks = EncoderSinks()
    video_intra.code_planes(sinks["p"], 12, shapes, coded)
    data = sinks.finish()["p"]
    got = video_intra.code_planes(DecoderSinks({"p": data})["p"], 12, shapes)
    for (m0, q0), (m1, q1) in zip(coded, got, strict=True):
        assert (m0 == m1).all() and (q0 == q1).all()
    assert plane_psnr(y, recs[0][: y.shape[0], : y.shape[1]]) > 30


needs_c = pytest.mark.skipif(not hasattr(_ext._exact, "intra_row"), reason="C kernels not built")


@needs_c
@pytest.mark.parametrize("step, lam", [(16, 0.05), (128, 0.13), (181, 2.0), (2048, 0.3)])
def test_the_c_intra_coder_chooses_and_rebuilds_as_the_numpy_one(monkeypatch, step, lam):
    model = video_intra.dct_model()
    rng = np.random.default_rng(step)
    y, u, _ = moving_clip(1, 88, 56)[0]
    noisy = np.clip(y.astype(int) + rng.integers(-40, 41, y.shape), 0, 255).astype(np.uint8)
    for kind, plane in (("luma", y), ("chroma", u), ("luma", noisy)):
        padded = video_intra.pad_plane(plane)
        fast = video_intra.encode_plane(model, padded, kind, step, lam)
        with monkeypatch.context() as m:
            m.setattr(_ext, "_exact", None)  # the NumPy loop
            slow = video_intra.encode_plane(model, padded, kind, step, lam)
        for a, b in zip(fast, slow, strict=True):
            assert np.array_equal(a, b)
        modes, q, rec = fast
        res = model.dequantise(q, kind, step)
        assert np.array_equal(video_intra._decode_plane_numpy(modes, res), rec)
        assert np.array_equal(video_intra.decode_plane(model, modes, q, kind, step), rec)


@needs_c
def test_the_c_intra_decoder_refuses_modes_without_edges():
    model = video_intra.dct_model()
    modes = np.zeros((2, 3), np.int64)
    q = np.zeros((2, 3, TB * TB), np.int32)
    assert (video_intra.decode_plane(model, modes, q, "luma", 64) == 128).all()
    for m in (1, 2, 3, 5, 11, -1):  # each needs an edge the top-left block lacks, or is no mode
        modes[0, 0] = m
        with pytest.raises(ValueError, match="intra mode"):
            video_intra.decode_plane(model, modes, q, "luma", 64)


def _clip(monkeypatch, choice, n=3, quality=5):
    monkeypatch.setattr(learned_video, "INTRA_CHOICE", choice)
    codec = get_codec("elic-ip", gop=8)
    seen = []
    encoded, _ = codec.encode_frames(
        source_of(moving_clip(n)), quality, keep=lambda i, o, d: seen.append(d)
    )
    return codec, encoded, seen


@needs_weights
def test_block_intra_clips_round_trip_exactly_and_name_their_coding(monkeypatch):
    codec, encoded, seen = _clip(monkeypatch, INTRA_BLOCK)
    assert encoded.header["tools"] & TOOL_INTRA_BLOCK
    intra, _ = _take(encoded.streams["g0"], 0)
    assert intra[0] == INTRA_BLOCK
    decoded = list(get_codec("elic-ip").decode(encoded))
    for a, b in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    src = moving_clip(3)
    assert plane_psnr(src[0][0], decoded[0][0]) > 30
    # the same clip with elic-int I frames: the first byte says so, and it decodes
    codec, encoded, seen = _clip(monkeypatch, INTRA_ELIC)
    assert _take(encoded.streams["g0"], 0)[0][0] == INTRA_ELIC
    decoded = list(get_codec("elic-ip").decode(encoded))
    assert all(np.array_equal(p, q) for p, q in zip(seen[-1], decoded[-1], strict=True))


@needs_weights
def test_the_encoder_keeps_the_cheaper_intra_coding(monkeypatch):
    codec = get_codec("elic-ip")
    frame = moving_clip(1)[0]
    si = 12
    lam = (
        learned_video.INTRA_LAMBDA
        * learned_video.RD_LAMBDA
        * (learned_video.STEP_GRID[si] / 16) ** 2
    )

    def cost(payload, planes):
        sse = sum(
            float(((a.astype(np.int64) - b) ** 2).sum()) for a, b in zip(frame, planes, strict=True)
        )
        return sse + lam * 8 * len(payload)

    chosen = codec._intra_encode(frame, 4, si)
    monkeypatch.setattr(learned_video, "INTRA_CHOICE", INTRA_ELIC)
    elic = codec._intra_encode(frame, 4, si)
    monkeypatch.setattr(learned_video, "INTRA_CHOICE", INTRA_BLOCK)
    block = codec._intra_encode(frame, 4, si)
    assert cost(*chosen) == min(cost(*elic), cost(*block))
    for payload, planes in (chosen, elic, block):
        again = codec._intra_decode(payload, H, W, 4)
        assert all(np.array_equal(p, q) for p, q in zip(planes, again, strict=True))


@needs_weights
def test_files_without_block_intra_still_decode(monkeypatch):
    monkeypatch.setattr(learned_video, "TOOLS", learned_video.TOOLS & ~TOOL_INTRA_BLOCK)
    codec, encoded, seen = _clip(monkeypatch, None)
    assert not encoded.header["tools"] & TOOL_INTRA_BLOCK
    monkeypatch.undo()
    decoded = list(get_codec("elic-ip").decode(encoded))
    for a, b in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


@needs_weights
def test_damaged_block_intra_frames_fail_in_one_line(monkeypatch):
    codec, encoded, _ = _clip(monkeypatch, INTRA_BLOCK, n=1)
    intra, _ = _take(encoded.streams["g0"], 0)
    for bad in (b"\x07" + intra[1:], intra[:1] + b"\xff" + intra[2:], intra[:1], b""):
        one_line_error(CodecError, codec._intra_decode, bad, H, W, 5, match=".")
    rng = np.random.default_rng(3)
    for _ in range(30):
        buf = bytearray(intra)
        for at in rng.integers(2, len(buf), 2):
            buf[at] = int(rng.integers(0, 256))
        try:
            planes = codec._intra_decode(bytes(buf), H, W, 5)
            assert [p.shape for p in planes] == [(H, W), (H // 2, W // 2), (H // 2, W // 2)]
        except ValueError as exc:  # CodecError and the range decoder's DecodeError
            assert "\n" not in str(exc)
    truncated = Encoded(encoded.codec, dict(encoded.header), {"g0": encoded.streams["g0"][:-4]})
    one_line_error(CodecError, lambda: list(codec.decode(truncated)), match=".")


@needs_weights
def test_block_intra_frames_decode_identically_under_every_instruction_set(tmp_path, monkeypatch):
    monkeypatch.setattr(learned_video, "INTRA_CHOICE", INTRA_BLOCK)
    data = api.encode_array(source_of(moving_clip(2)), "elic-ip", 4, {"gop": 8}, "video")
    assert_decodes_identically_everywhere(data, tmp_path)


def test_each_direction_is_predicted_best_by_its_own_mode():
    rng = np.random.default_rng(0)
    h = np.cumsum(rng.normal(0, 6, 200))
    h = (h - h.min()) / (h.max() - h.min()) * 200 + 20
    yy, xx = np.mgrid[0:32, 0:32]
    lines = {  # mode: an image constant along that mode's direction
        4: xx + yy, 5: xx - yy + 40, 6: 2 * xx - yy + 40, 7: 2 * yy - xx + 40,
        8: 2 * xx + yy, 9: xx + 2 * yy,
    }  # fmt: skip
    for mode, f in lines.items():
        img = h[f].astype(np.uint8)
        errors = [
            np.abs(video_intra.predict(img, 16, 8, m) - img[16:24, 8:16]).sum()
            for m in range(video_intra.INTRA_MODES)
        ]
        assert int(np.argmin(errors)) == mode, (mode, errors)


def test_the_dct_basis_is_nearly_orthonormal_integers_with_the_flat_vector_first():
    b = video_intra.dct_basis()
    assert b.dtype == np.int64 and np.abs(b).max() <= 1 << 12
    g = b.T.astype(np.float64) @ b / 4096.0**2
    assert np.abs(g - np.eye(64)).max() < 2e-3
    assert (b[:, 0] == b[0, 0]).all()  # DC first, then the lowest frequencies


@needs_weights
def test_inter_residuals_in_the_dct_round_trip_and_older_files_keep_the_klt(monkeypatch):
    from neuralcodec.codecs.learned_video import TOOL_DCT_INTER, TOOL_RES_ADAPTIVE

    codec, encoded, seen = _clip(monkeypatch, None, n=3)
    assert encoded.header["tools"] & TOOL_DCT_INTER
    decoded = list(get_codec("elic-ip").decode(encoded))
    assert all(
        all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
        for a, b in zip(seen, decoded, strict=True)
    )
    monkeypatch.setattr(learned_video, "TOOLS", learned_video.TOOLS & ~TOOL_DCT_INTER)
    _, klt, klt_seen = _clip(monkeypatch, None, n=3)
    monkeypatch.undo()
    assert not klt.header["tools"] & TOOL_DCT_INTER
    assert klt.streams["g0"] != encoded.streams["g0"]  # the P frames differ
    decoded = list(get_codec("elic-ip").decode(klt))
    assert all(
        all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
        for a, b in zip(klt_seen, decoded, strict=True)
    )
    bad = Encoded(
        encoded.codec,
        {**encoded.header, "tools": encoded.header["tools"] & ~TOOL_RES_ADAPTIVE},
        encoded.streams,
    )
    one_line_error(
        CodecError, lambda: list(get_codec("elic-ip").decode(bad)), match="adaptive residual"
    )

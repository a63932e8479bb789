"""``elic-ip``'s 8-tap luma interpolation (``tools`` bit 4096): the quarter-pel plane from C and
NumPy, the encoder's sample table against the decoder's prediction, the per-frame flag, exact
round trips and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from test_video_codec import assert_decodes_identically_everywhere, needs_weights
from test_video_filter import sub_pel_pan

from neuralcodec import api
from neuralcodec.codecs import learned_video
from neuralcodec.codecs.base import CodecError, get_codec
from neuralcodec.codecs.learned_video import SHARP_FLAG, TOOL_SHARP
from neuralcodec.codecs.video_motion import (
    QPEL8_TAPS,
    QuarterPelPlane,
    half_pel_plane,
    predict_luma,
    quarter_pel_plane,
)
from neuralcodec.datasets.video import frames_source
from neuralcodec.kernels import _ext


def _written_out(ref: np.ndarray) -> np.ndarray:
    """The quarter-pel plane sample by sample, as its docstring states it."""
    h, w = ref.shape
    r = ref.astype(np.int64)
    out = np.zeros((4 * h, 4 * w), np.int64)
    for y in range(h):
        for x in range(w):
            for fy in range(4):
                for fx in range(4):
                    acc = 0
                    for i, cy in enumerate(QPEL8_TAPS[fy]):
                        yy = min(max(y - 3 + i, 0), h - 1)
                        row = sum(
                            cx * r[yy, min(max(x - 3 + j, 0), w - 1)]
                            for j, cx in enumerate(QPEL8_TAPS[fx])
                        )
                        acc += cy * row
                    out[4 * y + fy, 4 * x + fx] = min(max((acc + 2048) >> 12, 0), 255)
    return out


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (9, 5)])
def test_the_quarter_pel_plane_is_the_written_out_filter(shape, monkeypatch):
    ref = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.uint8)
    want = _written_out(ref)
    assert np.array_equal(quarter_pel_plane(ref), want)
    monkeypatch.setattr(_ext, "_exact", None)  # the NumPy version
    assert np.array_equal(quarter_pel_plane(ref), want)


def test_the_quarter_pel_plane_keeps_whole_pels_flat_areas_and_ramps():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, (24, 40)).astype(np.uint8)
    q = quarter_pel_plane(ref)
    assert q.shape == (96, 160) and q.dtype == np.int32
    assert np.array_equal(q[::4, ::4], ref)  # whole-pel positions are the samples
    assert np.all(quarter_pel_plane(np.full((8, 8), 77, np.uint8)) == 77)
    ramp = np.tile(np.arange(0, 200, 5, dtype=np.uint8), (8, 1))  # 40 columns
    half = quarter_pel_plane(ramp)[0, 4 * 3 + 2 : 4 * 36 : 4]  # x + 1/2 away from the edges
    assert np.array_equal(half, ramp[0, 3:36].astype(np.int32) + 3)  # 5x + 2.5, rounded up


@pytest.mark.skipif(not hasattr(_ext._exact, "qpel8"), reason="C kernels not built")
def test_the_c_kernel_refuses_what_does_not_fit():
    ref = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError):
        _ext._exact.qpel8(ref, np.zeros((16, 15), np.int32))
    with pytest.raises(ValueError):
        _ext._exact.qpel8(ref + 256, np.zeros((16, 16), np.int32))
    with pytest.raises(TypeError):
        _ext._exact.qpel8(ref.astype(np.int64), np.zeros((16, 16), np.int32))


@pytest.mark.parametrize("numpy_only", [False, True])
def test_the_encoders_sharp_table_is_the_decoders_prediction(numpy_only, monkeypatch):
    rng = np.random.default_rng(4)
    ref = rng.integers(0, 256, (40, 72)).astype(np.uint8)
    if numpy_only:
        monkeypatch.setattr(_ext, "_exact", None)
    ref4 = quarter_pel_plane(ref)
    table = QuarterPelPlane(ref4, sharp=True)
    mv = rng.integers(-90, 90, (3, 5, 2)).astype(np.int32)  # many point outside the plane
    want = predict_luma(ref4, mv, sharp=True)
    assert np.array_equal(table.predict(mv, 16), want)
    assert np.array_equal(table.block(1, 3, mv[1, 3], 16), want[16:32, 48:64])
    assert not np.array_equal(want, predict_luma(half_pel_plane(ref), mv))  # 8 against 6 taps
    still = np.zeros_like(mv)  # whole-pel vectors inside the plane: both are the reference
    assert np.array_equal(predict_luma(ref4, still, sharp=True)[:40, :72], ref)


def _inter_flags(codec, encoded) -> list[bool]:
    """Whether each inter frame of a one-GOP file has the 8-tap flag (payload's first byte)."""
    buf, pos, flags = encoded.streams["g0"], 0, []
    while pos < len(buf):
        payload, pos = learned_video._take(buf, pos)
        flags.append(bool(payload[0] & SHARP_FLAG))
    return flags[1:]  # the I frame's first byte is its coding, not a step


@needs_weights
@pytest.mark.parametrize("bframes", [1, 4])
def test_sharp_frames_round_trip_and_never_changes_nothing(bframes, monkeypatch):
    frames, info = sub_pel_pan(5)
    codec = get_codec("elic-ip", gop=8, bframes=bframes)

    def encode(mode: str, max_step: int = learned_video.SHARP_MAX_STEP):
        monkeypatch.setattr(learned_video, "SHARP", mode)
        monkeypatch.setattr(learned_video, "SHARP_MAX_STEP", max_step)
        seen = {}
        encoded, _ = codec.encode_frames(
            frames_source(info, iter(frames), "pan"), 3, keep=lambda i, o, d: seen.__setitem__(i, d)
        )
        decoded = list(codec.decode(encoded))
        for i, frame in enumerate(decoded):
            assert all(np.array_equal(p, q) for p, q in zip(frame, seen[i], strict=True))
        return encoded

    always = encode("always")
    assert always.header["tools"] & TOOL_SHARP and all(_inter_flags(codec, always))
    # "step": the frames at SHARP_MAX_STEP and finer; quality 3's are coarser than 21
    assert not any(_inter_flags(codec, encode("step")))
    assert all(_inter_flags(codec, encode("step", 40)))
    never = encode("never")
    assert not any(_inter_flags(codec, never))
    assert never.streams != always.streams
    monkeypatch.setattr(learned_video, "TOOLS", learned_video.TOOLS & ~TOOL_SHARP)
    old = encode("always")  # without the bit: the same frames as "never"
    assert not old.header["tools"] & TOOL_SHARP
    assert old.streams == never.streams


@needs_weights
def test_the_flag_is_a_bad_step_without_the_tool_and_a_bad_step_stays_refused():
    codec = get_codec("elic-ip")
    ref = tuple(np.zeros(s, np.uint8) for s in ((32, 32), (16, 16), (16, 16)))
    tools = learned_video.TOOLS
    with pytest.raises(CodecError, match="quantiser step"):
        codec._p_decode(bytes([SHARP_FLAG | 4, 0, 0]), ref, tools & ~TOOL_SHARP)
    with pytest.raises(CodecError, match="quantiser step"):
        codec._p_decode(bytes([SHARP_FLAG | 100, 0, 0]), ref, tools)
    with pytest.raises(CodecError, match="empty"):
        codec._p_decode(b"", ref, tools)


@needs_weights
def test_sharp_frames_decode_identically_under_every_instruction_set(tmp_path, monkeypatch):
    monkeypatch.setattr(learned_video, "SHARP", "always")
    frames, info = sub_pel_pan(5)  # I0, P4, B2, B1, B3
    source = frames_source(info, iter(frames), "pan")
    data = api.encode_array(source, "elic-ip", 3, {"gop": 8, "bframes": 4}, "video")
    assert_decodes_identically_everywhere(data, tmp_path)

"""The in-loop Wiener filter of elic-ip's inter frames (video_filter, tools bit 2048)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from test_video_codec import assert_decodes_identically_everywhere, needs_weights

from neuralcodec import api
from neuralcodec.codecs import learned_video, video_filter
from neuralcodec.codecs.base import get_codec
from neuralcodec.codecs.latent.sinks import DecoderSinks, EncoderSinks
from neuralcodec.codecs.learned_video import rgb_to_yuv420
from neuralcodec.codecs.video_filter import CLIPS, TAPS, FilterState, apply, code_plane
from neuralcodec.datasets.video import VideoInfo, frames_source


def _reference_filter(plane: np.ndarray, coefs, clip: int) -> np.ndarray:
    """The filter written out pixel by pixel (edges repeated)."""
    h, w = plane.shape
    x = plane.astype(np.int64)
    out = np.empty_like(x)
    for y in range(h):
        for xx in range(w):
            c = x[y, xx]
            s = 0
            for k, (dy, dx) in enumerate(TAPS):
                a = x[min(max(y + dy, 0), h - 1), min(max(xx + dx, 0), w - 1)]
                b = x[min(max(y - dy, 0), h - 1), min(max(xx - dx, 0), w - 1)]
                s += int(coefs[k]) * (min(max(a - c, -clip), clip) + min(max(b - c, -clip), clip))
            out[y, xx] = min(max(c + ((s + 32) >> 6), 0), 255)
    return out.astype(np.uint8)


@pytest.mark.parametrize("clip", [CLIPS[0], CLIPS[2], CLIPS[-1]])
def test_apply_matches_the_written_out_filter(clip):
    rng = np.random.default_rng(1)
    plane = rng.integers(0, 256, (13, 19)).astype(np.uint8)
    coefs = np.array([9, 7, -3, -2, 4, 5])
    got = apply(plane, coefs, None, 32, clip)
    assert np.array_equal(got, _reference_filter(plane, coefs, clip))
    assert np.array_equal(apply(plane, np.zeros(6, np.int64), None, 32, clip), plane)


def test_apply_keeps_flat_planes_and_the_regions_left_off():
    flat = np.full((40, 40), 77, np.uint8)
    assert np.array_equal(apply(flat, np.array([30, 30, -10, -10, 5, 5]), None, 16), flat)
    rng = np.random.default_rng(2)
    plane = rng.integers(0, 256, (40, 40)).astype(np.uint8)
    mask = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], bool)
    got = apply(plane, np.array([12, 12, 0, 0, 0, 0]), mask, 16)
    full = apply(plane, np.array([12, 12, 0, 0, 0, 0]), None, 16)
    on = np.repeat(np.repeat(mask, 16, 0), 16, 1)[:40, :40]
    assert np.array_equal(got[on], full[on]) and np.array_equal(got[~on], plane[~on])


def _blurred_pair(seed: int, shape=(64, 96)):
    """A textured source and a noisy, blurred reconstruction of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    src = 128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 3, shape)
    src = np.clip(src, 0, 255)
    k = np.array([1, 2, 1]) / 4.0
    blur = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, src)
    blur = np.apply_along_axis(lambda c: np.convolve(c, k, "same"), 0, blur)
    rec = np.clip(blur + rng.normal(0, 2, shape), 0, 255)
    return src.astype(np.uint8), rec.astype(np.uint8)


def test_round_trip_and_the_filter_lowers_the_error():
    enc_state, dec_state = FilterState(), FilterState()
    sinks = EncoderSinks()
    pairs = [_blurred_pair(s) for s in (3, 4)]
    encoded = []
    for src, rec in pairs:
        for plane in range(3):
            out = code_plane(sinks["f"], rec, plane, enc_state, src, lam=4.0)
            encoded.append(out)
            err_before = np.mean((src.astype(float) - rec) ** 2)
            err_after = np.mean((src.astype(float) - out) ** 2)
            assert err_after < 0.9 * err_before  # the blur is what the filter undoes
    stream = sinks.finish()["f"]
    sink = DecoderSinks({"f": stream})["f"]
    k = 0
    for _, rec in pairs:
        for plane in range(3):
            assert np.array_equal(code_plane(sink, rec, plane, dec_state), encoded[k])
            k += 1
    assert np.array_equal(enc_state.prev, dec_state.prev)


def test_a_filter_that_does_not_pay_is_left_off():
    src, _ = _blurred_pair(5)
    assert video_filter.choose(src, src, 0, FilterState(), 1.0, 32, (2, 3))[0] == 0
    sinks = EncoderSinks()
    out = code_plane(sinks["f"], src, 0, FilterState(), src, lam=1.0)  # nothing to correct
    assert np.array_equal(out, src)
    sink = DecoderSinks({"f": sinks.finish()["f"]})["f"]
    assert np.array_equal(code_plane(sink, src, 0, FilterState()), src)


def test_the_last_filter_is_cheaper_to_send_again():
    src, rec = _blurred_pair(6)
    fs = FilterState()
    first = video_filter.choose(rec, src, 0, fs, 4.0, 32, (2, 3))
    assert first[0] != 0

    def bits(state):
        from neuralcodec.codecs.latent.sinks import CounterSinks

        c = CounterSinks()
        video_filter._side_info(c["f"], 0, first, state, (2, 3))
        return c.bits["f"]

    fresh = bits(FilterState())
    seen = FilterState()
    seen.prev[0] = first[2]
    assert bits(seen) < fresh


@pytest.mark.parametrize("bad", ["mode", "clip", "coef"])
def test_bad_side_information_is_refused(bad):
    fs = FilterState()
    sinks = EncoderSinks()
    sink = sinks["f"]
    st = fs.st
    sink.code_ints(np.array([0]), st, np.array([7 if bad == "mode" else 1]))
    sink.code_ints(np.array([1]), st, np.array([len(CLIPS) if bad == "clip" else 0]))
    coef = [500 if bad == "coef" else 3] + [0] * (len(TAPS) - 1)
    sink.code_ints(2 + np.arange(len(TAPS)), st, np.array(coef))
    dec = DecoderSinks({"f": sinks.finish()["f"]})["f"]
    with pytest.raises(ValueError, match="loop filter"):
        code_plane(dec, np.zeros((16, 16), np.uint8), 0, FilterState())


# ----------------------------------------------------------------------------- in the codec


def sub_pel_pan(n: int, w: int = 160, h: int = 96):
    """A fine texture panning by (0.61, 0.37) pixels a frame: its interpolated predictions are
    blurred, which the filter can undo."""
    y, x = np.mgrid[0:h, 0:w].astype(float)
    frames = []
    for i in range(n):
        xx, yy = x + 0.37 * i, y + 0.61 * i
        b = 120 + 50 * np.sin(xx / 4.0) * np.cos(yy / 6.0) + 25 * np.sin(xx / 1.6 + yy / 2.1)
        rgb = np.clip(np.stack([b, b * 0.7 + 40, 255 - b], -1), 0, 255).astype(np.uint8)
        frames.append(rgb_to_yuv420(rgb))
    info = VideoInfo(w, h, "420", 8, Fraction(30), Fraction(1), "p", {}, frames=n)
    return frames, info


@needs_weights
def test_inter_frames_carry_the_filter_and_decode_to_the_encoders_frames(monkeypatch):
    calls = []
    real = video_filter.apply
    monkeypatch.setattr(video_filter, "apply", lambda *a: calls.append(a[3]) or real(*a))
    frames, info = sub_pel_pan(4)
    codec = get_codec("elic-ip", gop=4, bframes=1)
    seen = []
    source = frames_source(info, iter(frames), "pan")
    encoded, _ = codec.encode_frames(source, 3, keep=lambda i, o, d: seen.append(d))
    assert encoded.header["tools"] & learned_video.TOOL_WIENER
    coded = len(calls)
    assert coded > 0  # the blurred predictions leave the filter something to correct
    decoded = list(codec.decode(encoded))
    assert len(calls) == 2 * coded
    for a, b in zip(seen, decoded, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    # without the bit the same clip is coded as before, the filter never asked for
    monkeypatch.setattr(learned_video, "TOOLS", learned_video.TOOLS & ~learned_video.TOOL_WIENER)
    calls.clear()
    old, _ = codec.encode_frames(frames_source(info, iter(frames), "pan"), 3)
    assert not old.header["tools"] & learned_video.TOOL_WIENER and not calls
    list(codec.decode(old))
    assert not calls


def test_region_flags_round_trip_where_only_part_of_the_plane_gains():
    src, rec = _blurred_pair(7, (96, 128))
    rec = rec.copy()
    rec[:, 64:] = src[:, 64:]  # the right half is already exact: the filter only hurts there
    enc = FilterState()
    spec = video_filter.choose(rec, src, 0, enc.copy(), 2.0, 32, (3, 4))
    assert spec[0] == 2 and spec[3][:, :2].all() and not spec[3][:, 2:].any()
    sinks = EncoderSinks()
    out = code_plane(sinks["f"], rec, 0, enc, src, 2.0)
    assert np.array_equal(out[:, 64:], rec[:, 64:])
    dec = DecoderSinks({"f": sinks.finish()["f"]})["f"]
    assert np.array_equal(code_plane(dec, rec, 0, FilterState()), out)


@needs_weights
def test_filtered_frames_decode_identically_under_every_instruction_set(tmp_path, monkeypatch):
    calls = []
    real = video_filter.apply
    monkeypatch.setattr(video_filter, "apply", lambda *a: calls.append(1) or real(*a))
    frames, info = sub_pel_pan(5)  # I0, P4, B2, B1, B3
    source = frames_source(info, iter(frames), "pan")
    data = api.encode_array(source, "elic-ip", 3, {"gop": 8, "bframes": 4}, "video")
    assert calls  # some plane was filtered
    assert_decodes_identically_everywhere(data, tmp_path)

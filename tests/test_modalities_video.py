"""The video adapter and its readers / writers: y4m, raw yuv, PyAV files, image folders; streaming."""

from __future__ import annotations

import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_DIR, shared

from neuralcodec.container.fields import ContainerError
from neuralcodec.datasets.paths import OutputError
from neuralcodec.datasets.video import (
    VideoError,
    VideoInfo,
    frames_source,
    read_video,
    read_y4m,
    write_video,
)
from neuralcodec.datasets.video_av import rgb_to_ycbcr
from neuralcodec.modalities import adapter_for

VIDEO_DIR = REPO_DIR.parent / "shared" / "data" / "video"
MOBILE = VIDEO_DIR / "mobile_cif_30f_decoded_from_CVPCMNL1.y4m"
FOREMAN = VIDEO_DIR / "foreman_cif_300f_h264.mp4"
BASKETBALL = VIDEO_DIR / "BasketballPass_416x240_png"
CISCO = VIDEO_DIR / "openh264_res" / "CiscoVT2people_320x192_12fps.yuv"
CVPCM = VIDEO_DIR / "openh264_res" / "CVPCMNL1_SVA_C.264"


def synthetic_frames(info: VideoInfo, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    top = (1 << info.bit_depth) - 1
    for _ in range(n):
        yield tuple(rng.integers(0, top + 1, s).astype(info.dtype) for s in info.plane_shapes())


def write_y4m_bytes(path: Path, header: str, frames: list[bytes], frame_header: bytes = b"FRAME\n"):
    path.write_bytes(header.encode() + b"\n" + b"".join(frame_header + f for f in frames))
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


# ----------------------------------------------------------------------------- shared files


def test_mobile_y4m_reads_and_rewrites_byte_identical(tmp_path):
    src = read_video(shared(MOBILE))
    info = src.info
    assert (info.width, info.height, info.chroma, info.bit_depth) == (352, 288, "420", 8)
    assert (len(src), info.fps, info.aspect) == (30, Fraction(30000, 1001), Fraction(128, 117))
    assert info.colour == {"siting": "left"}  # C420mpeg2
    first = next(iter(src))
    assert [p.shape for p in first] == [(288, 352), (144, 176), (144, 176)]
    write_video(tmp_path / "m.y4m", src)
    assert (tmp_path / "m.y4m").read_bytes() == MOBILE.read_bytes()


def test_foreman_mp4_frame_count_rate_and_max_frames():
    src = read_video(shared(FOREMAN))
    assert (len(src), src.info.fps, src.info.width, src.info.height) == (300, 25, 352, 288)
    short = read_video(FOREMAN, max_frames=12)
    frames = list(short)
    assert len(frames) == 12 and frames[0][0].dtype == np.uint8
    assert 60 < frames[0][0].mean() < 200  # a real picture, not zeros


def test_raw_h264_stream_and_mp4_decode_the_same_content():
    y4m = next(iter(read_video(shared(MOBILE))))
    raw = read_video(shared(CVPCM))
    assert len(raw) == 30
    assert np.array_equal(next(iter(raw))[0], y4m[0])  # the y4m was decoded from this stream


def test_raw_yuv_takes_size_and_rate_from_the_name():
    src = read_video(shared(CISCO))
    assert (src.info.width, src.info.height, src.info.fps, len(src)) == (320, 192, 12, 9)
    assert sum(1 for _ in src) == 9


def test_png_directory_becomes_bt601_420(tmp_path):
    src = read_video(shared(BASKETBALL), max_frames=2, fps="50")
    assert (src.info.width, src.info.height, len(src), src.info.fps) == (416, 240, 2, 50)
    assert len(read_video(BASKETBALL)) == 100
    y, u, v = next(iter(src))
    assert y.shape == (240, 416) and u.shape == (120, 208)
    assert y.min() >= 16 and y.max() <= 235 and src.info.colour["matrix"] == 6


# ----------------------------------------------------------------------------- y4m formats


@pytest.mark.parametrize(
    "tag, chroma, depth",
    [
        ("C420jpeg", "420", 8),
        ("C444", "444", 8),
        ("Cmono", "mono", 8),
        ("C420p10", "420", 10),
        ("Cmono10", "mono", 10),
        ("C444p12", "444", 12),
    ],
)
def test_y4m_formats_round_trip(tmp_path, tag, chroma, depth):
    info = VideoInfo(8, 6, chroma, depth, Fraction(24000, 1001), frames=3)
    frames = list(synthetic_frames(info, 3))
    dt = np.dtype(info.dtype).newbyteorder("<")
    raw = [b"".join(p.astype(dt).tobytes() for p in f) for f in frames]
    header = f"YUV4MPEG2 W8 H6 F24000:1001 It A1:1 {tag} XCOLORRANGE=FULL XYSCSS=X"
    path = write_y4m_bytes(tmp_path / "s.y4m", header, raw, b"FRAME Ixyz\n")
    src = read_y4m(path)
    assert (src.info.chroma, src.info.bit_depth, src.info.interlace) == (chroma, depth, "t")
    assert src.info.colour["range"] == "pc" and src.info.aspect == 1
    got = list(src)
    assert all(
        np.array_equal(a, b)
        for f, g in zip(frames, got, strict=True)
        for a, b in zip(f, g, strict=True)
    )
    write_video(tmp_path / "o.y4m", src)
    again = list(read_y4m(tmp_path / "o.y4m"))
    assert all(
        np.array_equal(a, b)
        for f, g in zip(frames, again, strict=True)
        for a, b in zip(f, g, strict=True)
    )


def test_y4m_bad_inputs(tmp_path):
    frame = bytes(8 * 6 * 3 // 2)
    cases = {
        "text.y4m": b"hello, not a video\n",
        "odd.y4m": b"YUV4MPEG2 W7 H6 F25:1 C420jpeg\nFRAME\n" + bytes(100),
        "empty.y4m": b"YUV4MPEG2 W8 H6 F25:1 C420jpeg\n",
        "cut.y4m": b"YUV4MPEG2 W8 H6 F25:1 C420jpeg\nFRAME\n" + frame + b"FRAME\n" + frame[:-5],
        "c422.y4m": b"YUV4MPEG2 W8 H6 F25:1 C422\nFRAME\n" + bytes(96),
        "nosize.y4m": b"YUV4MPEG2 F25:1\nFRAME\n",
        "junk.y4m": b"YUV4MPEG2 W8 H6 F25:1\nFRAME\n" + frame + b"GARBAGE\n" + frame,
        "huge.y4m": b"YUV4MPEG2 W100000 H100000 F25:1\nFRAME\n",
    }
    expect = ["not a YUV4MPEG2", "even", "0-frame", "truncated", "unsupported y4m", "W and H",
              "does not start with FRAME", "outside the limits"]  # fmt: skip
    for (name, data), words in zip(cases.items(), expect, strict=True):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(VideoError, match=words) as err:
            read_video(tmp_path / name)
        assert "\n" not in str(err.value)


def test_other_bad_inputs(tmp_path):
    (tmp_path / "x.yuv").write_bytes(bytes(1000))
    with pytest.raises(VideoError, match="width and height"):
        read_video(tmp_path / "x.yuv")
    with pytest.raises(VideoError, match="whole number"):
        read_video(tmp_path / "x.yuv", width=16, height=16)
    (tmp_path / "x.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(50))
    with pytest.raises(VideoError, match="cannot read|no frames|no video"):
        read_video(tmp_path / "x.mp4")
    (tmp_path / "frames").mkdir()
    with pytest.raises(VideoError, match="no image files"):
        read_video(tmp_path / "frames")
    with pytest.raises(VideoError, match="no such file"):
        read_video(tmp_path / "missing.y4m")
    with pytest.raises(VideoError, match="do not apply"):
        read_video(tmp_path / "x.yuv", chroma="444")


# ----------------------------------------------------------------------------- streaming


def test_long_clip_streams_through_prepare_restore_write_with_few_frames_alive(tmp_path):
    info = VideoInfo(64, 48, "420", 8, Fraction(30), frames=300)
    adapter = adapter_for("video")
    alive, peak = [0], [0]

    def gone() -> None:
        alive[0] -= 1

    def frames():
        for frame in synthetic_frames(info, 300, seed=7):
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
            weakref.finalize(frame[0], gone)
            yield frame

    prepared = adapter.prepare(frames_source(info, frames()))
    header = {"modality": "video", **prepared.fields}
    restored = adapter.restore(iter(prepared.coded), header, {})
    adapter.write(tmp_path / "long.y4m", restored, header)
    assert peak[0] <= 3 and alive[0] <= 1
    size = (tmp_path / "long.y4m").stat().st_size
    header_len = len((tmp_path / "long.y4m").read_bytes().split(b"\n", 1)[0]) + 1
    assert size == header_len + 300 * (6 + 64 * 48 * 3 // 2)
    assert len(read_y4m(tmp_path / "long.y4m")) == 300


def test_failed_stream_leaves_no_file_and_existing_output_is_kept(tmp_path):
    info = VideoInfo(16, 16, "420", 8, Fraction(25), frames=5)

    def broken():
        yield from synthetic_frames(info, 2)
        raise VideoError("decoder failed")

    out = tmp_path / "o.y4m"
    with pytest.raises(VideoError, match="decoder failed"):
        write_video(out, frames_source(info, broken()))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(VideoError, match="ended after 3 frames"):
        write_video(out, frames_source(info, synthetic_frames(info, 3)))
    assert list(tmp_path.iterdir()) == []
    write_video(out, frames_source(info, synthetic_frames(info, 5)))
    with pytest.raises(OutputError, match="exists"):
        write_video(out, frames_source(info, synthetic_frames(info, 5)))
    write_video(out, frames_source(info, synthetic_frames(info, 5, seed=3)), force=True)


def test_wrong_frame_shapes_are_refused(tmp_path):
    info = VideoInfo(16, 16, "420", 8, Fraction(25), frames=1)
    bad = [(np.zeros((16, 16), np.uint8), np.zeros((8, 8), np.uint8))]
    with pytest.raises(VideoError, match="3 planes"):
        write_video(tmp_path / "o.y4m", frames_source(info, bad))
    bad = [(np.zeros((16, 16), np.uint16),) * 3]
    with pytest.raises(VideoError, match="expected uint8"):
        write_video(tmp_path / "o.y4m", frames_source(info, bad))
    info10 = VideoInfo(4, 2, "mono", 10, Fraction(25), frames=1)
    with pytest.raises(VideoError, match="exceeds 10 bits"):
        write_video(
            tmp_path / "o.y4m", frames_source(info10, [(np.full((2, 4), 1024, np.uint16),)])
        )
    assert list(tmp_path.iterdir()) == []


def test_limited_source_stops_early_and_reads_again():
    src = read_video(shared(MOBILE)).limited(3)
    first = [f[0].copy() for f in src]
    second = [f[0] for f in src]
    assert len(first) == 3 and all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(VideoError, match="at least 1"):
        read_video(MOBILE, max_frames=0)


# ----------------------------------------------------------------------------- H.264 preview


def test_mp4_lossless_round_trip_and_quality_preview(tmp_path):
    y, x = np.mgrid[0:48, 0:64]
    info = VideoInfo(64, 48, "420", 8, Fraction(30000, 1001), Fraction(4, 3), frames=10)
    frames = [
        (((x + 3 * t) * 3 % 256).astype(np.uint8), np.full((24, 32), 100 + t, np.uint8),
         ((y[::2, ::2] * 4) % 256).astype(np.uint8))
        for t in range(10)
    ]  # fmt: skip
    write_video(tmp_path / "l.mp4", frames_source(info, iter(frames)), lossless=True)
    back = read_video(tmp_path / "l.mp4")
    assert (len(back), back.info.fps, back.info.aspect) == (
        10,
        Fraction(30000, 1001),
        Fraction(4, 3),
    )
    assert all(
        np.array_equal(a, b)
        for f, g in zip(frames, back, strict=True)
        for a, b in zip(f, g, strict=True)
    )
    write_video(tmp_path / "q.mkv", frames_source(info, iter(frames)))
    lossy = list(read_video(tmp_path / "q.mkv"))
    assert min(psnr(f[0], g[0]) for f, g in zip(frames, lossy, strict=True)) > 40


def test_mp4_preview_of_10bit_444_and_mono(tmp_path):
    for chroma, depth in (("444", 10), ("mono", 8)):
        info = VideoInfo(32, 16, chroma, depth, Fraction(25), frames=3)
        frames = list(synthetic_frames(info, 3))
        out = tmp_path / f"{chroma}.mp4"
        write_video(out, frames_source(info, iter(frames)), lossless=True)
        back = list(read_video(out))
        assert len(back) == 3 and back[0][0].shape == (16, 32)
        want = frames[0][0] if depth == 8 else np.clip((frames[0][0].astype(int) + 2) >> 2, 0, 255)
        assert np.array_equal(back[0][0], want)


# ----------------------------------------------------------------------------- the adapter


def test_adapter_header_round_trip_keeps_rate_aspect_and_colour(tmp_path):
    adapter = adapter_for("video")
    src = read_video(shared(MOBILE), max_frames=4)
    prepared = adapter.prepare(src)
    f = prepared.fields
    assert f["shape"] == (4, 288, 352, 3) and f["colorspace"] == "yuv420" and f["bit_depth"] == 8
    assert f["metadata"] == {
        "fps": "30000/1001",
        "interlace": "p",
        "aspect": "128/117",
        "colour": {"siting": "left"},
    }
    header = {"modality": "video", **f}
    adapter.check_header(header)
    restored = adapter.restore((tuple(p.copy() for p in fr) for fr in prepared.coded), header, {})
    assert restored.info == src.info
    adapter.write(tmp_path / "r.y4m", restored, header)
    assert (tmp_path / "r.y4m").read_bytes() == MOBILE.read_bytes()[
        : (tmp_path / "r.y4m").stat().st_size
    ]
    assert adapter.units(header) == 4 * 288 * 352
    assert adapter.rate(1000, header) == pytest.approx(8000 / (4 * 288 * 352))
    assert adapter.rate_unit == "bpp"


@pytest.mark.parametrize(
    "change, words",
    [
        ({"shape": (0, 16, 16, 3)}, "frames"),
        ({"shape": (2, 15, 16, 3)}, "not even"),
        ({"shape": (2, 16, 16)}, "4 dimensions"),
        ({"shape": (2, 1 << 17, 16, 3)}, "limits"),
        ({"shape": (2, 16, 16, 1)}, "channels"),
        ({"colorspace": "rgb"}, "colour space"),
        ({"bit_depth": 4}, "bit depth"),
        ({"metadata": {"fps": "0/1"}}, "fps"),
        ({"metadata": {"fps": "25", "interlace": "p"}}, "fps"),
        ({"metadata": {"fps": "25/1", "colour": {"matrix": "x"}}}, "colour"),
    ],
)
def test_adapter_refuses_absurd_headers(change, words):
    header = {"modality": "video", "shape": (2, 16, 16, 3), "colorspace": "yuv420", "bit_depth": 8,
              "metadata": {"fps": "25/1"}}  # fmt: skip
    adapter_for("video").check_header(header)
    with pytest.raises(ContainerError, match=words):
        adapter_for("video").check_header({**header, **change})


def test_adapter_accepts_by_extension_and_directory(tmp_path):
    adapter = adapter_for("video")
    for name in ("a.y4m", "a.YUV", "a.mp4", "a.mkv", "a.mov", "a.264"):
        assert adapter.accepts(name)
    assert adapter.accepts(tmp_path) and not adapter.accepts(tmp_path, writing=True)
    assert adapter.accepts("o.mp4", writing=True) and not adapter.accepts("o.yuv", writing=True)
    assert not adapter.accepts("a.ply") and not adapter.accepts("a.png")


def test_rgb_to_ycbcr_matches_bt601_reference_colours():
    rgb = np.array([[[255, 255, 255], [0, 0, 0]], [[255, 0, 0], [0, 0, 255]]], np.uint8)
    y, u, v = rgb_to_ycbcr(rgb, "444")
    assert y.tolist() == [[235, 16], [81, 41]]
    assert u.tolist() == [[128, 128], [90, 240]] and v.tolist() == [[128, 128], [240, 110]]

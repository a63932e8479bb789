"""The ``codec`` command line and the library API under it, end to end with the test codecs."""

from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import pytest
from conftest import REPO_DIR, TEST_RAW_SHA256

from neuralcodec import api
from neuralcodec.app import cli
from neuralcodec.app.report import jpeg_at_size, jpeg_bytes, psnr
from neuralcodec.codecs import base as codecs_base
from neuralcodec.codecs.base import (
    Codec,
    CodecError,
    Encoded,
    codec_class,
    codec_names,
    get_codec,
    ranked_names,
)
from neuralcodec.datasets.images import read_image, write_png_atomic
from neuralcodec.datasets.paths import write_bytes_atomic
from neuralcodec.modalities import base as modalities_base
from neuralcodec.modalities.base import ModalityAdapter, Prepared


def codec(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``codec ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors and --help
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, pattern: str) -> None:
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], err
    assert "Traceback" not in err


@pytest.fixture
def png(tmp_path, smooth_image):
    path = tmp_path / "in.png"
    write_png_atomic(path, smooth_image)
    return path


# ----------------------------------------------------------------------------- subprocess


def test_entry_point_round_trip_in_a_fresh_process(run_cli, png, tmp_path, smooth_image):
    r = run_cli("encode", png, tmp_path / "x.ncf", "--codec", "test-zlib", "-q", "3")
    assert r.returncode == 0, r.stderr
    r = run_cli("decode", tmp_path / "x.ncf", tmp_path / "out.png")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), smooth_image)


def test_entry_point_errors_are_one_line_with_status_1(run_cli, tmp_path):
    r = run_cli("encode", tmp_path / "missing.png", tmp_path / "x.ncf")
    assert_one_line_error(r.returncode, r.stderr, "no such file")
    r = run_cli("--debug", "info", tmp_path)
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_entry_point_usage_errors_exit_2(run_cli, png, tmp_path):
    assert run_cli("encode", png).returncode == 2
    assert run_cli("encode", png, tmp_path / "x.ncf", "--quality", "high").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_module_entry_point_lists_codecs():
    import subprocess

    cmd = [sys.executable, "-m", "neuralcodec.app.cli", "list", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_DIR, timeout=120)
    assert r.returncode == 0, r.stderr
    assert {"name", "codec_id", "modality", "qualities", "weights_available"} <= set(
        json.loads(r.stdout)[0]
    )


# ----------------------------------------------------------------------------- commands


def test_encode_decode_info(capsys, png, tmp_path, smooth_image):
    rc, out, _ = codec(capsys, "encode", png, tmp_path / "x.ncf", "--codec", "test-raw", "-q", "3")
    assert rc == 0 and "test-raw q=3" in out and "bpp" in out
    rc, out, _ = codec(capsys, "info", tmp_path / "x.ncf")
    assert rc == 0 and "24 x 40 x 3" in out and TEST_RAW_SHA256 in out
    assert re.search(r"^decodable here +yes$", out, re.M)
    rc, out, _ = codec(capsys, "info", tmp_path / "x.ncf", "--json")
    info = json.loads(out)
    assert info["file_bytes"] == (tmp_path / "x.ncf").stat().st_size and info["weights"] == "ok"
    assert [s["name"] for s in info["streams"]] == ["first-row", "rest"]
    assert info["rate_unit"] == "bpp" and info["rate"] == info["bpp"]
    assert info["bpp"] == pytest.approx(8 * info["file_bytes"] / (24 * 40), abs=1e-6)
    rc, out, _ = codec(capsys, "decode", tmp_path / "x.ncf", tmp_path / "y.png", "--json")
    assert rc == 0 and json.loads(out)["shape"] == [24, 40, 3]
    np.testing.assert_array_equal(read_image(tmp_path / "y.png"), smooth_image)


def test_list_shows_ncf_and_benchmark_codecs(capsys):
    rc, out, _ = codec(capsys, "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["test-zlib"]["codec_id"] == 250 and rows["test-zlib"]["qualities"] == [1, 9]
    assert rows["test-zlib"]["writes_ncf"] and rows["test-zlib"]["weights_available"]
    rc, out, _ = codec(capsys, "list")
    assert rc == 0 and "test-raw" in out


def test_existing_output_needs_force(capsys, png, tmp_path):
    dst = tmp_path / "x.ncf"
    dst.write_bytes(b"keep")
    rc, _, err = codec(capsys, "encode", png, dst, "--codec", "test-zlib")
    assert_one_line_error(rc, err, "exists (use --force")
    assert dst.read_bytes() == b"keep"
    rc, _, _ = codec(capsys, "encode", png, dst, "--codec", "test-zlib", "--force")
    assert rc == 0 and dst.read_bytes()[:4] == b"\x89NCF"
    (tmp_path / "y.png").write_bytes(b"keep")
    rc, _, err = codec(capsys, "decode", dst, tmp_path / "y.png")
    assert_one_line_error(rc, err, "exists")


@pytest.mark.parametrize(
    "make_input,pattern",
    [
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "t.png").write_text("hello") and d / "t.png", "not a supported image"),
    ],
)
def test_bad_inputs_fail_cleanly(capsys, tmp_path, make_input, pattern):
    rc, _, err = codec(
        capsys, "encode", make_input(tmp_path), tmp_path / "x.ncf", "--codec", "test-zlib"
    )
    assert_one_line_error(rc, err, pattern)
    assert not (tmp_path / "x.ncf").exists()


def test_decode_to_a_format_the_modality_does_not_write_fails_cleanly(capsys, png, tmp_path):
    assert codec(capsys, "encode", png, tmp_path / "x.ncf", "--codec", "test-zlib")[0] == 0
    rc, _, err = codec(capsys, "decode", tmp_path / "x.ncf", tmp_path / "x.webp")
    assert_one_line_error(rc, err, "cannot write image data as .webp")
    assert not (tmp_path / "x.webp").exists()


def test_presets_go_to_the_codec_that_takes_them(capsys, png, tmp_path):
    rc, _, err = codec(capsys, "encode", png, tmp_path / "x.ncf", "--codec", "inr", "--preset", "x")
    assert_one_line_error(rc, err, "unknown preset 'x' (known: ")
    rc, _, err = codec(
        capsys, "encode", png, tmp_path / "x.ncf", "--codec", "test-zlib", "--preset", "fast"
    )
    assert_one_line_error(rc, err, "codec test-zlib takes no option preset")
    assert not (tmp_path / "x.ncf").exists()


def test_bad_ncf_inputs_fail_cleanly(capsys, tmp_path, png):
    (tmp_path / "bad.ncf").write_bytes(b"\x89NCF\r\n\x1a\n\x01")
    for cmd in ("info", "decode"):
        extra = [tmp_path / "o.png"] if cmd == "decode" else []
        rc, _, err = codec(capsys, cmd, tmp_path / "bad.ncf", *extra)
        assert_one_line_error(rc, err, "truncated")
    rc, _, err = codec(capsys, "decode", png, tmp_path / "o.png")
    assert_one_line_error(rc, err, "bad magic")
    assert not (tmp_path / "o.png").exists()


def test_unwritable_outputs_fail_cleanly(capsys, png, tmp_path):
    rc, _, err = codec(capsys, "encode", png, tmp_path / "nodir" / "x.ncf", "--codec", "test-zlib")
    assert_one_line_error(rc, err, "does not exist")
    rc, _, err = codec(capsys, "encode", png, tmp_path, "--codec", "test-zlib")
    assert_one_line_error(rc, err, "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
def test_read_only_directory_fails_cleanly(capsys, png, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    rc, _, err = codec(capsys, "encode", png, ro / "x.ncf", "--codec", "test-zlib")
    assert_one_line_error(rc, err, "not writable")


def test_bad_quality_and_unknown_codec_fail_cleanly(capsys, png, tmp_path):
    rc, _, err = codec(
        capsys, "encode", png, tmp_path / "x.ncf", "--codec", "test-zlib", "-q", "10"
    )
    assert_one_line_error(rc, err, "quality must be an integer in 1..9")
    rc, _, err = codec(capsys, "encode", png, tmp_path / "x.ncf", "--codec", "nosuch")
    assert_one_line_error(rc, err, "unknown codec 'nosuch'")
    rc, _, err = codec(capsys, "encode", png, tmp_path / "x.ncf", "--codec", "jpeg")
    assert_one_line_error(rc, err, "benchmarks only")
    assert list(tmp_path.iterdir()) == [png]


def test_missing_delegated_module_fails_cleanly(capsys, monkeypatch):
    monkeypatch.setattr(cli, "DELEGATED", ((("demo",), "neuralcodec.app.no_such_tool"),))
    rc, _, err = codec(capsys, "demo", "--port", "1")
    assert_one_line_error(rc, err, "not available in this installation")


def test_default_codec_is_the_lowest_rank_with_weights(capsys, monkeypatch, png, tmp_path):
    monkeypatch.setattr(codec_class("test-zlib"), "rank", -1)
    monkeypatch.setattr(codec_class("test-raw"), "rank", -2)
    assert api.default_codec("image") == "test-raw"
    rc, out, _ = codec(capsys, "encode", png, tmp_path / "x.ncf", "--json")
    report = json.loads(out)
    assert rc == 0 and report["codec"] == "test-raw" and report["quality"] == 2
    monkeypatch.setattr(api, "weights_available", lambda name: name == "test-zlib")
    assert api.default_codec("image") == "test-zlib"
    monkeypatch.setattr(api, "weights_available", lambda name: False)
    rc, _, err = codec(capsys, "encode", png, tmp_path / "y.ncf")
    assert_one_line_error(rc, err, "no image codec with available weights")


def test_shipped_codecs_are_ranked_by_preference_and_only_inr_is_slow():
    shipped = [n for n in ranked_names("image") if not n.startswith("test-")]
    assert shipped == [
        "elic-int4",
        "elic",
        "elic-int",
        "mlic",
        "mbt-mean-int",
        "mbt-mean",
        "bmshj-hyper",
        "bmshj-factorized",
        "wavelet",
        "inr",
    ]
    assert [n for n in codec_names() if codec_class(n).slow_reason] == ["inr"]


# ----------------------------------------------------------------------------- image policy


def _through_cli(capsys, tmp_path, array, *extra):
    src, mid, dst = tmp_path / "src.png", tmp_path / "mid.ncf", tmp_path / "dst.png"
    write_png_atomic(src, array)
    rc, out, err = codec(capsys, "encode", src, mid, "--codec", "test-zlib", "--json", *extra)
    assert rc == 0, err
    rc, _, derr = codec(capsys, "decode", mid, dst)
    assert rc == 0, derr
    return json.loads(out), read_image(dst)


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (5, 3, 1), (1, 7, 1)])
def test_tiny_images_round_trip(capsys, tmp_path, rng, shape):
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    report, out = _through_cli(capsys, tmp_path, arr)
    assert tuple(report["shape"]) == shape
    np.testing.assert_array_equal(out, arr)


def test_grayscale_is_coded_as_rgb_and_decoded_to_one_channel(capsys, tmp_path, smooth_image):
    gray = smooth_image[..., :1].copy()
    report, out = _through_cli(capsys, tmp_path, gray)
    assert report["colorspace"] == "gray" and out.shape == (24, 40, 1)
    np.testing.assert_array_equal(out, gray)


def test_opaque_alpha_is_dropped_with_a_note(capsys, tmp_path, smooth_image):
    rgba = np.concatenate([smooth_image, np.full((24, 40, 1), 255, np.uint8)], axis=2)
    report, out = _through_cli(capsys, tmp_path, rgba)
    assert (
        report["colorspace"] == "rgb"
        and "alpha channel is fully opaque: dropped" in report["notes"]
    )
    np.testing.assert_array_equal(out, smooth_image)


@pytest.mark.parametrize("colour_channels", [1, 3])
def test_alpha_is_coded_losslessly(capsys, tmp_path, rng, colour_channels):
    arr = rng.integers(0, 256, (6, 7, colour_channels + 1), dtype=np.uint8)
    report, out = _through_cli(capsys, tmp_path, arr)
    assert report["colorspace"] == ("rgba" if colour_channels == 3 else "gray-alpha")
    np.testing.assert_array_equal(out, arr)


def test_16bit_is_reduced_to_8_bits_with_a_warning(capsys, tmp_path, rng):
    arr = rng.integers(0, 65536, (4, 5, 4), dtype=np.uint16)
    report, out = _through_cli(capsys, tmp_path, arr)
    assert report["bit_depth"] == 16 and any(
        n.startswith("warning: 16-bit") for n in report["notes"]
    )
    assert out.dtype == np.uint16 and out.shape == arr.shape
    expected = (np.round(arr[..., :3] / 257.0) * 257).astype(np.uint16)
    np.testing.assert_array_equal(out[..., :3], expected)
    np.testing.assert_array_equal(out[..., 3], arr[..., 3])  # alpha stays exact


def test_api_refuses_unusable_arrays():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        api.encode_array(np.zeros((2, 2, 3), np.float32), "test-zlib", 1)
    with pytest.raises(ValueError, match="C in 1..4"):
        api.encode_array(np.zeros((2, 2, 5), np.uint8), "test-zlib", 1)
    with pytest.raises(ValueError, match="outside 1x1"):
        api.encode_array(np.zeros((0, 2, 3), np.uint8), "test-zlib", 1)
    with pytest.raises(ValueError, match="outside 1x1"):
        api.encode_array(np.broadcast_to(np.uint8(0), (9000, 9000, 3)), "test-zlib", 1)


# ----------------------------------------------------------------------------- demo report


def test_jpeg_bisection_finds_the_closest_size(smooth_image):
    big = np.tile(smooth_image, (4, 4, 1))
    target = len(jpeg_bytes(big, 40)) + 3
    q, data = jpeg_at_size(big, target)
    sizes = {k: len(jpeg_bytes(big, k)) for k in range(1, 101)}
    assert abs(len(data) - target) == min(abs(s - target) for s in sizes.values())
    assert sizes[q] == len(data)


def test_demo_report(capsys, png):
    rc, out, err = codec(capsys, "demo-report", png, "--codec", "test-zlib", "--json")
    r = json.loads(out)
    assert rc == 0, err
    assert r["bytes"] > 0 and r["psnr"] == float("inf") and 1 <= r["jpeg_quality"] <= 100
    assert r["bpp"] == pytest.approx(8 * r["bytes"] / (24 * 40))
    rc, out, _ = codec(capsys, "demo-report", png, "--codec", "test-zlib")
    assert rc == 0 and "JPEG 444" in out and "bpp" in out
    assert psnr(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8)) == 0.0


# ----------------------------------------------------------------------------- real codecs


def _real_image_codecs() -> list[str | None]:
    """Registered .ncf image codecs whose trained weights ship here."""
    names = [n for n in codec_names("image", ncf_only=True) if not n.startswith("test-")]
    shipped = [n for n in names if api.weights_available(n) and get_codec(n).weights_sha256()]
    return shipped or [None]


@pytest.mark.parametrize("name", _real_image_codecs())
def test_real_codec_round_trips_kodak(name, kodak_image_path, tmp_path):
    if name is None:
        pytest.skip("no registered .ncf image codec ships weights yet")
    crop = read_image(kodak_image_path)[200:264, 300:396]
    for arr in (crop, crop[:1, :1], crop[:3, :5], crop[..., :1]):
        data = api.encode_array(arr, name)
        out, info = api.decode_bytes(data)
        assert out.shape == arr.shape and out.dtype == arr.dtype
        assert info["weights_sha256"] and info["codec_name"] == name
        np.testing.assert_array_equal(api.decode_bytes(data)[0], out)  # decoding is deterministic
    assert psnr(crop, api.decode_bytes(api.encode_array(crop, name))[0]) > 22.0


@pytest.mark.parametrize("disable", [False, True])
def test_encode_bar_follows_the_reported_progress(disable):
    from tqdm import tqdm

    with open(os.devnull, "w") as sink, tqdm(total=1, disable=disable, file=sink) as bar:
        follow = cli._follow(bar)
        follow("fit", 1, 1)  # same total as the bar's own: a disabled bar has no description
        for done in (1, 2, 5):
            follow("fit", done, 5)
        assert bar.total == 5 and bar.n == (0 if disable else 5)  # a disabled bar counts nothing


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", codec_names())
def test_every_codec_answers_every_capability(name, smooth_image):
    cls, coder = codec_class(name), get_codec(name)
    lo, hi = cls.quality_range
    assert isinstance(cls.rank, int) and (cls.slow_reason is None or cls.slow_reason.strip())
    assert cls.qualities_to_bench() and all(lo <= q <= hi for q in cls.qualities_to_bench())
    reason = cls.unavailable_reason()
    assert reason is None or (isinstance(reason, str) and reason)
    assert isinstance(coder.weights_available(), bool)
    assert coder.settings_fingerprint() is None or len(coder.settings_fingerprint()) == 64
    if reason is not None or not coder.weights_available():
        return
    sha = coder.weights_sha256()
    assert sha is None or re.fullmatch("[0-9a-f]{64}", sha)
    q = cls.qualities_to_bench()[0]
    if cls.modality == "video":
        if coder.writes_ncf:  # a two-frame clip of the same image
            from neuralcodec.codecs.learned_video import rgb_to_yuv420
            from neuralcodec.datasets.video import VideoInfo, frames_source

            frame = rgb_to_yuv420(smooth_image)
            clip = frames_source(VideoInfo(40, 24, frames=2), iter([frame, frame]))
            encoded, reconstruction = coder.encode_with_reconstruction(clip, q)
            for a, b in zip(reconstruction, coder.decode(encoded), strict=True):
                for pa, pb in zip(a, b, strict=True):
                    np.testing.assert_array_equal(pa, pb)
        return
    sample = _sample(cls.modality, smooth_image)
    if sample is None:
        return
    bits = coder.estimated_bits(sample, q)
    assert bits is None or bits > 0
    if coder.writes_ncf and cls.slow_reason is None:
        encoded, reconstruction = coder.encode_with_reconstruction(sample, q)
        _assert_same(reconstruction, coder.decode(encoded))


def _sample(modality, image):
    """A small input of ``modality`` (None where this test has none)."""
    from neuralcodec.datasets.mesh import Mesh
    from neuralcodec.datasets.pointcloud import PointCloud

    if modality == "image":
        return image
    y, x = np.mgrid[0:5, 0:5]
    xyz = np.stack([x.ravel(), y.ravel(), (x * y).ravel() / 4.0], 1).astype(np.float32)
    if modality == "pointcloud":
        return PointCloud(xyz)
    if modality == "mesh":
        idx = np.arange(25).reshape(5, 5)
        a, b, c = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
        d = idx[1:, :-1].ravel()
        faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
        return Mesh(xyz, faces)
    return None


def _assert_same(a, b):
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        return
    for name in ("xyz", "vertices", "faces"):
        if hasattr(a, name):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


# ----------------------------------------------------------------------------- other modalities


class PointsCodec(Codec):
    """Test-only point cloud codec: float32 xyz, quantised to 1/quality units."""

    name = "test-points"
    codec_id = 252
    modality = "pointcloud"
    quality_range = (1, 100)
    rank = 0  # preferred over the shipped point cloud codecs while the fixture registers it

    def encode(self, data, quality):
        q = self.check_quality(quality)
        ints = np.round(np.asarray(data) * q).astype("<i4")
        return Encoded(self.name, {"shape": ints.shape, "quality": q}, {"xyz": ints.tobytes()})

    def decode(self, encoded):
        ints = np.frombuffer(encoded.streams["xyz"], "<i4").reshape(encoded.header["shape"])
        return ints.astype(np.float32) / encoded.header["quality"]


class PointsAdapter(ModalityAdapter):
    """Test-only: ``.xyz`` text files of N points; the point count travels in ``ncf.count``."""

    modality = "pointcloud"
    rate_unit = "bits/point"
    read_extensions = write_extensions = (".xyz",)

    def read(self, path, **options):
        return np.loadtxt(path, dtype=np.float32, ndmin=2)

    def write(self, path, data, header, force=False):
        text = "".join(" ".join(f"{v:g}" for v in row) + "\n" for row in data)
        write_bytes_atomic(path, text.encode(), force=force)

    def prepare(self, data):
        pts = np.asarray(data, np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise CodecError(f"points must be Nx3, got {pts.shape}")
        return Prepared(pts, {"shape": pts.shape}, {"ncf.count": b"%d" % len(pts)}, ["points"])

    def restore(self, decoded, header, streams):
        assert int(streams["ncf.count"]) == len(decoded) == header["shape"][0]
        return decoded

    def units(self, header):
        return header["shape"][0]


@pytest.fixture
def points_modality(monkeypatch):
    """``test-points`` and its adapter, registered for one test only."""
    monkeypatch.setitem(codecs_base._REGISTRY, PointsCodec.name, PointsCodec)
    monkeypatch.setitem(codecs_base._BY_ID, PointsCodec.codec_id, PointsCodec.name)
    monkeypatch.setitem(modalities_base._ADAPTERS, "pointcloud", PointsAdapter())
    return np.array([[0.5, -1.25, 3.0], [2.0, 0.0, -0.75]], np.float32)


def test_another_modality_goes_through_the_api_untouched(points_modality):
    data, report = api.encode_with_report(points_modality, "test-points", 4)
    assert (report.modality, report.rate_unit, report.bpp) == ("pointcloud", "bits/point", None)
    assert report.rate == pytest.approx(8 * len(data) / 2) and report.notes == ["points"]
    out, info = api.decode_bytes(data)
    np.testing.assert_array_equal(out, points_modality)
    assert info["modality"] == "pointcloud" and info["shape"] == [2, 3]
    assert [s["name"] for s in info["streams"]] == ["xyz", "ncf.count"]


def test_another_modality_round_trips_files_and_picks_its_own_codec(
    capsys, points_modality, tmp_path
):
    src = tmp_path / "in.xyz"
    PointsAdapter().write(src, points_modality, {})
    rc, out, err = codec(capsys, "encode", src, tmp_path / "p.ncf", "-q", "8")
    assert rc == 0 and "test-points q=8, pointcloud 2x3" in out and "bits/point" in out, err
    rc, out, _ = codec(capsys, "info", tmp_path / "p.ncf", "--json")
    assert json.loads(out)["rate_unit"] == "bits/point" and json.loads(out)["bpp"] is None
    rc, _, err = codec(capsys, "decode", tmp_path / "p.ncf", tmp_path / "p.png")
    assert_one_line_error(rc, err, "cannot write pointcloud data as .png")
    rc, out, err = codec(capsys, "decode", tmp_path / "p.ncf", tmp_path / "out.xyz", "--json")
    assert rc == 0 and json.loads(out)["modality"] == "pointcloud", err
    np.testing.assert_array_equal(PointsAdapter().read(tmp_path / "out.xyz"), points_modality)


def test_encode_layout_reads_raw_point_columns(capsys, png, tmp_path):
    """``--layout`` names a raw float32 ``.bin``'s columns; without it a .bin is KITTI xyzi."""
    rng = np.random.default_rng(3)
    cols = np.c_[rng.uniform(-5, 5, (300, 3)), rng.uniform(0, 1, (300, 3))].astype("<f4")
    src = tmp_path / "room.bin"
    src.write_bytes(cols.tobytes())
    dst = tmp_path / "room.ncf"
    rc, out, err = codec(capsys, "encode", src, dst, "--layout", "xyzrgb", "-q", "9")
    assert rc == 0 and "pointcloud 300x3" in out and "rgb" in out, err
    rc, out, err = codec(capsys, "decode", dst, tmp_path / "room.ply")
    assert rc == 0 and "300x3" in out, err
    rc, out, _ = codec(capsys, "encode", src, tmp_path / "k.ncf", "-q", "9")
    assert rc == 0 and "pointcloud 450x3" in out  # 1,800 floats read as 4 columns
    rc, _, err = codec(capsys, "encode", src, tmp_path / "bad.ncf", "--layout", "nonsense")
    assert_one_line_error(rc, err, "no x, y and z")
    rc, _, err = codec(capsys, "encode", png, tmp_path / "img.ncf", "--layout", "xyz")
    assert_one_line_error(rc, err, "take no read option layout")
    assert not (tmp_path / "bad.ncf").exists() and not (tmp_path / "img.ncf").exists()

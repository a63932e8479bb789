"""Image files <-> arrays: formats, layouts, bad inputs, size caps, atomic PNG writes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from neuralcodec.datasets.images import (
    ImageReadError,
    encode_png,
    list_images,
    read_image,
    write_png_atomic,
)
from neuralcodec.datasets.paths import OutputError, data_root


@pytest.fixture
def rgb(rng) -> np.ndarray:
    return rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", ["png", "bmp", "tiff", "ppm", "webp"])
def test_lossless_formats_read_back_exactly(tmp_path, rgb, ext):
    path = tmp_path / f"x.{ext}"
    Image.fromarray(rgb).save(path, **({"lossless": True} if ext == "webp" else {}))
    np.testing.assert_array_equal(read_image(path), rgb)


def test_jpeg_reads_as_rgb(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    out = read_image(tmp_path / "x.jpg")
    assert out.shape == (7, 9, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("mode,channels", [("L", 1), ("LA", 2), ("RGBA", 4), ("1", 1)])
def test_pillow_modes_map_to_channels(tmp_path, rgb, mode, channels):
    Image.fromarray(rgb).convert(mode).save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.shape == (7, 9, channels) and out.dtype == np.uint8


def test_palette_images_become_rgb_or_rgba(tmp_path, rgb):
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (7, 9, 3)
    pal.save(tmp_path / "pt.png", transparency=0)
    out = read_image(tmp_path / "pt.png")
    assert out.shape == (7, 9, 4) and set(np.unique(out[..., 3])) <= {0, 255}


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_round_trips_at_full_depth(tmp_path, rng, channels):
    arr = rng.integers(0, 65536, (5, 4, channels), dtype=np.uint16)
    write_png_atomic(tmp_path / "x.png", arr)
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, arr)


def test_16bit_rgb_tiff_keeps_depth(tmp_path, rng):
    import imagecodecs

    arr = rng.integers(0, 65536, (5, 4, 3), dtype=np.uint16)
    (tmp_path / "x.tif").write_bytes(imagecodecs.tiff_encode(arr))
    np.testing.assert_array_equal(read_image(tmp_path / "x.tif"), arr)


def test_exif_orientation_is_applied(tmp_path, rgb):
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "x.jpg", exif=exif, quality=95)
    assert read_image(tmp_path / "x.jpg").shape == (9, 7, 3)


def test_missing_path_directory_and_non_image_fail_clearly(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)
    (tmp_path / "notes.png").write_text("not an image at all")
    with pytest.raises(ImageReadError, match="not a supported image"):
        read_image(tmp_path / "notes.png")


def test_truncated_image_fails_clearly(tmp_path, rgb):
    data = encode_png(np.repeat(np.repeat(rgb, 20, 0), 20, 1))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "cut.png")


def test_animated_image_is_refused(tmp_path, rgb):
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], lossless=True)
    with pytest.raises(ImageReadError, match="2 frames"):
        read_image(tmp_path / "a.webp")


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = (
        struct.pack(">I", len(ihdr))
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


@pytest.mark.parametrize("side", [9000, 100_000])
def test_huge_image_is_refused_from_its_header(tmp_path, side):
    (tmp_path / "huge.png").write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageReadError, match="too large|more than the limit"):
        read_image(tmp_path / "huge.png")


def test_pixel_cap_is_configurable(tmp_path, rgb):
    write_png_atomic(tmp_path / "x.png", rgb)
    with pytest.raises(ImageReadError, match="63 pixels, more than the limit of 62"):
        read_image(tmp_path / "x.png", max_pixels=62)


def test_write_png_refuses_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="cannot write"):
        write_png_atomic(tmp_path / "x.png", np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError, match="cannot write"):
        write_png_atomic(tmp_path / "x.png", np.zeros((2, 2, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_write_png_without_overwrite_keeps_existing(tmp_path, rgb):
    dst = tmp_path / "x.png"
    dst.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists"):
        write_png_atomic(dst, rgb, overwrite=False)
    assert dst.read_bytes() == b"old"
    write_png_atomic(dst, rgb)
    np.testing.assert_array_equal(read_image(dst), rgb)


def test_write_png_into_missing_directory_fails_clearly(tmp_path, rgb):
    with pytest.raises(OutputError, match="does not exist"):
        write_png_atomic(tmp_path / "no" / "x.png", rgb)


def test_list_images_and_data_root(tmp_path, rgb, monkeypatch):
    for name in ("b.png", "a.JPG", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    monkeypatch.setenv("NEURALCODEC_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root("/elsewhere").as_posix() == "/elsewhere"

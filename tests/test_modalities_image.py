"""The image modality adapter: its policy through ``api`` (round trips of every layout), its
file formats, its header check and its rate unit."""

from __future__ import annotations

import numpy as np
import pytest

from neuralcodec import api
from neuralcodec.container import ContainerError, pack, unpack
from neuralcodec.datasets.images import MAX_IMAGE_PIXELS, read_image, write_png_atomic
from neuralcodec.datasets.paths import OutputError
from neuralcodec.modalities import adapter_for, adapter_for_path
from neuralcodec.modalities.image import ALPHA_STREAM, ImageAdapter

IMAGES = adapter_for("image")


def round_trip(array: np.ndarray) -> tuple[np.ndarray, dict]:
    out, info = api.decode_bytes(api.encode_array(array, "test-zlib", 6))
    return out, info


def test_the_image_adapter_is_registered_and_picked_by_extension():
    assert isinstance(IMAGES, ImageAdapter) and IMAGES.rate_unit == "bpp"
    assert adapter_for_path("photo.JPG") is IMAGES and adapter_for_path("x.tiff") is IMAGES
    assert adapter_for_path("out.png", writing=True) is IMAGES
    with pytest.raises(KeyError):
        adapter_for_path("out.jpg", writing=True)  # images are written as PNG only
    with pytest.raises(KeyError):
        adapter_for("hologram")  # not a modality


def test_rgb_round_trips_exactly_and_codes_no_extra_stream(smooth_image):
    prepared = IMAGES.prepare(smooth_image)
    assert prepared.fields == {"shape": (24, 40, 3), "colorspace": "rgb", "bit_depth": 8}
    assert prepared.streams == {} and prepared.notes == []
    out, info = round_trip(smooth_image)
    np.testing.assert_array_equal(out, smooth_image)
    assert [s["name"] for s in info["streams"]] == ["pixels"]


def test_gray_is_coded_as_rgb_and_comes_back_with_one_channel(smooth_image):
    gray = smooth_image[..., 1]  # HxW, no channel axis
    prepared = IMAGES.prepare(gray)
    assert prepared.coded.shape == (24, 40, 3) and prepared.fields["colorspace"] == "gray"
    out, info = round_trip(gray)
    assert info["shape"] == [24, 40, 1] and info["colorspace"] == "gray"
    np.testing.assert_array_equal(out[..., 0], gray)


@pytest.mark.parametrize("colour,space", [(1, "gray-alpha"), (3, "rgba")])
def test_alpha_travels_in_its_own_stream_and_comes_back_exactly(rng, colour, space):
    arr = rng.integers(0, 256, (9, 11, colour + 1), dtype=np.uint8)
    prepared = IMAGES.prepare(arr)
    assert set(prepared.streams) == {ALPHA_STREAM} and prepared.fields["colorspace"] == space
    assert prepared.coded.shape == (9, 11, 3) and "alpha channel coded losslessly (zlib)" in (
        prepared.notes
    )
    out, info = round_trip(arr)
    assert info["colorspace"] == space and ALPHA_STREAM in [s["name"] for s in info["streams"]]
    np.testing.assert_array_equal(out, arr)


def test_16bit_keeps_its_depth_with_8_significant_bits_and_an_exact_alpha(rng):
    arr = rng.integers(0, 65536, (5, 6, 4), dtype=np.uint16)
    out, info = round_trip(arr)
    assert info["bit_depth"] == 16 and out.dtype == np.uint16 and out.shape == arr.shape
    want = (np.round(arr[..., :3] / 257.0) * 257).astype(np.uint16)
    np.testing.assert_array_equal(out[..., :3], want)
    np.testing.assert_array_equal(out[..., 3], arr[..., 3])


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 1, 4)])
def test_one_pixel_images_round_trip(rng, shape):
    arr = rng.integers(0, 255, shape, dtype=np.uint8)  # alpha below 255: kept
    out, info = round_trip(arr)
    assert info["bpp"] == info["rate"] == pytest.approx(8.0 * info["file_bytes"])
    np.testing.assert_array_equal(out.reshape(arr.shape), arr)


def test_too_large_and_malformed_arrays_are_refused_before_coding():
    with pytest.raises(ValueError, match="outside 1x1"):
        api.encode_array(np.broadcast_to(np.uint8(0), (1, MAX_IMAGE_PIXELS + 1)), "test-zlib")
    with pytest.raises(ValueError, match="uint8 or uint16"):
        IMAGES.prepare(np.zeros((2, 2, 3), np.int32))
    with pytest.raises(ValueError, match="C in 1..4"):
        IMAGES.prepare(np.zeros((2, 2, 2, 2), np.uint8))


def test_a_header_claiming_a_huge_image_is_refused_before_decoding(smooth_image):
    ncf = unpack(api.encode_array(smooth_image, "test-zlib", 1))
    ncf.header["shape"] = (16384, 16384, 3)  # the container allows it, the image policy not
    with pytest.raises(ContainerError, match="pixel limit"):
        api.decode_bytes(pack(ncf))


def test_a_damaged_alpha_stream_is_a_container_error(rng):
    ncf = unpack(api.encode_array(rng.integers(0, 256, (4, 4, 4), dtype=np.uint8), "test-zlib"))
    ncf.streams[ALPHA_STREAM] = b"not zlib"
    with pytest.raises(ContainerError, match="alpha stream is not valid zlib"):
        api.decode_bytes(pack(ncf))
    del ncf.streams[ALPHA_STREAM]
    with pytest.raises(ContainerError, match="no ncf.alpha stream"):
        api.decode_bytes(pack(ncf))


def test_codecs_see_the_rgb_shape_not_the_files(rng):
    header = {"shape": (7, 5, 2), "colorspace": "gray-alpha", "bit_depth": 8}
    assert IMAGES.coded_view(header) == {"shape": (7, 5, 3)}
    assert IMAGES.units(header) == 35 and IMAGES.rate(35, header) == pytest.approx(8.0)


def test_write_is_png_and_refuses_to_overwrite_unless_forced(tmp_path, smooth_image):
    dst = tmp_path / "x.png"
    IMAGES.write(dst, smooth_image, {})
    np.testing.assert_array_equal(IMAGES.read(dst), smooth_image)
    with pytest.raises(OutputError, match="exists"):
        IMAGES.write(dst, smooth_image[::-1], {})
    IMAGES.write(dst, smooth_image[::-1], {}, force=True)
    np.testing.assert_array_equal(read_image(dst), smooth_image[::-1])


def test_read_honours_a_pixel_cap(tmp_path, smooth_image):
    write_png_atomic(tmp_path / "x.png", smooth_image)
    with pytest.raises(ValueError, match="more than the limit of 100"):
        IMAGES.read(tmp_path / "x.png", max_pixels=100)


def test_files_round_trip_through_the_adapter(tmp_path, rng):
    arr = rng.integers(0, 256, (6, 5, 2), dtype=np.uint8)
    write_png_atomic(tmp_path / "in.png", arr)
    report = api.encode_file(tmp_path / "in.png", tmp_path / "x.ncf", "test-raw", 2)
    assert (report.modality, report.rate_unit, report.colorspace) == ("image", "bpp", "gray-alpha")
    assert report.bpp == report.rate == pytest.approx(8 * report.bytes / 30)
    back = api.decode_file(tmp_path / "x.ncf", tmp_path / "out.png")
    assert back.shape == (6, 5, 2) and back.modality == "image"
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), arr)


@pytest.mark.parametrize("name", ["out.jpg", "out", "out.ncf"])
def test_decoding_to_an_unsupported_extension_is_refused(tmp_path, smooth_image, name):
    (tmp_path / "x.ncf").write_bytes(api.encode_array(smooth_image, "test-zlib"))
    with pytest.raises(ValueError, match=r"cannot write image data as .*end in \.png"):
        api.decode_file(tmp_path / "x.ncf", tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ncf"]

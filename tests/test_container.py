"""The .ncf container: field table, both layouts (v1 streams, v2 indexed segments), lazy reading,
every rejection, corruption fuzzing, golden files, atomic and streamed writes."""

from __future__ import annotations

import io
import os
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_RAW_SHA256

from neuralcodec import api
from neuralcodec.container import (
    MAGIC,
    ContainerError,
    NcfFile,
    NcfWriter,
    open_ncf,
    pack,
    read_ncf,
    unpack,
    validate_header,
    write_ncf,
)
from neuralcodec.container.bridge import split_header, to_encoded
from neuralcodec.container.fields import pack_fields
from neuralcodec.datasets.paths import OutputError, atomic_output

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("NEURALCODEC_UPDATE_GOLDEN") == "1"


def header(**over):
    base = {
        "codec_id": 250,
        "codec_name": "test-zlib",
        "modality": "image",
        "shape": (3, 5, 3),
        "colorspace": "rgb",
    }
    return {**base, **over}


def raw_file(head: dict, streams: dict[str, bytes], version: int = 1) -> bytes:
    """Bytes of a file built without validation, to feed the reader things the writer refuses."""
    full = {**validate_header(header()), **head}
    block = pack_fields(full)
    head_bytes = struct.pack("<8sHIH", MAGIC, version, len(block), len(streams)) + block
    out = [head_bytes, struct.pack("<I", zlib.crc32(head_bytes))]
    for name, data in streams.items():
        rec = bytes([len(name)]) + name.encode() + struct.pack("<I", len(data)) + data
        out += [rec, struct.pack("<I", zlib.crc32(rec))]
    return b"".join(out)


def as_version(data: bytes, version: int) -> bytes:
    return pack(unpack(data), version=version)


def unpack_index(data: bytes) -> dict[str, tuple[int, int, int]]:
    with open_ncf(io.BytesIO(data)) as reader:
        return reader.locations()


def v2_raw(data: bytes, entries=None, count=None, index_at=None, tail: bytes = b"") -> bytes:
    """``data`` (a v2 file) with its index entries / count / index offset replaced and every CRC
    recomputed, to feed the reader layouts the writer never makes."""
    locs = unpack_index(data)
    head_end = min((o for o, _, _ in locs.values()), default=None)
    at = struct.unpack_from("<Q", data, len(data) - 20)[0]
    head_end = at if head_end is None else head_end
    body = data[:at] + tail
    if entries is None:
        entries = [(n, o, ln, c) for n, (o, ln, c) in locs.items()]
    index = b"".join(
        bytes([len(n)]) + n.encode() + struct.pack("<QQI", o, ln, c) for n, o, ln, c in entries
    )
    at = len(body) if index_at is None else index_at
    n = len(entries) if count is None else count
    trailer = struct.pack("<QII", at, n, zlib.crc32(index))
    return body + index + trailer + struct.pack("<I", zlib.crc32(trailer))


@pytest.fixture(params=[1, 2])
def version(request) -> int:
    return request.param


@pytest.fixture
def small_ncf(version) -> bytes:
    rgb = (np.arange(45, dtype=np.uint8).reshape(3, 5, 3) * 5).astype(np.uint8)
    return as_version(api.encode_array(rgb, "test-zlib", 6), version)


@pytest.fixture
def small_v2() -> bytes:
    return as_version(api.encode_array(np.zeros((3, 5, 3), np.uint8), "test-zlib", 6), 2)


@pytest.fixture
def alpha_ncf(version) -> bytes:
    """A three-stream file: test-raw streams plus the lossless alpha stream."""
    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    return as_version(api.encode_array(rgba, "test-raw", 1), version)


# ----------------------------------------------------------------------------- round trips


def test_pack_unpack_round_trip_keeps_fields_and_stream_order(version):
    ncf = NcfFile(
        header(metadata={"b": [1, 2], "a": "x"}, quality=7), {"z": b"\x00" * 3, "a": b"xyz"}
    )
    data = pack(ncf, version=version)
    assert struct.unpack_from("<H", data, 8)[0] == version
    back = unpack(data)
    assert back.header == validate_header(ncf.header) and back.version == version
    assert list(back.streams) == ["z", "a"] and back.streams["a"] == b"xyz"


def test_new_files_are_version_2():
    data = pack(NcfFile(header(), {"gop0/f3/y": b"abc"}))
    assert struct.unpack_from("<H", data, 8)[0] == 2
    assert unpack(data).streams == {"gop0/f3/y": b"abc"}
    with pytest.raises(ContainerError, match="version 3"):
        pack(NcfFile(header(), {}), version=3)


def test_defaults_are_filled_by_validation():
    h = validate_header(header())
    assert (h["model_id"], h["weights_sha256"], h["bit_depth"], h["quality"], h["metadata"]) == (
        "",
        "",
        8,
        0,
        {},
    )


def test_file_round_trip_through_api(tmp_path, smooth_image, version):
    data = as_version(api.encode_array(smooth_image, "test-zlib", 9), version)
    path = tmp_path / "x.ncf"
    write_ncf(path, unpack(data), version=version)
    assert path.read_bytes() == data
    assert read_ncf(path).streams == unpack(data).streams
    decoded, info = api.decode_bytes(path.read_bytes())
    np.testing.assert_array_equal(decoded, smooth_image)
    assert info["codec_name"] == "test-zlib" and info["metadata"] == {"level": 9}
    assert info["file_bytes"] == len(data)


def test_codec_header_split_into_fields_and_metadata():
    fields, meta = split_header(
        {"shape": [2, 2, 3], "quality": 3, "lam": 0.01, "metadata": {"k": 1}}
    )
    assert fields == {"shape": [2, 2, 3], "quality": 3}
    assert meta == {"k": 1, "lam": 0.01}
    with pytest.raises(ContainerError, match="twice"):
        split_header({"lam": 1, "metadata": {"lam": 2}})


def test_codec_sees_flat_header_with_shape_tuple():
    ncf = unpack(pack(NcfFile(header(metadata={"lam": 0.5}, quality=2), {"s": b"1"})))
    enc = to_encoded(ncf)
    assert enc.header["lam"] == 0.5 and enc.header["quality"] == 2
    assert enc.header["shape"] == (3, 5, 3) and enc.header["metadata"] == {"lam": 0.5}


# ----------------------------------------------------------------------------- field table


@pytest.mark.parametrize(
    "over",
    [
        {"codec_id": 0},
        {"codec_id": 70000},
        {"codec_name": ""},
        {"codec_name": "Bad Name"},
        {"model_id": "m" * 65},
        {"weights_sha256": "xyz"},
        {"weights_sha256": "ab" * 31},
        {"modality": "audio"},
        {"shape": (3, 5)},
        {"shape": (0, 5, 3)},
        {"shape": (10**6, 10**6, 3)},
        {"shape": (65537, 2, 3)},
        {"shape": (3, 5, 1)},
        {"colorspace": "cmyk"},
        {"colorspace": "none"},
        {"bit_depth": 0},
        {"bit_depth": 17},
        {"quality": -1},
        {"quality": True},
        {"metadata": {"x": object()}},
        {"metadata": {"x": "y" * 20000}},
        {"metadata": [1, 2]},
        {"surprise": 1},
    ],
)
def test_writer_rejects_out_of_range_fields(over):
    with pytest.raises(ContainerError):
        pack(NcfFile(header(**over), {"s": b""}))


@pytest.mark.parametrize("name", ["", "Upper", "x" * 33, "sp ace", ".hidden", "a/b"])
def test_v1_writer_rejects_bad_stream_names(name):
    with pytest.raises(ContainerError, match="stream name"):
        pack(NcfFile(header(), {name: b"1"}), version=1)


@pytest.mark.parametrize(
    "name", ["", "Upper", "x" * 256, "sp ace", ".hidden", "a//b", "/a", "a/", "a/./b", "a/../b"]
)
def test_v2_writer_rejects_bad_segment_names(name):
    with pytest.raises(ContainerError, match="segment name"):
        pack(NcfFile(header(), {name: b"1"}))


def test_v2_accepts_long_hierarchical_names():
    name = "gop12/f3/y." + "a" * 244
    assert len(name) == 255
    assert unpack(pack(NcfFile(header(), {name: b"1", "ncf.alpha": b""}))).streams[name] == b"1"


def test_writer_rejects_too_many_streams():
    with pytest.raises(ContainerError, match="streams"):
        pack(NcfFile(header(), {f"s{i}": b"" for i in range(65)}), version=1)


def test_non_image_modalities_use_generic_limits():
    ok = header(modality="pointcloud", colorspace="none", shape=(1000, 6))
    assert unpack(pack(NcfFile(ok))).header["shape"] == (1000, 6)
    with pytest.raises(ContainerError, match="exceeds"):
        pack(NcfFile({**ok, "shape": (1 << 29, 3)}))


# ----------------------------------------------------------------------------- rejections


def test_rejects_wrong_magic(small_ncf):
    with pytest.raises(ContainerError, match="bad magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + small_ncf[8:])


def test_rejects_unknown_version(small_ncf):
    data = small_ncf[:8] + struct.pack("<H", 3) + small_ncf[10:]
    with pytest.raises(ContainerError, match="unsupported .ncf format version 3"):
        unpack(data)


def test_rejects_bad_header_crc(small_ncf):
    data = bytearray(small_ncf)
    data[20] ^= 0x01
    with pytest.raises(ContainerError, match="header CRC"):
        unpack(bytes(data))


def test_rejects_bad_stream_crc(small_ncf, version):
    data = bytearray(small_ncf)
    if version == 1:
        data[-6] ^= 0x40  # inside the last stream's data
    else:
        data[unpack_index(small_ncf)["pixels"][0] + 2] ^= 0x40
    with pytest.raises(ContainerError, match="stream 0 CRC|segment 'pixels' CRC"):
        unpack(bytes(data))


def test_rejects_trailing_garbage(small_ncf, version):
    match = "trailing garbage: 1 bytes" if version == 1 else "no valid trailer"
    with pytest.raises(ContainerError, match=match):
        unpack(small_ncf + b"\x00")


def test_rejects_every_truncation(small_ncf, alpha_ncf):
    for data in (small_ncf, alpha_ncf):
        with pytest.raises(ContainerError, match="empty"):
            unpack(data[:0])
        for n in range(1, len(data)):
            with pytest.raises(ContainerError, match="^truncated"):
                unpack(data[:n])


def test_rejects_unknown_codec_id():
    data = raw_file({"codec_id": 999, "codec_name": "nope"}, {"s": b"1"})
    assert unpack(data).header["codec_name"] == "nope"  # the layout is fine ...
    with pytest.raises(ContainerError, match="unknown codec id 999"):
        api.decode_bytes(data)  # ... but this build cannot decode it


def test_rejects_codec_name_that_disagrees_with_id():
    data = raw_file({"codec_id": 250, "codec_name": "test-raw"}, {"pixels": b""})
    with pytest.raises(ContainerError, match="is 'test-zlib' in this build"):
        api.decode_bytes(data)


def test_rejects_mismatched_and_missing_weights(alpha_ncf):
    ncf = unpack(alpha_ncf)
    assert ncf.header["weights_sha256"] == TEST_RAW_SHA256
    other = NcfFile({**ncf.header, "weights_sha256": "00" * 32}, ncf.streams)
    with pytest.raises(ContainerError, match="differ from the ones"):
        api.decode_bytes(pack(other))
    missing = NcfFile({**ncf.header, "model_id": "raw-v2"}, ncf.streams)
    with pytest.raises(ContainerError, match="not available"):
        api.decode_bytes(pack(missing))


@pytest.mark.parametrize("shape", [(10**6, 10**6, 3), (1 << 16, 1 << 16, 3), (5, 5, 9)])
def test_rejects_absurd_sizes_before_allocating(shape):
    data = raw_file({"shape": shape}, {"pixels": b""})
    tracemalloc.start()
    with pytest.raises(ContainerError, match="limits|out of range"):
        unpack(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


def test_rejects_stream_length_past_end_of_file(small_ncf):
    small_ncf = as_version(small_ncf, 1)
    ncf = unpack(small_ncf)
    head_len = len(small_ncf) - (1 + 6 + 4 + len(ncf.streams["pixels"]) + 4)
    rec = b"\x06pixels" + struct.pack("<I", 0xFFFFFFFF)
    data = small_ncf[:head_len] + rec + struct.pack("<I", zlib.crc32(rec))
    with pytest.raises(ContainerError, match="claims 4294967295 bytes"):
        unpack(data)


def test_rejects_huge_field_block_length(small_ncf, version):
    data = small_ncf[:10] + struct.pack("<I", 1 << 30) + small_ncf[14:]
    with pytest.raises(ContainerError, match="corrupt header"):
        unpack(data)


def test_rejects_duplicate_stream_names():
    one = raw_file({}, {"a": b"1"})
    rec = one[-(1 + 1 + 4 + 1 + 4) :]
    head = bytearray(one[: -len(rec)])
    head[14:16] = struct.pack("<H", 2)
    head[-4:] = struct.pack("<I", zlib.crc32(bytes(head[:-4])))
    with pytest.raises(ContainerError, match="twice"):
        unpack(bytes(head) + rec + rec)


# ----------------------------------------------------------------------------- version 2


class CountingFile(io.FileIO):
    """A file that counts the bytes read through it."""

    bytes_read = 0

    def read(self, n=-1):
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def _many(n: int) -> dict[str, bytes]:
    return {f"gop{i // 100}/f{i % 100}/y": i.to_bytes(4, "little") * (i % 7) for i in range(n)}


def test_ten_thousand_segments_round_trip(tmp_path):
    segs = _many(10_000)
    back = unpack(pack(NcfFile(header(), segs)))
    assert list(back.streams.items()) == list(segs.items())
    path = tmp_path / "many.ncf"
    with NcfWriter(path, header()) as writer:
        for name, data in segs.items():
            writer.add(name, data)
    with open_ncf(path) as reader:
        assert len(reader) == 10_000 and reader.sizes() == {k: len(v) for k, v in segs.items()}
        assert reader["gop99/f99/y"] == segs["gop99/f99/y"] and dict(reader) == segs


def test_one_segment_is_read_without_the_rest(tmp_path):
    segs = {f"s{i}": bytes([i]) * 50_000 for i in range(20)}
    path = tmp_path / "x.ncf"
    write_ncf(path, NcfFile(header(), segs))
    size = path.stat().st_size
    with CountingFile(path) as f, open_ncf(f) as reader:
        index_read = f.bytes_read
        assert index_read < 1000 and reader.header["codec_name"] == "test-zlib"
        assert reader.segment("s7") == segs["s7"]
        assert f.bytes_read == index_read + 50_000 < size // 10


def test_damaged_segments_fail_only_when_read(tmp_path):
    segs = {"a": b"A" * 100, "b": b"B" * 100, "c": b"C" * 100}
    path = tmp_path / "x.ncf"
    write_ncf(path, NcfFile(header(), segs))
    locs = unpack_index(path.read_bytes())
    raw = bytearray(path.read_bytes())
    for name in ("a", "c"):
        offset, length, _ = locs[name]
        raw[offset : offset + length] = os.urandom(length)
    path.write_bytes(bytes(raw))
    with open_ncf(path) as reader:
        assert reader["b"] == segs["b"] and "a" in reader and reader.sizes()["c"] == 100
        with pytest.raises(ContainerError, match="segment 'c' CRC mismatch"):
            reader["c"]
    with pytest.raises(ContainerError, match="segment 'a' CRC mismatch"):
        read_ncf(path)


def test_reader_closes_its_file_and_decodes_lazily(tmp_path, smooth_image):
    path = tmp_path / "x.ncf"
    path.write_bytes(api.encode_array(smooth_image, "test-zlib", 4))
    with open_ncf(path) as reader:
        enc = to_encoded(reader.ncf())
        assert enc.streams is reader
        decoded = api.get_codec("test-zlib").decode(enc)
    np.testing.assert_array_equal(decoded, smooth_image)
    assert reader.closed
    with pytest.raises(ContainerError, match="closed"):
        reader["pixels"]


def test_streamed_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "x.ncf"
    with pytest.raises(ContainerError, match="twice"), NcfWriter(path, header()) as writer:
        writer.add("a", b"1")
        writer.add("a", b"2")
    assert _leftovers(tmp_path) == []
    with pytest.raises(ContainerError, match="required"):
        NcfWriter(path, {"codec_id": 1})
    assert _leftovers(tmp_path) == []


def test_hundred_thousand_segments_take_reasonable_time(tmp_path):
    segs = _many(100_000)
    path = tmp_path / "big.ncf"
    start = time.perf_counter()
    write_ncf(path, NcfFile(header(), segs))
    with open_ncf(path) as reader:
        assert reader["gop999/f99/y"] == segs["gop999/f99/y"] and len(reader) == 100_000
    assert time.perf_counter() - start < 30


def test_rejects_absurd_segment_count_before_allocating(small_v2):
    small_ncf = small_v2
    for count in (1_000_000, 1 << 22, 0xFFFFFFFF):
        data = v2_raw(small_ncf, count=count)
        tracemalloc.start()
        with pytest.raises(ContainerError, match="cannot have a"):
            unpack(data)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1 << 20


def test_rejects_bad_index_layouts(small_v2):
    small_ncf = small_v2
    ((name, (off, ln, crc)),) = unpack_index(small_ncf).items()
    cases = {
        "and end by": [(name, off, 1 << 40, crc)],
        "expected to start": [(name, off + 1, ln - 1, crc)],
        "appears twice": [(name, off, ln, crc), (name, off + ln, 0, 0)],
        "bad name": [("Bad", off, ln, crc)],
        "between the last segment": [(name, off, ln - 1, crc)],
    }
    for match, entries in cases.items():
        with pytest.raises(ContainerError, match=match):
            unpack(v2_raw(small_ncf, entries=entries))
    with pytest.raises(ContainerError, match="index offset"):
        unpack(v2_raw(small_ncf, index_at=len(small_ncf) * 2))
    with pytest.raises(ContainerError, match="between the last segment"):
        unpack(v2_raw(small_ncf, tail=b"\x00"))


def test_rejects_index_and_trailer_crc_errors(small_v2):
    small_ncf = small_v2
    for pos, match in ((-21, "index CRC"), (-5, "no valid trailer"), (-1, "no valid trailer")):
        bad = bytearray(small_ncf)
        bad[pos] ^= 0x10
        with pytest.raises(ContainerError, match=match):
            unpack(bytes(bad))


# ----------------------------------------------------------------------------- fuzzing


def test_every_single_byte_corruption_is_detected(small_ncf, alpha_ncf):
    for data in (small_ncf, alpha_ncf):
        for i in range(len(data)):
            bad = bytearray(data)
            bad[i] ^= 0xFF
            with pytest.raises(ContainerError):
                api.decode_bytes(bytes(bad))


def test_random_corruptions_fail_cleanly(alpha_ncf, version):
    rng = np.random.default_rng(2024)
    for _ in range(300):
        bad = bytearray(alpha_ncf)
        pos = int(rng.integers(0, len(bad)))
        n = int(rng.integers(1, 9))
        bad[pos : pos + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        if bytes(bad) == alpha_ncf:
            continue
        cut = int(rng.integers(len(bad) // 2, len(bad) + 1))
        for candidate in (bytes(bad), bytes(bad[:cut]) if cut < len(bad) else bytes(bad)):
            with pytest.raises(ContainerError):
                api.decode_bytes(candidate)


# ----------------------------------------------------------------------------- golden files


# zlib.compress(b"\x01\x02", 0), spelt out so the golden file does not depend on the zlib build
STORED_ZLIB_1_2 = bytes.fromhex("78010102 00fdff0102 00060004".replace(" ", ""))


def _golden_cases() -> dict[str, bytes]:
    rgb = (np.arange(45, dtype=np.uint16).reshape(3, 5, 3) * 5).astype(np.uint8)
    gray16 = (np.arange(6, dtype=np.uint16).reshape(2, 3) * 12345).astype(np.uint16)
    meta = NcfFile(
        header(
            codec_id=251,
            codec_name="test-raw",
            model_id="raw-v1",
            weights_sha256=TEST_RAW_SHA256,
            shape=(1, 2, 4),
            colorspace="rgba",
            quality=3,
            metadata={"note": "golden", "levels": [1, 2, 3]},
        ),
        {"first-row": bytes(range(6)), "rest": b"", "ncf.alpha": STORED_ZLIB_1_2},
    )
    segmented = NcfFile(meta.header, {**meta.streams, "gop0/f3/y": b"\xff", "gop0/f3/uv": b""})
    return {
        "test-raw_rgb_3x5_q2.ncf": as_version(api.encode_array(rgb, "test-raw", 2), 1),
        "test-raw_gray16_2x3_q4.ncf": as_version(api.encode_array(gray16, "test-raw", 4), 1),
        "fields_rgba_1x2.ncf": pack(meta, version=1),
        "v2_test-raw_rgb_3x5_q2.ncf": api.encode_array(rgb, "test-raw", 2),
        "v2_test-raw_gray16_2x3_q4.ncf": api.encode_array(gray16, "test-raw", 4),
        "v2_segments_rgba_1x2.ncf": pack(segmented),
    }


@pytest.mark.parametrize("name", sorted(_golden_cases()))
def test_writer_reproduces_golden_file_byte_for_byte(name):
    data = _golden_cases()[name]
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_bytes(data)
    assert path.read_bytes() == data, f"{name}: the .ncf format changed; update docs/format.md"


@pytest.mark.parametrize("prefix", ["", "v2_"])
def test_reader_parses_golden_files(prefix):
    rgb, info = api.decode_bytes((GOLDEN / f"{prefix}test-raw_rgb_3x5_q2.ncf").read_bytes())
    np.testing.assert_array_equal(rgb, (np.arange(45).reshape(3, 5, 3) * 5).astype(np.uint8))
    assert (info["codec_id"], info["quality"], info["model_id"]) == (251, 2, "raw-v1")
    assert info["format_version"] == (2 if prefix else 1)
    gray, info = api.decode_bytes((GOLDEN / f"{prefix}test-raw_gray16_2x3_q4.ncf").read_bytes())
    assert gray.dtype == np.uint16 and gray.shape == (2, 3, 1)
    assert (info["colorspace"], info["bit_depth"]) == ("gray", 16)
    expected = np.round(np.arange(6).reshape(2, 3, 1) * 12345 / 257) * 257
    np.testing.assert_array_equal(gray, expected.astype(np.uint16))
    name = "v2_segments_rgba_1x2.ncf" if prefix else "fields_rgba_1x2.ncf"
    rgba, info = api.decode_bytes((GOLDEN / name).read_bytes())
    np.testing.assert_array_equal(rgba, [[[0, 1, 2, 1], [3, 4, 5, 2]]])
    assert info["metadata"] == {"levels": [1, 2, 3], "note": "golden"}


@pytest.mark.parametrize("name", ["fields_rgba_1x2.ncf", "v2_segments_rgba_1x2.ncf"])
def test_file_info_lists_streams_of_both_versions(name):
    info = api.file_info(GOLDEN / name)
    rows = {s["name"]: s["bytes"] for s in info["streams"]}
    assert rows["first-row"] == 6 and rows["ncf.alpha"] == len(STORED_ZLIB_1_2)
    assert ("gop0/f3/y" in rows) == name.startswith("v2") and info["weights"] == "ok"


# ----------------------------------------------------------------------------- atomic writes


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_failed_write_leaves_nothing(tmp_path, small_ncf, monkeypatch):
    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("neuralcodec.datasets.paths.os.fsync", boom)
    with pytest.raises(OSError, match="No space"):
        write_ncf(tmp_path / "x.ncf", unpack(small_ncf))
    assert _leftovers(tmp_path) == []


def test_failed_forced_write_keeps_existing_file(tmp_path, small_ncf, monkeypatch):
    dst = tmp_path / "x.ncf"
    dst.write_bytes(b"precious")
    monkeypatch.setattr("neuralcodec.datasets.paths.os.fsync", lambda fd: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_ncf(dst, unpack(small_ncf), force=True)
    assert dst.read_bytes() == b"precious" and _leftovers(tmp_path) == ["x.ncf"]


def test_interrupt_mid_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "x.bin") as f:
        f.write(b"half")
        raise KeyboardInterrupt
    assert _leftovers(tmp_path) == []


def test_existing_file_is_never_clobbered_without_force(tmp_path, small_ncf, version):
    dst = tmp_path / "x.ncf"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        write_ncf(dst, unpack(small_ncf))
    assert dst.read_bytes() == b"precious"
    write_ncf(dst, unpack(small_ncf), force=True, version=version)
    assert dst.read_bytes() == small_ncf and _leftovers(tmp_path) == ["x.ncf"]


def test_file_appearing_during_write_is_not_clobbered(tmp_path):
    dst = tmp_path / "x.bin"
    with pytest.raises(OutputError, match="exists"), atomic_output(dst) as f:
        f.write(b"new")
        dst.write_bytes(b"someone else")
    assert dst.read_bytes() == b"someone else" and _leftovers(tmp_path) == ["x.bin"]


def test_written_file_gets_normal_permissions(tmp_path, small_ncf):
    dst = tmp_path / "x.ncf"
    write_ncf(dst, unpack(small_ncf))
    assert dst.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


# ----------------------------------------------------------------------------- lazy use by api


def test_info_reads_the_index_only_and_decode_checks_what_it_reads(tmp_path, smooth_image):
    path = tmp_path / "x.ncf"
    path.write_bytes(api.encode_array(smooth_image, "test-raw", 2))
    with open_ncf(path) as reader:
        offset, length, _ = reader.locations()["rest"]
    raw = bytearray(path.read_bytes())
    raw[offset + length // 2] ^= 0xFF  # damage one segment's payload, not its CRC
    path.write_bytes(bytes(raw))
    info = api.file_info(path)  # header and index only: the damage goes unseen
    assert {s["name"]: s["bytes"] for s in info["streams"]}["rest"] == length
    with pytest.raises(ContainerError, match="'rest' CRC mismatch"):
        api.decode_file(path, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()

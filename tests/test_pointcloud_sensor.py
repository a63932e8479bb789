"""``octree`` format 3: the sensor-ordered predictive geometry (spinning LiDAR, depth camera).

Round trips exact at the quantisation per mode, the encoder's mode choice, the integer
arithmetic the decoder predicts with, format-2 files still decoding, damaged streams failing in
one line."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import REPO_DIR, one_line_error

from neuralcodec import api
from neuralcodec.codecs import geometry as g
from neuralcodec.codecs import pointcloud_sensor as sensor
from neuralcodec.codecs.base import CodecError, Encoded, get_codec
from neuralcodec.codecs.pointcloud_octree import quantised_points
from neuralcodec.datasets.pointcloud import PointCloud
from neuralcodec.fuzz import depth_view, lidar_sweep

GOLDEN_V2 = REPO_DIR / "tests" / "golden" / "octree_format2_q6.ncf"


def _sizes(cloud, quality, modes):
    codec = get_codec("octree")
    encs = {m: codec.encode(cloud, quality, (m,)) for m in modes}
    return {m: len(e.streams.get("tree", e.streams.get("sensor"))) for m, e in encs.items()}


def test_integer_cosine_table_is_exact_and_fixed():
    table = sensor.cos_table()
    assert len(table) == (1 << sensor.TRIG_BITS) + 1 and table.dtype == np.int64
    k = np.arange(len(table))
    ref = np.cos(2 * np.pi * k / (1 << sensor.TRIG_BITS)) * 2.0**sensor.TRIG_ONE
    assert np.abs(table - ref).max() <= 0.5 + 1e-6  # rounded to nearest
    assert table[0] == 1 << 30 and table[1 << 12] == 0 and table[1 << 13] == -(1 << 30)
    # interpolated cos / sin of 2 pi phi / 2^18 within a few units of 2^30
    phi = np.arange(0, 1 << 18, 97)
    c, s = sensor.cos_sin(phi, 18)
    a = 2 * np.pi * phi / (1 << 18)
    assert np.abs(c - np.cos(a) * 2.0**30).max() < 40
    assert np.abs(s - np.sin(a) * 2.0**30).max() < 40


def test_integer_cosine_table_golden_hash():
    # computed from Python integers only: any platform gives these bytes
    digest = hashlib.sha256(sensor.cos_table().astype("<i8").tobytes()).hexdigest()
    assert digest == COS_TABLE_SHA256


COS_TABLE_SHA256 = "f3678303e0b7f2a6534738745c3d10956e01c317ff2654347373f2d32cf45f5f"


@pytest.mark.parametrize("quality", [2, 6, 9])
def test_lidar_mode_round_trip_is_exact(quality):
    cloud = lidar_sweep(16, 360)
    cloud = PointCloud(np.concatenate([cloud.xyz, cloud.xyz[:40]]))  # duplicates
    codec = get_codec("octree")
    enc = codec.encode(cloud, quality, ("lidar",))
    assert enc.header["geometry"] == "lidar" and "tree" not in enc.streams
    out = codec.decode(enc)
    assert len(out) == len(cloud)
    assert np.array_equal(out.xyz, quantised_points(cloud, quality))


@pytest.mark.parametrize("quality", [3, 6, 9])
def test_camera_mode_round_trip_is_exact(quality):
    cloud = depth_view(64, 48)
    cloud = PointCloud(np.concatenate([cloud.xyz, cloud.xyz[:25]]))
    codec = get_codec("octree")
    enc = codec.encode(cloud, quality, ("camera",))
    assert enc.header["geometry"] == "camera"
    assert np.array_equal(codec.decode(enc).xyz, quantised_points(cloud, quality))


def test_camera_model_and_depth_lattice_are_found():
    cloud = depth_view(64, 48, tilt=12.0)
    xyz = np.asarray(cloud.xyz, np.float64)
    model = sensor.camera_model(xyz)
    assert model is not None
    x = xyz @ model.T
    uv = x[:, :2] / x[:, 2:3]
    assert np.abs(uv - np.rint(uv)).max() < 1e-3  # every point on a pixel's ray
    step, _ = sensor.depth_quantum(x[:, 2] / 1e-4)  # millimetres at a 0.1 mm grid
    assert step == pytest.approx(10.0, rel=1e-5)
    assert sensor.camera_model(np.asarray(lidar_sweep().xyz, np.float64)) is None


def test_the_encoder_keeps_the_shortest_geometry():
    codec = get_codec("octree")
    for cloud, sensor_mode in ((lidar_sweep(16, 360), "lidar"), (depth_view(64, 48), "camera")):
        for quality in (1, 9):
            size = _sizes(cloud, quality, ("octree", sensor_mode))
            enc = codec.encode(cloud, quality)
            mode = enc.header.get("geometry", "octree")
            assert mode in ("octree", sensor_mode)
            assert size[mode] == min(size["octree"], size[sensor_mode])
            assert codec.geometry_mode(cloud, quality) == mode
        assert codec.encode(cloud, 9).header["geometry"] == sensor_mode  # 16 bits: the sensor
    # a cloud no sensor saw: the octree
    rng = np.random.default_rng(4)
    blob = PointCloud(rng.normal(0, 1, (3000, 3)) + 5)
    assert "geometry" not in codec.encode(blob, 9).header  # the octree: no field


def test_sensor_estimate_matches_size():
    codec = get_codec("octree")
    for cloud in (lidar_sweep(16, 360), depth_view(64, 48)):
        enc = codec.encode(cloud, 8)
        est = codec.estimated_bits(cloud, 8) / 8
        assert abs(len(enc.streams["sensor"]) - est) <= 0.01 * est + 16


def test_attributes_follow_the_canonical_order_in_sensor_modes():
    cloud = lidar_sweep(16, 200)
    n = len(cloud)
    rng = np.random.default_rng(2)
    cloud = PointCloud(cloud.xyz, {"intensity": rng.integers(0, 255, n).astype(np.uint8)})
    codec = get_codec("octree")
    enc = codec.encode(cloud, 9)
    assert enc.header["geometry"] == "lidar"
    out = codec.decode(enc)
    q, _, _ = g.quantise(cloud.xyz, 16)
    order = np.lexsort([cloud.attributes["intensity"], g.morton(q)])
    assert np.array_equal(out.attributes["intensity"], cloud.attributes["intensity"][order])


def test_format_2_files_still_decode():
    out, info = api.decode_bytes(GOLDEN_V2.read_bytes())
    assert info["codec_name"] == "octree" and len(out) == 400
    blob = np.ascontiguousarray(out.xyz).tobytes() + out.attributes["rgb"].tobytes()
    assert hashlib.sha256(blob).hexdigest() == (
        "cc890a1cc60a41ffea21806bb8fdb700f00c507e923a278fb562c120be6b9d14"
    )


def test_damaged_sensor_streams_fail_in_one_line():
    codec = get_codec("octree")
    for cloud, quality in ((lidar_sweep(16, 360), 9), (depth_view(64, 48), 8)):
        enc = codec.encode(cloud, quality)
        n = len(cloud)
        data = enc.streams["sensor"]
        for cut in (3, len(data) // 2):
            bad = Encoded(enc.codec, enc.header, {**enc.streams, "sensor": data[:cut]})
            one_line_error(CodecError, codec.decode, bad, match="octree")
        rng = np.random.default_rng(0)
        for trial in range(40):
            b = bytearray(data)
            for pos in rng.integers(0, len(b), 1 + trial % 3):
                b[pos] ^= 1 << int(rng.integers(8))
            bad = Encoded(enc.codec, enc.header, {**enc.streams, "sensor": bytes(b)})
            try:
                out = codec.decode(bad)
            except CodecError as err:
                assert "\n" not in str(err) and str(err).startswith("octree:")
            else:
                assert len(out) == n
        for mode in ("camera", "lidar", "plane"):
            if mode == enc.header.get("geometry"):
                continue
            hdr = {**enc.header, "geometry": mode}
            bad = Encoded(enc.codec, hdr, {**enc.streams})
            with pytest.raises(CodecError) as err:
                codec.decode(bad)
            assert "\n" not in str(err.value)
        hdr = {k: v for k, v in enc.header.items() if k != "geometry"}  # read as an octree file
        one_line_error(CodecError, codec.decode, Encoded(enc.codec, hdr, enc.streams), match="tree")


def test_bench_merge_replaces_only_the_point_cloud_rows(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "mesh_bench_merge", REPO_DIR / "scripts" / "mesh_bench_merge.py"
    )
    merge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge)

    def entry(name, modality, rate):
        return {"file": name, "modality": modality, "rows": [{"codec": "x", "rate": rate}]}

    into, run = tmp_path / "into", tmp_path / "run"
    into.mkdir()
    run.mkdir()
    doc = {
        "summary": {"mesh:meshtrav": {"m": 1}, "pointcloud:octree": {"m": 2}},
        "files": [
            entry("meshes/a.obj", "mesh", 1.0),
            entry("pointclouds/b.bin", "pointcloud", 2.0),
        ],
    }
    (into / "results.json").write_text(json.dumps(doc, indent=1))
    (into / "bdrate.md").write_text(
        "| meshes/a.obj | mesh | meshtrav | -1.0 | 0.9 |\n"
        "| pointclouds/b.bin | pointcloud | octree | -2.0 | 0.8 |\n"
        "| mesh:meshtrav | -1.0 | 0.9 |\n| pointcloud:octree | -2.0 | 0.8 |\n"
    )
    new = {"summary": {"pointcloud:octree": {"m": 3}}, "files": [entry("b.bin", "pointcloud", 5.0)]}
    (run / "results.json").write_text(json.dumps(new))
    (run / "bdrate.md").write_text(
        "| b.bin | pointcloud | octree | -9.0 | 0.5 |\n| pointcloud:octree | -9.0 | 0.5 |\n"
    )
    merge.merge(run, into, "pointcloud", "pointclouds/")
    out = json.loads((into / "results.json").read_text())
    assert out["summary"] == {"mesh:meshtrav": {"m": 1}, "pointcloud:octree": {"m": 3}}
    assert [f["rows"][0]["rate"] for f in out["files"]] == [1.0, 5.0]
    md = (into / "bdrate.md").read_text()
    assert "| pointclouds/b.bin | pointcloud | octree | -9.0 | 0.5 |" in md
    assert "| meshes/a.obj | mesh | meshtrav | -1.0 | 0.9 |" in md and "-2.0" not in md


@pytest.mark.parametrize("quality", [4, 9])
def test_sensor_far_outside_the_cloud_still_round_trips(quality):
    # a stretch of wall seen from far away: the sensor model sits outside the bounding box
    full = lidar_sweep(32, 720)
    xyz = np.asarray(full.xyz)
    cloud = PointCloud(xyz[(xyz[:, 0] > 5.5) & (np.abs(xyz[:, 1]) < 1.0)])
    codec = get_codec("octree")
    enc = codec.encode(cloud, quality)
    assert np.array_equal(codec.decode(enc).xyz, quantised_points(cloud, quality))

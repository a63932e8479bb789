"""The ``octree`` point cloud codec: exact round trips at the quantisation, canonical order,
duplicates, attributes, bad input, damaged files, estimate vs size, a golden hash, and the
adaptive models underneath."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
from conftest import REPO_DIR, one_line_error, shared

from neuralcodec import api
from neuralcodec.app.cli import main as cli_main
from neuralcodec.codecs import geometry as g
from neuralcodec.codecs.base import CodecError, get_codec
from neuralcodec.codecs.pointcloud_octree import quantised_points
from neuralcodec.container.fields import ContainerError
from neuralcodec.datasets.pointcloud import PointCloud, read_pointcloud, write_pointcloud
from neuralcodec.entropy import adaptive

CLOUDS = REPO_DIR.parent / "shared" / "data" / "3d" / "pointclouds"
KITTI = CLOUDS / "lidar_rgbd" / "kitti_000008.bin"
NUSCENES = CLOUDS / "lidar_rgbd" / "nuscenes_LIDAR_TOP_1532402927647951.pcd.bin"
BUNNY = CLOUDS / "stanford_bunny_range_scans" / "bun045.ply"


def _cloud(rng, n=3000, attrs=True) -> PointCloud:
    t = rng.uniform(0, 2 * np.pi, n)
    xyz = np.stack([np.cos(t) * 5, np.sin(t) * 5, rng.normal(0, 0.3, n)], 1).astype(np.float32)
    a = {}
    if attrs:
        a["rgb"] = rng.integers(0, 256, (n, 3)).astype(np.uint8)
        a["intensity"] = rng.uniform(0, 1, n).astype(np.float32)
    return PointCloud(xyz, a)


def _geometry(enc) -> str:
    """The name of the geometry stream of an ``octree`` file (its header picks the coder)."""
    return "tree" if enc.header.get("geometry", "octree") == "octree" else "sensor"


def _sorted_rows(xyz, *cols):
    table = np.column_stack(
        [
            np.asarray(xyz, np.float64),
            *[np.asarray(c, np.float64).reshape(len(xyz), -1) for c in cols],
        ]
    )
    return table[np.lexsort(table.T[::-1])]


@pytest.mark.parametrize("quality", [1, 5, 9])
def test_round_trip_exact_at_quantisation(rng, quality):
    cloud = _cloud(rng)
    codec = get_codec("octree")
    dec = codec.decode(codec.encode(cloud, quality))
    want = quantised_points(cloud, quality)
    assert np.array_equal(dec.xyz, want)
    # the same multiset of (quantised point, attributes) as the input
    bits = g.quality_to_bits(quality)
    q, o, s = g.quantise(cloud.xyz, bits)
    ref = _sorted_rows(
        g.dequantise(q, o, s), cloud.attributes["rgb"], cloud.attributes["intensity"]
    )
    got = _sorted_rows(dec.xyz, dec.attributes["rgb"], dec.attributes["intensity"])
    assert np.array_equal(ref, got)
    assert dec.attributes["rgb"].dtype == np.uint8
    assert dec.attributes["intensity"].dtype == np.float32


def test_canonical_order_and_duplicates(rng):
    xyz = rng.uniform(-1, 1, (500, 3))
    xyz = np.concatenate([xyz, xyz[:50], xyz[:10]])  # duplicates kept, not merged
    cloud = PointCloud(xyz, {"i": np.arange(len(xyz), dtype=np.int32)})
    codec = get_codec("octree")
    dec = codec.decode(codec.encode(cloud, 4))
    assert len(dec) == len(xyz)
    q = np.rint((dec.xyz - xyz.min(0)) / ((xyz.max(0) - xyz.min(0)).max() / 2047)).astype(np.int64)
    codes = g.morton(q)
    assert np.all(np.diff(codes) >= 0)  # Morton order
    same = np.flatnonzero(np.diff(codes) == 0)
    assert len(same) >= 60
    assert np.all(dec.attributes["i"][same] <= dec.attributes["i"][same + 1])  # ties by attribute
    # a shuffled input decodes to the same output
    perm = rng.permutation(len(xyz))
    dec2 = codec.decode(codec.encode(PointCloud(xyz[perm], {"i": cloud.attributes["i"][perm]}), 4))
    assert np.array_equal(dec.xyz, dec2.xyz) and np.array_equal(
        dec.attributes["i"], dec2.attributes["i"]
    )


def test_single_point_and_flat_cloud():
    codec = get_codec("octree")
    one = PointCloud(np.array([[1.5, -2.0, 3.0]], np.float32))
    assert np.array_equal(codec.decode(codec.encode(one, 3)).xyz, [[1.5, -2.0, 3.0]])
    flat = PointCloud(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], np.float64))
    got = codec.decode(codec.encode(flat, 9)).xyz
    assert np.array_equal(got, quantised_points(flat, 9))
    assert np.abs(got - flat.xyz).max() <= 2 / 65535 / 2 + 1e-12  # half a step


def test_estimate_matches_size(rng):
    cloud = _cloud(rng, 5000, attrs=False)
    codec = get_codec("octree")
    est = codec.estimated_bits(cloud, 6) / 8
    enc = codec.encode(cloud, 6)
    real = len(enc.streams[_geometry(enc)])
    assert abs(real - est) <= 0.01 * est + 16


def test_golden_bitstream():
    # a fixed helix; any change in the format or the models changes this hash
    t = np.linspace(0, 6 * np.pi, 400)
    xyz = np.stack([np.cos(t), np.sin(t), t / 10], 1)
    cloud = PointCloud(xyz, {"intensity": (np.arange(400) % 17).astype(np.uint8)})
    codec = get_codec("octree")
    for modes, golden in ((("octree",), GOLDEN), (None, GOLDEN_CHOSEN)):
        enc = codec.encode(cloud, 5) if modes is None else codec.encode(cloud, 5, modes)
        blob = b"".join(k.encode() + v for k, v in enc.streams.items())
        assert (enc.header.get("geometry", "octree"), hashlib.sha256(blob).hexdigest()) == golden


# the octree coder's streams are those of format 2 (same hash as before format 3)
GOLDEN = ("octree", "2ea711cffe5fd03a81d5bb728fae5163731c8c8132002a6c6c33dfd3474e9d14")
GOLDEN_CHOSEN = ("lidar", "9186bd8c41b81385ae5868205eda99bf3e1133abbd48388420739b6567b073bb")


def test_api_round_trip_keeps_metadata(tmp_path, rng):
    cloud = _cloud(rng, 800)
    src = tmp_path / "in.ply"
    write_pointcloud(src, cloud)
    report = api.encode_file(src, tmp_path / "a.ncf", "octree", 7)
    assert report.rate_unit == "bits/point" and report.rate > 0
    api.decode_file(tmp_path / "a.ncf", tmp_path / "out.ply")
    back = read_pointcloud(tmp_path / "out.ply")
    assert back.xyz.dtype == np.float32 and set(back.attributes) == {"rgb", "intensity"}
    want = quantised_points(cloud, 7).astype(np.float32)
    assert np.array_equal(back.xyz, want)


def test_cli_round_trip_and_errors(tmp_path, run_cli, rng, capsys):
    cloud = _cloud(rng, 500)
    src = tmp_path / "in.ply"
    write_pointcloud(src, cloud)
    r = run_cli("encode", src, tmp_path / "a.ncf", "--codec", "octree", "-q", "3")
    assert r.returncode == 0, r.stderr
    r = run_cli("decode", tmp_path / "a.ncf", tmp_path / "out.ply")
    assert r.returncode == 0, r.stderr
    want = quantised_points(cloud, 3).astype(np.float32)
    assert np.array_equal(read_pointcloud(tmp_path / "out.ply").xyz, want)

    def fails(*args: object) -> str:  # the same entry point, in this process
        capsys.readouterr()
        assert cli_main([str(a) for a in args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1
        return err

    fails("decode", tmp_path / "a.ncf", tmp_path / "out.ply")  # no overwrite without --force
    data = (tmp_path / "a.ncf").read_bytes()
    (tmp_path / "cut.ncf").write_bytes(data[: len(data) // 2])
    fails("decode", tmp_path / "cut.ncf", tmp_path / "cut.ply")  # truncated
    assert not (tmp_path / "cut.ply").exists()
    bad = tmp_path / "nan.xyz"
    bad.write_text("0 0 0\nnan 1 2\n")
    assert "NaN" in fails("encode", bad, tmp_path / "nan.ncf", "--codec", "octree")
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    assert "empty" in fails("encode", empty, tmp_path / "e.ncf", "--codec", "octree")
    assert not (tmp_path / "nan.ncf").exists() and not (tmp_path / "e.ncf").exists()


def test_bad_inputs_one_line():
    codec = get_codec("octree")
    one_line_error(
        CodecError, codec.encode, PointCloud(np.zeros((0, 3), np.float32)), 5, match="empty"
    )
    nan = PointCloud(np.array([[0, 0, 0], [np.nan, 0, 0]], np.float32))
    one_line_error(CodecError, codec.encode, nan, 5, match="NaN")
    one_line_error(
        CodecError, codec.encode, PointCloud(np.zeros((2, 3), np.float32)), 10, match="quality"
    )
    one_line_error(CodecError, codec.encode, np.zeros((3, 3)), 5, match="PointCloud")


def test_damaged_streams_fail_cleanly(rng):
    codec = get_codec("octree")
    enc = codec.encode(_cloud(rng, 2000), 6)
    for name in (_geometry(enc), "a0", "geom"):
        data = enc.streams[name]
        for cut in (len(data) // 2, 3):
            streams = {**enc.streams, name: data[:cut]}
            bad = type(enc)(enc.codec, enc.header, streams)
            with pytest.raises(CodecError) as err:
                codec.decode(bad)
            assert "\n" not in str(err.value)
    one_line_error(CodecError, codec.decode, type(enc)(enc.codec, enc.header, {}), match="missing")
    old = {k: v for k, v in enc.header.items() if k != "format"}  # written by the first format
    one_line_error(CodecError, codec.decode, type(enc)(enc.codec, old, enc.streams), match="format")
    for seed in range(5):  # random bytes: a clean error, or a cloud of the right size
        name = _geometry(enc)
        junk = np.random.default_rng(seed).integers(0, 256, len(enc.streams[name]), np.uint8)
        bad = type(enc)(enc.codec, enc.header, {**enc.streams, name: junk.tobytes()})
        try:
            out = codec.decode(bad)
        except CodecError as err:
            assert "\n" not in str(err)
        else:
            assert len(out) == 2000


def test_header_claims_checked(tmp_path, rng):
    blob = bytearray(api.encode_array(_cloud(rng, 300), "octree", 4, modality="pointcloud"))
    with pytest.raises((CodecError, ContainerError)):
        api.decode_bytes(bytes(blob[:-5]))


def test_adaptive_models_round_trip(rng):
    v = (rng.geometric(0.2, 5000) * rng.choice([-1, 1], 5000)).astype(np.int64)
    v[:3] = [0, 2**31 - 1, -(2**31)]
    by = rng.integers(1, 256, 3000)
    enc = adaptive.AdaptiveEncoder()
    enc.code_ints(v, np.zeros(len(v)), adaptive.states(3 * adaptive.INT_CONTEXTS), 3)
    enc.code_bytes(by, by % 4, adaptive.states(4 * 255))
    enc.code_bits(by & 1, by % 2, adaptive.states(2))
    data = enc.finish()
    dec = adaptive.AdaptiveDecoder(data)
    assert np.array_equal(dec.code_ints(np.zeros(len(v)), adaptive.states(3 * 64), 3), v)
    assert np.array_equal(dec.code_bytes(by % 4, adaptive.states(4 * 255)), by)
    assert np.array_equal(dec.code_bits(by % 2, adaptive.states(2)), by & 1)
    with pytest.raises(ValueError):
        enc2 = adaptive.AdaptiveEncoder()
        enc2.code_bits([1], [5], adaptive.states(2))  # context outside the states


def test_kitti_round_trip_and_speed():
    cloud = read_pointcloud(shared(KITTI))
    codec = get_codec("octree")
    enc = codec.encode(cloud, 5)
    dec = codec.decode(enc)
    assert np.array_equal(dec.xyz, quantised_points(cloud, 5))
    ref = _sorted_rows(quantised_points(cloud, 5), np.sort(cloud.attributes["intensity"]))
    assert len(ref) == len(dec)
    assert np.array_equal(
        np.sort(dec.attributes["intensity"]), np.sort(cloud.attributes["intensity"])
    )


def test_d1_d2_psnr_known_offsets(rng):
    from neuralcodec.bench.geometry3d import d1_psnr, d2_psnr, peak_of

    xyz = rng.uniform(0, 1, (400, 3))
    xyz[:, 2] = 0.0  # a plane, normals +z
    normals = np.tile([0.0, 0.0, 1.0], (400, 1))
    moved = xyz + [0.0, 0.0, 0.01]  # every point 0.01 off the plane, along the normal
    peak = peak_of(xyz)
    want = 10 * np.log10(peak**2 / 1e-4)
    assert d1_psnr(xyz, moved) == pytest.approx(want, abs=1e-6)
    assert d2_psnr(xyz, normals, moved) == pytest.approx(want, abs=1e-6)
    sideways = xyz + [0.001, 0.0, 0.0]  # in the plane: D2 sees (almost) nothing
    assert d2_psnr(xyz, normals, sideways) is None or d2_psnr(xyz, normals, sideways) > want + 40
    assert d1_psnr(xyz, xyz) is None  # identical sets


def test_bench_3d_writes_results(tmp_path):
    from neuralcodec.bench.geometry3d import main as bench_main

    data = tmp_path / "data"
    data.mkdir()
    t = np.linspace(0, 4 * np.pi, 300)
    write_pointcloud(data / "helix.ply", PointCloud(np.stack([np.cos(t), np.sin(t), t], 1)))
    out = tmp_path / "out"
    codecs = "octree,draco" if get_codec("draco").unavailable_reason() is None else "octree"
    assert (
        bench_main(
            ["--dataset", str(data), "--codecs", codecs, "--qualities", "2,4", "--out", str(out)]
        )
        == 0
    )
    doc = json.loads((out / "results.json").read_text())
    rows = doc["files"][0]["rows"]
    assert {r["codec"] for r in rows} == set(codecs.split(","))
    assert all(r["rate"] > 0 and r["d1_psnr"] > 0 for r in rows)
    assert (out / "bdrate.md").is_file() and (out / "rd_helix.ply.png").is_file()


@pytest.mark.parametrize("path", [KITTI, NUSCENES, BUNNY], ids=["kitti", "nuscenes", "bunny"])
def test_real_clouds_round_trip_at_every_depth_class(path):
    # 8, 12 and 16 bits: dense low levels, the mixed contexts, and mostly direct-coded points
    cloud = read_pointcloud(shared(path))
    cloud = PointCloud(cloud.xyz[::2])  # half the points keeps the test fast
    codec = get_codec("octree")
    for quality in (1, 5, 9):
        enc = codec.encode(cloud, quality)
        assert np.array_equal(codec.decode(enc).xyz, quantised_points(cloud, quality))
        est = codec.estimated_bits(cloud, quality) / 8
        assert abs(len(enc.streams[_geometry(enc)]) - est) <= 0.01 * est + 16


def test_direct_mode_and_neighbour_contexts_are_used(rng, monkeypatch):
    # a patch (neighbour contexts) and scattered isolated points (direct mode), 16 bits
    from neuralcodec.entropy.adaptive import AdaptiveEncoder

    patch = rng.normal(0, 0.001, (2000, 3))
    far = rng.uniform(-1, 1, (300, 3))
    cloud = PointCloud(np.concatenate([patch, far, far[:20]]))  # with duplicates
    seen = []
    real = AdaptiveEncoder.code_octree_mix_level

    def spy(self, occ, *args):
        out = real(self, occ, *args)
        seen.append(out)
        return out

    monkeypatch.setattr(AdaptiveEncoder, "code_octree_mix_level", spy)
    codec = get_codec("octree")
    enc = codec.encode(cloud, 9)
    coded = np.concatenate(seen)
    assert (coded >= 0x100).sum() >= 250  # most scattered points leave the tree early
    assert ((coded & 0xFF) > 0).all()
    dec = codec.decode(enc)
    assert np.array_equal(dec.xyz, quantised_points(cloud, 9))
    est = codec.estimated_bits(cloud, 9) / 8
    assert abs(len(enc.streams[_geometry(enc)]) - est) <= 0.01 * est + 16


def test_flipped_bits_fail_cleanly_or_decode_the_right_count():
    cloud = PointCloud(_cloud(np.random.default_rng(7), 3000, attrs=False).xyz)
    codec = get_codec("octree")
    enc = codec.encode(cloud, 7)
    name = _geometry(enc)
    data = bytearray(enc.streams[name])
    for pos in (0, len(data) // 3, len(data) // 2, len(data) - 2):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        broken = type(enc)(enc.codec, enc.header, {**enc.streams, name: bytes(bad)})
        try:
            out = codec.decode(broken)
        except CodecError as err:
            assert "\n" not in str(err) and str(err).startswith("octree:")
        else:
            assert len(out) == 3000


def test_mix_kernel_rejects_bad_arguments():
    from neuralcodec.kernels import _adaptive

    model = adaptive.octree_mix_model()
    nb = np.full((2, 10), -1, np.int32)
    nb[0, 0] = 1  # a neighbour that comes later in Morton order
    args = (np.zeros(2, np.int32), np.zeros(2, np.int32), np.ones(2, np.int32))
    occ, single, offs = np.ones(2, np.int32), np.zeros(2, np.int32), np.zeros(6, np.int32)
    vals, idx = np.empty(100, np.int32), np.empty(100, np.int32)
    with pytest.raises(ValueError, match="neighbours"):
        _adaptive.octree_mix_encode(nb, *args[:2], occ, single, offs, 1, 3, *model, vals, idx)
    with pytest.raises(ValueError, match="sizes"):
        _adaptive.octree_mix_encode(nb[:1], *args[:2], occ, single, offs, 1, 3, *model, vals, idx)
    with pytest.raises(ValueError, match="negative"):
        _adaptive.octree_counts_encode(
            np.array([0, -1], np.int32),
            np.full(6, -1, np.int32),
            adaptive.states(adaptive.OCTREE_COUNT_SETS * adaptive.INT_CONTEXTS),
            np.empty(200, np.int32),
            np.empty(200, np.int32),
        )


def test_geometry_header_beyond_the_float_range_is_refused_without_warnings(rng):
    """Found by the fuzzer: a damaged origin / step whose grid overflows float64 (or, for a
    float32 cloud, float32) decoded with numpy overflow warnings before the finiteness check."""
    from neuralcodec.codecs.pointcloud_octree import MAGIC
    from neuralcodec.container import pack, unpack

    data = api.encode_array(_cloud(rng, 300), "octree", 4, modality="pointcloud")
    ncf = unpack(data)
    bits = g.unpack_geometry(MAGIC, ncf.streams["geom"], "octree")[0]
    cases = [
        ((1e308, 0.0, 0.0), 1e305, CodecError, "overflow the grid"),  # float64 overflow
        ((0.0, 0.0, 0.0), 1e307, CodecError, "overflow the grid"),
        ((3e38, 0.0, 0.0), 1e35, CodecError, "exceed the range of float32"),
    ]
    for origin, step, exc, match in cases:
        ncf.streams = {**ncf.streams, "geom": g.pack_geometry(MAGIC, bits, np.array(origin), step)}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            one_line_error(exc, api.decode_bytes, pack(ncf), match=match)
    ncf.streams = {**ncf.streams, "geom": g.pack_geometry(MAGIC, bits, np.zeros(3), 1e30)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(api.decode_bytes(pack(ncf))[0]) == 300  # large but representable: decodes

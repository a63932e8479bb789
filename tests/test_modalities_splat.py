"""Gaussian splat scenes: INRIA 3DGS .ply, PlayCanvas compressed.ply (bit packing, packed-integer
identity on re-encode, quantisation bounds) and antimatter15 .splat; the splat adapter."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import REPO_DIR, one_line_error, ply_text, shared

from neuralcodec.container.fields import ContainerError
from neuralcodec.datasets.paths import OutputError
from neuralcodec.datasets.ply import read_ply, read_ply_header, write_ply
from neuralcodec.datasets.splat import (
    SH_C0,
    GaussianScene,
    SplatError,
    read_splat,
    sigmoid,
    write_splat,
)
from neuralcodec.datasets.splat_packed import CHUNK, pack_rotation, unpack_rotation
from neuralcodec.modalities import adapter_for

DATA = REPO_DIR.parent / "shared" / "data" / "3d"
SPLATS = DATA / "gaussian_splats"
MESHES = DATA / "meshes"


# ----------------------------------------------------------------------------- splats


def random_scene(rng, n: int, degree: int) -> GaussianScene:
    k = (degree + 1) ** 2 - 1
    q = rng.normal(size=(n, 4))
    return GaussianScene(
        positions=rng.uniform(-3, 3, (n, 3)).astype(np.float32),
        scales_log=rng.uniform(-7, -1, (n, 3)).astype(np.float32),
        rotations=(q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
        opacities=rng.uniform(-5, 5, n).astype(np.float32),
        sh_dc=rng.uniform(-1.5, 1.5, (n, 3)).astype(np.float32),
        sh_rest=rng.uniform(-0.5, 0.5, (n, k, 3)).astype(np.float32),
        sh_degree=degree,
    )


def test_shared_splat_scenes():
    donut = read_splat(shared(SPLATS / "donut_mipsplatting_fused.ply"))
    assert len(donut) == 45624 and donut.sh_degree == 0 and donut.sh_rest.shape == (45624, 0, 3)
    assert np.allclose(np.linalg.norm(donut.rotations, axis=1), 1, atol=1e-6)
    guitar = read_splat(shared(SPLATS / "playcanvas_guitar.compressed.ply"))
    assert len(guitar) == 90854 and guitar.sh_degree == 0
    assert np.abs(guitar.positions).max() < 10  # metres, within the chunk bounds
    assert guitar.scales_log.min() > -20 and guitar.scales_log.max() < 1
    assert np.median(sigmoid(guitar.opacities)) > 0.1
    rgb = 0.5 + SH_C0 * guitar.sh_dc
    assert np.mean((rgb >= -0.05) & (rgb <= 1.05)) > 0.95


def test_compressed_ply_decode_encode_gives_the_same_packed_integers(tmp_path):
    src = shared(SPLATS / "playcanvas_guitar.compressed.ply")
    write_splat(tmp_path / "g.compressed.ply", read_splat(src))
    _, a = read_ply(src)
    _, b = read_ply(tmp_path / "g.compressed.ply")
    for element in ("chunk", "vertex"):
        assert set(a[element]) == set(b[element])
        for name, values in a[element].items():
            assert np.array_equal(values, b[element][name]), (element, name)


def test_rotation_packing_on_its_own(rng):
    q = rng.normal(size=(5000, 4))
    packed = pack_rotation(q)
    back = unpack_rotation(packed)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    assert np.abs(np.abs(np.sum(back * qn, axis=1)) - 1).max() < 2e-5
    assert np.array_equal(pack_rotation(back, packed >> 30), packed)


@pytest.mark.parametrize("source", ["random", "donut"])
def test_inria_to_compressed_to_inria_within_the_quantisation_step(tmp_path, rng, source):
    if source == "donut":
        scene = read_splat(shared(SPLATS / "donut_mipsplatting_fused.ply"))
    else:
        scene = random_scene(rng, 1000, 3)
    n = len(scene)
    write_splat(tmp_path / "s.compressed.ply", scene)
    back = read_splat(tmp_path / "s.compressed.ply")
    assert back.sh_degree == scene.sh_degree and len(back) == n
    _, raw = read_ply(tmp_path / "s.compressed.ply")
    chunk = raw["chunk"]
    assert len(chunk["min_x"]) == -(-n // CHUNK)
    per = np.arange(n) // CHUNK
    for i, axis in enumerate("xyz"):
        steps = 2047 if axis != "y" else 1023
        step = (chunk[f"max_{axis}"] - chunk[f"min_{axis}"])[per] / steps
        assert np.all(np.abs(back.positions[:, i] - scene.positions[:, i]) <= step / 2 + 1e-5)
        step = (chunk[f"max_scale_{axis}"] - chunk[f"min_scale_{axis}"])[per] / steps
        assert np.all(np.abs(back.scales_log[:, i] - scene.scales_log[:, i]) <= step / 2 + 1e-5)
    for i, c in enumerate("rgb"):
        step = (chunk[f"max_{c}"] - chunk[f"min_{c}"])[per] / 255 / SH_C0
        assert np.all(np.abs(back.sh_dc[:, i] - scene.sh_dc[:, i]) <= step / 2 + 1e-5)
    assert np.abs(sigmoid(back.opacities) - sigmoid(scene.opacities)).max() <= 0.5 / 255 + 1e-6
    if scene.sh_degree:
        assert np.abs(back.sh_rest - scene.sh_rest).max() <= 4 / 255 + 1e-6
    dots = np.abs(np.sum(back.rotations * scene.rotations, axis=1))
    assert dots.min() > 1 - 2e-5
    write_splat(tmp_path / "s2.compressed.ply", back)
    assert (tmp_path / "s2.compressed.ply").read_bytes() == (
        tmp_path / "s.compressed.ply"
    ).read_bytes()
    write_splat(tmp_path / "back.ply", back)
    again = read_splat(tmp_path / "back.ply")
    assert np.array_equal(again.sh_rest, back.sh_rest) and np.array_equal(
        again.positions, back.positions
    )


def test_inria_ply_round_trip_is_exact_with_sh_degree_3(tmp_path, rng):
    scene = random_scene(rng, 64, 3)
    write_splat(tmp_path / "s.ply", scene)
    header = read_ply_header(tmp_path / "s.ply")
    names = [p.name for p in header.element("vertex").properties]
    assert (
        names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        and "f_rest_44" in names
    )
    _, raw = read_ply(tmp_path / "s.ply")
    assert np.array_equal(raw["vertex"]["f_rest_1"], scene.sh_rest[:, 1, 0])  # channel-major
    assert np.array_equal(raw["vertex"]["f_rest_15"], scene.sh_rest[:, 0, 1])
    back = read_splat(tmp_path / "s.ply")
    for name in ("positions", "scales_log", "opacities", "sh_dc", "sh_rest"):
        assert np.array_equal(getattr(back, name), getattr(scene, name)), name
    assert np.allclose(back.rotations, scene.rotations, atol=1e-6)


def test_dotsplat_round_trip_within_uint8_steps(tmp_path):
    donut = read_splat(shared(SPLATS / "donut_mipsplatting_fused.ply"))
    write_splat(tmp_path / "d.splat", donut)
    assert (tmp_path / "d.splat").stat().st_size == 32 * 45624
    back = read_splat(tmp_path / "d.splat")
    assert np.array_equal(back.positions, donut.positions)
    assert np.allclose(back.scales_log, donut.scales_log, atol=1e-5)
    rgb, rgb_back = np.clip(0.5 + SH_C0 * donut.sh_dc, 0, 1), 0.5 + SH_C0 * back.sh_dc
    assert np.abs(rgb_back - rgb).max() <= 0.5 / 255 + 1e-6
    assert np.abs(sigmoid(back.opacities) - sigmoid(donut.opacities)).max() <= 0.5 / 255 + 1e-6
    assert np.abs(np.sum(back.rotations * donut.rotations, axis=1)).min() > 0.99


def test_splat_bad_inputs(tmp_path, rng):
    (tmp_path / "x.splat").write_bytes(bytes(33))
    one_line_error(SplatError, read_splat, tmp_path / "x.splat", match="32-byte")
    (tmp_path / "z.splat").write_bytes(
        struct.pack("<6f", 0, 0, 0, 1, 1, 1) + bytes([1, 2, 3, 4, 128, 128, 128, 128])
    )
    one_line_error(SplatError, read_splat, tmp_path / "z.splat", match="zero rotation")
    head = "element vertex 1\n" + "".join(
        f"property float {p}\n" for p in ("x", "y", "z", "f_dc_0", "scale_0")
    )
    (tmp_path / "m.ply").write_bytes(ply_text("binary_little_endian", bytes(20), head))
    one_line_error(SplatError, read_splat, tmp_path / "m.ply", match="missing")
    head = "element chunk 2\nproperty float min_x\nelement vertex 10\n" + "".join(
        f"property uint packed_{p}\n" for p in ("position", "rotation", "scale", "color")
    )
    (tmp_path / "c.ply").write_bytes(ply_text("binary_little_endian", bytes(8 + 160), head))
    one_line_error(
        SplatError, read_splat, tmp_path / "c.ply", match="position / scale bounds|chunks"
    )
    scene = random_scene(rng, 4, 0)
    scene.positions[1, 0] = np.nan
    one_line_error(SplatError, write_splat, tmp_path / "n.ply", scene, match="NaN")
    assert not (tmp_path / "n.ply").exists()


def test_splat_adapter(tmp_path, rng):
    ad = adapter_for("splat")
    scene = random_scene(rng, 20, 2)
    prep = ad.prepare(scene)
    assert prep.fields["shape"] == (20, 9) and prep.fields["metadata"] == {"sh_degree": 2}
    header = {"modality": "splat", **prep.fields}
    ad.check_header(header)
    assert ad.restore(scene, header, {}) is scene
    assert len(ad.restore(random_scene(rng, 19, 1), header, {})) == 19  # pruned, distilled
    for more in (random_scene(rng, 21, 2), random_scene(rng, 20, 3)):
        with pytest.raises(Exception, match="header says"):
            ad.restore(more, header, {})
    assert ad.units(header) == 20 and ad.rate(40, header) == 2.0 and ad.rate_unit == "bytes/splat"
    for bad in (
        {"shape": (0, 9)},
        {"shape": (20, 5)},
        {"shape": (1 << 27, 1)},
        {"metadata": {"sh_degree": 1}},
    ):
        with pytest.raises(ContainerError):
            ad.check_header({**header, **bad})
    assert ad.accepts(shared(SPLATS / "donut_mipsplatting_fused.ply"))
    assert ad.accepts(SPLATS / "playcanvas_guitar.compressed.ply") and ad.accepts("a.splat")
    assert not ad.accepts(MESHES / "stanford_bunny" / "bun_zipper_res4.ply")
    ad.write(tmp_path / "o.splat", scene, header)
    assert (tmp_path / "o.splat").stat().st_size == 640
    with pytest.raises(OutputError, match="exists"):
        ad.write(tmp_path / "o.splat", random_scene(rng, 3, 0), header)
    assert (tmp_path / "o.splat").stat().st_size == 640
    ad.write(tmp_path / "o.splat", random_scene(rng, 3, 0), header, force=True)
    assert (tmp_path / "o.splat").stat().st_size == 96


def test_compressed_ply_without_colour_bounds_repacks_identically(tmp_path, rng):
    write_splat(tmp_path / "new.compressed.ply", random_scene(rng, 600, 0))
    _, raw = read_ply(tmp_path / "new.compressed.ply")
    chunk = {k: v for k, v in raw["chunk"].items() if k[-1] not in "rgb" or "scale" in k}
    assert len(chunk) == 12  # the older layout: position and scale bounds only
    colour = raw["vertex"]["packed_color"]
    write_ply(tmp_path / "old.compressed.ply", {"chunk": chunk, "vertex": raw["vertex"]})
    scene = read_splat(tmp_path / "old.compressed.ply")
    rgb = 0.5 + SH_C0 * scene.sh_dc
    assert np.allclose(rgb[:, 0], (colour >> 24) / 255, atol=1e-6)  # unorm, no bounds
    write_splat(tmp_path / "again.compressed.ply", scene)
    _, again = read_ply(tmp_path / "again.compressed.ply")
    assert set(again["chunk"]) == set(chunk)
    for name, values in raw["vertex"].items():
        assert np.array_equal(again["vertex"][name], values), name

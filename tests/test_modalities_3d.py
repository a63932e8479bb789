"""Point cloud and mesh adapters and their readers / writers (PLY, PCD, XYZ, BIN, OBJ), on the
shared data and on synthetic files; which adapter gets which .ply (splats: test_modalities_splat)."""

from __future__ import annotations

import struct

import imagecodecs
import numpy as np
import pytest
from conftest import REPO_DIR, one_line_error, ply_text, shared

from neuralcodec.container.fields import ContainerError
from neuralcodec.datasets.mesh import Mesh, MeshError, read_mesh, write_mesh
from neuralcodec.datasets.paths import OutputError
from neuralcodec.datasets.ply import PlyError, Ragged, read_ply, write_ply
from neuralcodec.datasets.pointcloud import (
    PointCloud,
    PointCloudError,
    read_pointcloud,
    write_pointcloud,
)
from neuralcodec.modalities import adapter_for

DATA = REPO_DIR.parent / "shared" / "data" / "3d"
CLOUDS = DATA / "pointclouds"
MESHES = DATA / "meshes"
SPLATS = DATA / "gaussian_splats"


def ply_text_c(fmt: str, body: bytes, elements: str) -> bytes:
    return ply_text(fmt, body, elements, comment=True)


# ----------------------------------------------------------------------------- PLY core


TRI_ELEMENTS = "element vertex 4\nproperty float x\nproperty float y\nproperty double z\nproperty uchar red\n" \
    "element face 2\nproperty list uchar int vertex_indices\n"  # fmt: skip
VERTS = [(0, 0, 0.5, 10), (1, 0, 0.25, 20), (0, 1, 0.125, 30), (1, 1, 1e-9, 40)]


def tri_body(order: str) -> bytes:
    body = b"".join(struct.pack(order + "ffdB", *v) for v in VERTS)
    faces = [(0, 1, 2), (1, 3, 2)]
    return body + b"".join(struct.pack(order + "B3i", 3, *f) for f in faces)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_formats_read_the_same_values(tmp_path, fmt):
    if fmt == "ascii":
        body = (
            "".join(f"{x} {y} {z!r} {r}\n" for x, y, z, r in VERTS).encode() + b"3 0 1 2\n3 1 3 2\n"
        )
    else:
        body = tri_body("<" if "little" in fmt else ">")
    path = tmp_path / "t.ply"
    path.write_bytes(ply_text_c(fmt, body, TRI_ELEMENTS))
    header, data = read_ply(path)
    assert header.format == fmt and header.comments == ["comment test"]
    v = data["vertex"]
    assert v["z"].dtype == np.float64 and v["z"].tolist() == [0.5, 0.25, 0.125, 1e-9]
    assert v["red"].dtype == np.uint8 and v["red"].tolist() == [10, 20, 30, 40]
    assert data["face"]["vertex_indices"].rows().tolist() == [[0, 1, 2], [1, 3, 2]]


def test_ply_lists_of_different_lengths_binary_and_writer_round_trip(tmp_path):
    elements = "element face 3\nproperty uchar flag\nproperty list uchar int vertex_indices\n"
    lists = [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11]]
    body = b"".join(struct.pack(f"<BB{len(lst)}i", 7, len(lst), *lst) for lst in lists)
    path = tmp_path / "p.ply"
    path.write_bytes(ply_text_c("binary_little_endian", body, elements))
    face = read_ply(path)[1]["face"]
    assert face["flag"].tolist() == [7, 7, 7] and face["vertex_indices"].lengths.tolist() == [
        3,
        4,
        5,
    ]
    assert face["vertex_indices"].values.tolist() == list(range(12))
    out = tmp_path / "w.ply"
    props = {"x": np.arange(3, dtype=np.float32), "k": np.array([1, 2, 3], np.uint16)}
    tri = Ragged(np.full(2, 3), np.arange(6, dtype=np.int32))
    write_ply(out, {"vertex": props, "face": {"vertex_indices": tri}})
    _, back = read_ply(out)
    assert back["vertex"]["k"].dtype == np.uint16 and back["vertex"]["x"].tolist() == [0, 1, 2]
    assert back["face"]["vertex_indices"].rows().tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(OutputError, match="exists"):
        write_ply(out, {"vertex": props})


def test_ply_bad_files(tmp_path):
    cases = {
        "magic.ply": b"plx\nformat ascii 1.0\nend_header\n",
        "noend.ply": b"ply\nformat ascii 1.0\ncomment end_header\nelement vertex 1\n",
        "format.ply": b"ply\nformat binary_middle_endian 1.0\nend_header\n",
        "cut.ply": ply_text_c("binary_little_endian", tri_body("<")[:-7], TRI_ELEMENTS),
        "claims.ply": ply_text_c(
            "binary_little_endian", bytes(12), "element vertex 2000000000\nproperty float x\n"
        ),
        "word.ply": ply_text_c(
            "ascii",
            b"1 2 abc\n",
            "element vertex 1\nproperty float x\nproperty float y\nproperty float z\n",
        ),
        "range.ply": ply_text_c("ascii", b"300\n", "element vertex 1\nproperty uchar x\n"),
        "prop.ply": b"ply\nformat ascii 1.0\nproperty float x\nend_header\n",
    }
    words = ["not a PLY", "no end_header", "unsupported PLY format", "truncated", "truncated",
             "non-numeric", "out of range", "property before"]  # fmt: skip
    for (name, data), w in zip(cases.items(), words, strict=True):
        (tmp_path / name).write_bytes(data)
        one_line_error(PlyError, read_ply, tmp_path / name, match=w)


# ----------------------------------------------------------------------------- point clouds


def test_shared_point_clouds():
    scan = read_pointcloud(shared(CLOUDS / "stanford_bunny_range_scans" / "bun000.ply"))
    assert len(scan) == 40256 and scan.attributes == {}  # range_grid element dropped
    assert np.abs(scan.xyz).max() < 0.3  # metres
    kitti = read_pointcloud(shared(CLOUDS / "lidar_rgbd" / "kitti_000008.bin"))
    assert len(kitti) == 17238 and list(kitti.attributes) == ["intensity"]
    assert kitti.attributes["intensity"].min() >= 0 and kitti.attributes["intensity"].max() <= 1
    assert np.linalg.norm(kitti.xyz, axis=1).max() < 120
    nus = read_pointcloud(
        shared(CLOUDS / "lidar_rgbd" / "nuscenes_LIDAR_TOP_1532402927647951.pcd.bin")
    )
    assert len(nus) == 34688 and nus.attributes["ring"].max() == 31
    sun = read_pointcloud(shared(CLOUDS / "lidar_rgbd" / "sunrgbd_000017.bin"), layout="xyzrgb")
    assert len(sun) == 50000 and sun.attributes["rgb"].shape == (50000, 3)
    assert sun.attributes["rgb"].min() >= 0 and sun.attributes["rgb"].max() <= 1


def test_ply_cloud_write_read_round_trip_keeps_everything(tmp_path, rng):
    n = 500
    cloud = PointCloud(
        rng.normal(size=(n, 3)),
        {
            "rgb": rng.integers(0, 256, (n, 3)).astype(np.uint8),
            "normal": rng.normal(size=(n, 3)).astype(np.float32),
            "intensity": rng.random(n).astype(np.float32),
            "label": rng.integers(0, 9, n).astype(np.int32),
        },
    )
    write_pointcloud(tmp_path / "c.ply", cloud)
    back = read_pointcloud(tmp_path / "c.ply")
    assert back.xyz.dtype == np.float64 and np.array_equal(back.xyz, cloud.xyz)
    assert list(back.attributes) == list(cloud.attributes)
    for k, v in cloud.attributes.items():
        assert back.attributes[k].dtype == v.dtype and np.array_equal(back.attributes[k], v)
    with pytest.raises(OutputError):
        write_pointcloud(tmp_path / "c.ply", cloud)
    wide = PointCloud(
        cloud.xyz, {"id": np.arange(n, dtype=np.int64) * 7, "h": np.ones(n, np.float16)}
    )
    write_pointcloud(tmp_path / "w.ply", wide)
    back = read_pointcloud(tmp_path / "w.ply")
    assert (
        back.attributes["id"].dtype == np.int32
        and back.attributes["id"].tolist() == wide.attributes["id"].tolist()
    )
    assert back.attributes["h"].dtype == np.float32 and np.all(back.attributes["h"] == 1)
    with pytest.raises(PointCloudError, match=".ply"):
        write_pointcloud(tmp_path / "c.pcd", cloud)


def pcd_bytes(mode: str, xyz: np.ndarray, rgb: np.ndarray, label: np.ndarray) -> bytes:
    n = len(xyz)
    packed = (
        rgb[:, 0].astype(np.uint32) << 16 | rgb[:, 1].astype(np.uint32) << 8 | rgb[:, 2]
    ).view(np.float32)
    head = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgb label _\nSIZE 4 4 4 4 2 1\nTYPE F F F F U U\n"
            f"COUNT 1 1 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {mode}\n")  # fmt: skip
    cols = [xyz[:, 0].astype("<f4"), xyz[:, 1].astype("<f4"), xyz[:, 2].astype("<f4"), packed.astype("<f4"),
            label.astype("<u2"), np.zeros(n, "u1")]  # fmt: skip
    if mode == "ascii":
        rows = zip(*[c.tolist() for c in cols], strict=True)
        body = "".join(
            " ".join(repr(float(v)) if i < 4 else str(v) for i, v in enumerate(r)) + "\n"
            for r in rows
        )
        return head.encode() + body.encode()
    if mode == "binary":
        rec = np.empty(
            n,
            dtype=[
                ("x", "<f4"),
                ("y", "<f4"),
                ("z", "<f4"),
                ("c", "<f4"),
                ("l", "<u2"),
                ("p", "u1"),
            ],
        )
        for name, col in zip(rec.dtype.names, cols, strict=True):
            rec[name] = col
        return head.encode() + rec.tobytes()
    raw = b"".join(c.tobytes() for c in cols)
    comp = imagecodecs.lzf_encode(raw)
    return head.encode() + struct.pack("<II", len(comp), len(raw)) + comp


@pytest.mark.parametrize("mode", ["ascii", "binary", "binary_compressed"])
def test_pcd_modes(tmp_path, rng, mode):
    n = 300
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    label = rng.integers(0, 1000, n)
    path = tmp_path / "c.pcd"
    path.write_bytes(pcd_bytes(mode, xyz, rgb, label))
    cloud = read_pointcloud(path)
    assert cloud.xyz.dtype == np.float32 and np.array_equal(cloud.xyz, xyz)
    assert np.array_equal(cloud.attributes["rgb"], rgb)
    assert cloud.attributes["label"].tolist() == label.tolist() and "_" not in cloud.attributes


def test_xyz_text_and_layouts(tmp_path):
    (tmp_path / "a.xyz").write_text("# comment\n0 0 0 255 0 10\n1 2 3 0 128 255\n")
    cloud = read_pointcloud(tmp_path / "a.xyz")
    assert cloud.attributes["rgb"].dtype == np.uint8 and cloud.attributes["rgb"][1].tolist() == [
        0,
        128,
        255,
    ]
    cloud = read_pointcloud(tmp_path / "a.xyz", layout="x,y,z,nx,ny,nz")
    assert cloud.attributes["normal"].tolist()[0] == [255, 0, 10]
    np.arange(20, dtype="<f4").tofile(tmp_path / "p.bin")
    cloud = read_pointcloud(tmp_path / "p.bin", layout="x,y,z,t,intensity")
    assert len(cloud) == 4 and cloud.attributes["t"].tolist() == [3, 8, 13, 18]


def test_point_cloud_bad_inputs(tmp_path):
    np.arange(10, dtype="<f4").tofile(tmp_path / "odd.bin")
    one_line_error(PointCloudError, read_pointcloud, tmp_path / "odd.bin", match="whole number")
    (tmp_path / "empty.bin").write_bytes(b"")
    one_line_error(PointCloudError, read_pointcloud, tmp_path / "empty.bin", match="whole number")
    np.array([0, 0, np.nan, 1, 1, 1, 1, 1], "<f4").tofile(tmp_path / "nan.bin")
    one_line_error(PointCloudError, read_pointcloud, tmp_path / "nan.bin", match="NaN")
    assert len(read_pointcloud(tmp_path / "nan.bin", drop_nonfinite=True)) == 1
    one_line_error(
        PointCloudError, read_pointcloud, tmp_path / "nan.bin", layout="a,b,c", match="no x, y"
    )
    (tmp_path / "e.xyz").write_text("# nothing\n")
    one_line_error(PointCloudError, read_pointcloud, tmp_path / "e.xyz", match="empty")
    (tmp_path / "r.xyz").write_text("1 2 3\n4 5\n")
    one_line_error(PointCloudError, read_pointcloud, tmp_path / "r.xyz", match="different numbers")
    good = pcd_bytes("binary", np.zeros((5, 3)), np.zeros((5, 3), np.uint8), np.zeros(5))
    (tmp_path / "t.pcd").write_bytes(good[:-20])
    one_line_error(PointCloudError, read_pointcloud, tmp_path / "t.pcd", match="truncated")
    (tmp_path / "v.ply").write_bytes(
        ply_text_c(
            "ascii", b"", "element vertex 0\nproperty float x\nproperty float y\nproperty float z\n"
        )
    )
    one_line_error(PointCloudError, read_pointcloud, tmp_path / "v.ply", match="empty")
    one_line_error(PointCloudError, read_pointcloud, tmp_path / "missing.ply", match="no such file")


def test_point_cloud_adapter(tmp_path, rng):
    ad = adapter_for("pointcloud")
    cloud = PointCloud(rng.normal(size=(100, 3)).astype(np.float32),
                       {"rgb": rng.integers(0, 256, (100, 3)).astype(np.uint8), "intensity": rng.random(100)})  # fmt: skip
    prep = ad.prepare(cloud)
    assert prep.fields["shape"] == (100, 3) and prep.fields["colorspace"] == "rgb"
    meta = prep.fields["metadata"]
    assert meta == {
        "xyz_dtype": "float32",
        "attributes": [["rgb", "uint8", 3], ["intensity", "float64", 0]],
    }
    header = {"modality": "pointcloud", **prep.fields}
    ad.check_header(header)
    decoded = PointCloud(
        cloud.xyz.astype(np.float64),
        {"rgb": cloud.attributes["rgb"] + 0.2, "intensity": cloud.attributes["intensity"]},
    )
    back = ad.restore(decoded, header, {})
    assert back.xyz.dtype == np.float32 and np.array_equal(
        back.attributes["rgb"], cloud.attributes["rgb"]
    )
    assert ad.units(header) == 100 and ad.rate(100, header) == 8.0 and ad.rate_unit == "bits/point"
    for bad in ({"shape": (0, 3)}, {"shape": (1 << 29, 3)}, {"shape": (10, 4)},
                {"metadata": {"attributes": [["rgb", "complex", 3]]}}, {"metadata": {"xyz_dtype": "int8"}}):  # fmt: skip
        with pytest.raises(ContainerError):
            ad.check_header({**header, **bad})
    with pytest.raises(PointCloudError, match="NaN"):
        ad.prepare(PointCloud(np.array([[0, 0, np.inf]])))
    odd = PointCloud(
        cloud.xyz, {"scalar-Intensity": np.arange(100), "t": np.zeros(100, np.float16)}
    )
    ad.check_header({"modality": "pointcloud", **ad.prepare(odd).fields})
    many = PointCloud(cloud.xyz, {f"a{i}": np.zeros(100) for i in range(65)})
    with pytest.raises(ContainerError, match="at most 64"):
        ad.prepare(many)
    ad.write(tmp_path / "o.ply", back, header)
    assert ad.accepts(tmp_path / "o.ply") and ad.accepts("x.pcd") and ad.accepts("x.bin")
    assert not ad.accepts("x.pcd", writing=True) and ad.accepts("x.ply", writing=True)


# ----------------------------------------------------------------------------- meshes


def test_shared_meshes():
    bunny = read_mesh(shared(MESHES / "stanford_bunny" / "bun_zipper.ply"))
    assert (len(bunny.vertices), len(bunny.faces)) == (35947, 69451)
    assert set(bunny.attributes) == {"confidence", "intensity"}
    suzanne = read_mesh(shared(MESHES / "common_3d_test_models" / "suzanne.obj"))
    assert (len(suzanne.vertices), len(suzanne.faces)) == (507, 968)
    assert suzanne.normals is not None and suzanne.normal_faces.shape == (968, 3)
    assert any("triangle fans" in n for n in suzanne.notes)
    spot = read_mesh(shared(MESHES / "common_3d_test_models" / "spot.obj"))
    assert spot.uvs.shape == (3225, 2) and spot.uv_faces.shape == spot.faces.shape
    beetle = read_mesh(shared(MESHES / "common_3d_test_models" / "beetle.obj"))
    assert any("usemtl" in n for n in beetle.notes)


OBJ = """# test
mtllib x.mtl
o thing
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0.5
vt 0 0
vt 1 0
vt 1 1
vn 0 0 1
g side
usemtl red
f 1/1/1 2/2/1 3/3/1 4/3/1
f -4/-3/-1 -2/-1/-1 -1/-2/-1
"""


def test_obj_forms_negative_indices_fans_and_notes(tmp_path):
    (tmp_path / "m.obj").write_text(OBJ)
    mesh = read_mesh(tmp_path / "m.obj")
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]
    assert mesh.uv_faces.tolist() == [[0, 1, 2], [0, 2, 2], [0, 2, 1]]
    assert mesh.normal_faces.tolist() == [[0, 0, 0]] * 3
    assert "1 polygons split into triangle fans" in mesh.notes
    assert any("g, mtllib, o, usemtl" in n for n in mesh.notes)
    for ext in (".obj", ".ply"):
        write_mesh(tmp_path / f"o{ext}", mesh)
        back = read_mesh(tmp_path / f"o{ext}")
        assert len(back.faces) == 3
        corners = back.vertices[back.faces]
        assert np.allclose(corners, mesh.vertices[mesh.faces])
        assert np.allclose(
            back.uvs[back.uv_faces if back.uv_faces is not None else back.faces],
            mesh.uvs[mesh.uv_faces],
        )
    assert len(read_mesh(tmp_path / "o.ply").vertices) == 5  # vertex 3 split: two uvs


def test_obj_writer_is_exact_for_doubles(tmp_path, rng):
    mesh = Mesh(rng.normal(size=(30, 3)), rng.integers(0, 30, (40, 3)))
    write_mesh(tmp_path / "m.obj", mesh)
    back = read_mesh(tmp_path / "m.obj")
    assert np.array_equal(back.vertices, mesh.vertices) and np.array_equal(back.faces, mesh.faces)
    write_mesh(tmp_path / "m.ply", mesh)
    back = read_mesh(tmp_path / "m.ply")
    assert back.vertices.dtype == np.float64 and np.array_equal(back.vertices, mesh.vertices)


def test_ply_polygons_and_tristrips(tmp_path):
    verts = "".join(f"{x} {y} 0\n" for x, y in [(0, 0), (1, 0), (1, 1), (0, 1), (2, 0)])
    head = "element vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
    (tmp_path / "q.ply").write_bytes(ply_text_c("ascii", (verts + "4 0 1 2 3\n3 1 4 2\n").encode(),
                                              head + "element face 2\nproperty list uchar int vertex_indices\n"))  # fmt: skip
    mesh = read_mesh(tmp_path / "q.ply")
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
    (tmp_path / "s.ply").write_bytes(ply_text_c("ascii", (verts + "7 0 1 3 2 -1 1 4 2\n").encode(),
                                              head + "element tristrips 1\nproperty list int int vertex_indices\n"))  # fmt: skip
    mesh = read_mesh(tmp_path / "s.ply")
    assert mesh.faces.tolist() == [[0, 1, 3], [3, 1, 2]]


def test_mesh_bad_inputs(tmp_path):
    cases = {
        "past.obj": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n",
        "zero.obj": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n",
        "empty.obj": "# nothing\nv 0 0 0\n",
        "nan.obj": "v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
        "two.obj": "v 0 0 0\nv 1 0 0\nf 1 2\n",
        "junk.obj": "hello world\n",
    }
    words = ["outside", "outside", "empty mesh", "NaN", "at least 3", "not an OBJ line"]
    for (name, text), w in zip(cases.items(), words, strict=True):
        (tmp_path / name).write_text(text)
        one_line_error(MeshError, read_mesh, tmp_path / name, match=w)
    body = b"0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n"
    head = "element vertex 3\nproperty float x\nproperty float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\n"
    (tmp_path / "past.ply").write_bytes(ply_text_c("ascii", body, head))
    one_line_error(MeshError, read_mesh, tmp_path / "past.ply", match="index 7 outside")


def test_mesh_adapter_and_ply_dispatch(tmp_path, rng):
    ad = adapter_for("mesh")
    mesh = Mesh(rng.normal(size=(10, 3)).astype(np.float32), rng.integers(0, 10, (12, 3)),
                normals=rng.normal(size=(10, 3)))  # fmt: skip
    prep = ad.prepare(mesh)
    assert prep.fields["shape"] == (10, 12)
    # entries at their default are left out of the header
    assert prep.fields["metadata"] == {"normals": "vertex"}
    assert ad.prepare(Mesh(mesh.vertices.astype(np.float64), mesh.faces)).fields["metadata"] == {
        "vertex_dtype": "float64"
    }
    header = {"modality": "mesh", **prep.fields}
    back = ad.restore(
        Mesh(mesh.vertices.astype(np.float64), mesh.faces, normals=mesh.normals), header, {}
    )
    assert back.vertices.dtype == np.float32
    with pytest.raises(Exception, match="normals"):
        ad.restore(Mesh(mesh.vertices, mesh.faces), header, {})
    assert ad.units(header) == 10 and ad.rate_unit == "bits/vertex"
    for bad in (
        {"shape": (0, 12)},
        {"shape": (10, 0)},
        {"shape": (10, 1 << 29)},
        {"metadata": {"uvs": "face"}},
    ):
        with pytest.raises(ContainerError):
            ad.check_header({**header, **bad})
    assert ad.accepts(shared(MESHES / "stanford_bunny" / "bun_zipper_res4.ply"))
    assert not ad.accepts(shared(CLOUDS / "stanford_bunny_range_scans" / "bun000.ply"))
    assert not ad.accepts(shared(SPLATS / "donut_mipsplatting_fused.ply"))
    assert ad.accepts("any.obj") and ad.accepts("new.ply", writing=True)
    ad.write(tmp_path / "m.obj", back, header)
    with pytest.raises(OutputError, match="exists"):
        ad.write(tmp_path / "m.obj", back, header)
    assert np.allclose(read_mesh(tmp_path / "m.obj").normals, mesh.normals, atol=1e-6)


def test_adapter_for_path_sends_each_ply_to_its_modality(monkeypatch):
    from neuralcodec.modalities import adapter_for_path, base

    try:
        adapter_for("image")
    except ImportError:  # the image adapter lives elsewhere; ask the others in the same order
        monkeypatch.setattr(
            base, "ADAPTER_MODULES", {k: v for k, v in base.ADAPTER_MODULES.items() if k != "image"}
        )

    assert adapter_for_path(shared(SPLATS / "donut_mipsplatting_fused.ply")).modality == "splat"
    assert adapter_for_path(SPLATS / "playcanvas_guitar.compressed.ply").modality == "splat"
    assert adapter_for_path(MESHES / "stanford_bunny" / "bun_zipper.ply").modality == "mesh"
    assert (
        adapter_for_path(CLOUDS / "stanford_bunny_range_scans" / "bun000.ply").modality
        == "pointcloud"
    )

"""The ``meshtrav`` mesh codec: same triangles up to renumbering, exact positions at the
quantisation, non-manifold / degenerate / unused-vertex cases, normals and UVs (quantised),
attributes (lossless), bad input,
damaged files, estimate vs size, a golden hash."""

from __future__ import annotations

import hashlib
import struct
import warnings

import numpy as np
import pytest
from conftest import REPO_DIR, one_line_error, shared

from neuralcodec import api
from neuralcodec.app.cli import main as cli_main
from neuralcodec.bench.geometry3d import d1_psnr, encode_geometry_file, same_triangles
from neuralcodec.codecs import geometry as g
from neuralcodec.codecs import mesh_traversal as mt
from neuralcodec.codecs.base import CodecError, Encoded, get_codec
from neuralcodec.codecs.mesh_traversal import _unpack_header, quantise
from neuralcodec.datasets.mesh import Mesh, read_mesh, write_mesh

BUNNY = (
    REPO_DIR.parent / "shared" / "data" / "3d" / "meshes" / "stanford_bunny" / "bun_zipper_res3.ply"
)


def _junk_tails_fail_cleanly(codec, enc, mesh, skip: int = 0, tail: int = 0, div: int = 6):
    """Random bytes after 6 valid prefixes of the geometry stream: from its header + ``skip``
    in steps of 1/``div`` of the rest, or (``tail``) the last ``1 + 3 k`` bytes. Each decode is
    a one-line ``CodecError`` or a mesh of the input's size."""
    geom = enc.streams["g"]
    head = _unpack_header(geom)[3]
    for seed in range(6):
        if tail:
            cut = len(geom) - 1 - seed * 3
        else:
            cut = head + skip + seed * (len(geom) - head - skip) // div
        junk = np.random.default_rng(seed).integers(0, 256, len(geom) - cut, np.uint8)
        bad = Encoded(enc.codec, enc.header, {**enc.streams, "g": geom[:cut] + junk.tobytes()})
        try:
            out = codec.decode(bad)
        except CodecError as err:
            assert "\n" not in str(err)
        else:
            assert len(out.vertices) == len(mesh.vertices) and len(out.faces) == len(mesh.faces)


def _write_in_set(monkeypatch, coded_set: int, value: int, slot: int = 0) -> None:
    """Make the encoder write ``value`` in place of the ``slot``-th value after the first one
    coded in ``coded_set`` (a damaged header field, for the decoder's checks)."""
    real_encode = mt.AdaptiveEncoder.code_ints

    def code_ints(self, values, sets, st, markov=1):
        values, sets_l = np.array(values), list(sets)
        if coded_set in sets_l:
            values[sets_l.index(coded_set) + slot] = value
        return real_encode(self, values, sets, st, markov)

    monkeypatch.setattr(mt.AdaptiveEncoder, "code_ints", code_ints)


def _grid(n=12, rng=None) -> Mesh:
    """An n x n grid of quads split into triangles, gently curved (a surface with a border)."""
    y, x = np.mgrid[0:n, 0:n]
    z = np.sin(x / 3.0) * np.cos(y / 4.0)
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], 1).astype(np.float64)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = (
        idx[:-1, :-1].ravel(),
        idx[:-1, 1:].ravel(),
        idx[1:, 1:].ravel(),
        idx[1:, :-1].ravel(),
    )
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    if rng is not None:
        f = f[rng.permutation(len(f))]
    return Mesh(v, f)


def _closed() -> Mesh:
    """An octahedron (closed, manifold)."""
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
    f = np.array(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    )
    return Mesh(v, f)


def _check(mesh: Mesh, quality: int) -> Mesh:
    codec = get_codec("meshtrav")
    dec = codec.decode(codec.encode(mesh, quality))
    assert len(dec.vertices) == len(mesh.vertices) and len(dec.faces) == len(mesh.faces)
    assert same_triangles(mesh, dec, g.quality_to_bits(quality), quantise)
    # every decoded position is on the quantisation grid of the input, as a multiset
    q, o, s = quantise(mesh.vertices, g.quality_to_bits(quality))
    want = g.dequantise(q, o, s)
    assert np.array_equal(np.sort(want, axis=0), np.sort(dec.vertices, axis=0))
    return dec


@pytest.mark.parametrize("quality", [1, 5, 9])
def test_grid_round_trip(rng, quality):
    _check(_grid(10, rng), quality)


def test_closed_and_flipped_orientation():
    m = _closed()
    _check(m, 4)
    m.faces[3] = m.faces[3][::-1]  # one triangle against its neighbours
    _check(m, 4)


def test_awkward_connectivity(rng):
    m = _grid(6)
    v, f = m.vertices, m.faces
    extra = np.array(
        [
            [0, 1, 2],  # shares the edge (0, 1) with a grid triangle: three triangles on it
            f[0],  # a duplicate triangle
            [3, 3, 4],  # degenerate
            [7, 8, 7],  # degenerate
        ]
    )
    unused = rng.normal(size=(5, 3)) + 10  # vertices no triangle uses
    far = np.array([[20.0, 0, 0], [21, 0, 0], [20, 1, 0]])  # a second component
    v2 = np.concatenate([v, unused, far])
    n0 = len(v) + len(unused)
    f2 = np.concatenate([f, extra, [[n0, n0 + 1, n0 + 2]]])
    _check(Mesh(v2, f2[rng.permutation(len(f2))]), 6)


def _revolution(rings=14, around=20) -> Mesh:
    """A closed surface of revolution with a sharp rim: every ring's vertices share a height
    (few distinct values on that axis) and the rim is a crease."""
    t = np.linspace(0, np.pi, rings)
    r = np.where(np.arange(rings) < rings // 2, 1.0 + 0.3 * np.sin(t), 0.6)  # a step: the rim
    h = np.cos(t)
    a = 2 * np.pi * np.arange(around) / around
    v = np.stack(
        [np.outer(r, np.cos(a)).ravel(), np.repeat(h, around), np.outer(r, np.sin(a)).ravel()], 1
    )
    idx = np.arange(rings * around).reshape(rings, around)
    nxt = np.roll(idx, -1, axis=1)
    q0, q1, q2, q3 = idx[:-1].ravel(), nxt[:-1].ravel(), nxt[1:].ravel(), idx[1:].ravel()
    f = np.concatenate([np.stack([q0, q1, q2], 1), np.stack([q0, q2, q3], 1)])
    top, bottom = len(v), len(v) + 1
    v = np.concatenate([v, [[0, h[0], 0], [0, h[-1], 0]]])
    caps = [np.stack([np.full(around, top), nxt[0], idx[0]], 1)]
    caps.append(np.stack([np.full(around, bottom), idx[-1], nxt[-1]], 1))
    return Mesh(v, np.concatenate([f] + caps))


@pytest.mark.parametrize("quality", [1, 5, 9])
def test_prediction_modes_round_trip(quality):
    """Palettes (the shared ring heights), parallelogram selection (the rim) and the blend are
    chosen by the encoder on what they save; whatever it picks decodes exactly."""
    from neuralcodec.codecs import mesh_traversal as mt

    m = _revolution()
    bits = g.quality_to_bits(quality)
    q, _, _ = quantise(m.vertices, bits)
    *_, parts = mt._encode_geometry(np.asarray(m.faces), q, (1 << bits) - 1)
    assert parts["palettes"] & 2  # the heights: 14 values for 282 vertices
    assert parts["select"] == 1  # across the rim one parallelogram is far better
    assert all(w in mt.BLEND_WEIGHTS for w in parts["blend"])
    _check(m, quality)


def _tilted_sheet(n=24, seed=3) -> Mesh:
    """A curved sheet whose vertices are jittered within the surface, turned so that its normal
    is along no axis: residuals mostly tangential, as on irregularly sampled surfaces."""
    m = _grid(n)
    v = m.vertices.copy()
    v[:, :2] += np.random.default_rng(seed).uniform(-0.3, 0.3, (len(v), 2))
    a, b = 0.7, 0.5
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return Mesh(v @ rx.T @ ry.T, m.faces)


@pytest.mark.parametrize("quality", [3, 9])
def test_normal_axis_mode(quality):
    """The axis nearest the surface normal, coded against the tangent plane of the other two
    axes' residuals: chosen where it saves bits, decodes exactly, and the encoder's normal
    estimate is the C loop's (same axis and integers as the definition, on a vertex by hand)."""
    from neuralcodec.codecs import mesh_traversal as mt

    m = _tilted_sheet()
    bits = g.quality_to_bits(quality)
    q, _, _ = quantise(m.vertices, bits)
    *_, parts = mt._encode_geometry(np.asarray(m.faces), q, (1 << bits) - 1)
    assert parts["normal"] == 1
    _check(m, quality)
    # off on a flat sheet in the z = 0 plane: the prediction is exact along z already
    flat = _grid(12)
    flat.vertices[:, 2] = 0.0
    qf, _, _ = quantise(flat.vertices, bits)
    assert mt._encode_geometry(np.asarray(flat.faces), qf, (1 << bits) - 1)[-1]["normal"] == 0
    _check(flat, quality)
    # the estimate of one vertex by hand: two parallelograms whose triangles face opposite ways
    qn = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 3], [9, 9, 1]], np.int64)
    starts = np.array([0, 0, 0, 0, 0, 2])
    tri = np.array([[1, 2, 0], [2, 1, 3]])  # (a, b, o): normals (0, 0, 100) and (-30, -30, -100)
    axis, nrm = mt._normal_axes(qn, starts, tri, (1 << 12) - 1)
    assert axis.tolist() == [-1, -1, -1, -1, 2] and nrm[4].tolist() == [30, 30, 200]
    # at 16 bits each normal is first floor-divided by 2^5: (0, 0, 3) and (-1, -1, -4)
    axis, nrm = mt._normal_axes(qn, starts, tri, (1 << 16) - 1)
    assert axis[4] == 2 and nrm[4].tolist() == [1, 1, 7]


def _order_reference(faces: np.ndarray, nv: int) -> list[int]:
    """The position order as its definition says, with a plain scan instead of a heap."""
    done, score, near, order = [False] * nv, [0] * nv, [0] * nv, []
    tris = [[] for _ in range(nv)]
    for a, b, c in faces.tolist():
        if len({a, b, c}) == 3:
            tris[a].append((b, c))
            tris[b].append((c, a))
            tris[c].append((a, b))
    while len(order) < nv:
        cand = [x for x in range(nv) if not done[x] and near[x] > 0]
        v = (
            max(cand, key=lambda x: (score[x], near[x], -x))
            if cand
            else next(x for x in range(nv) if not done[x])
        )
        done[v] = True
        order.append(v)
        for a, b in tris[v]:
            for x, y in ((a, b), (b, a)):
                if not done[x]:
                    near[x] += 1
                    score[x] += done[y]
    return order


def test_position_order_matches_its_definition(rng):
    from neuralcodec.codecs import mesh_traversal as mt

    m = _grid(9, rng)
    far = np.array([[81, 82, 83], [83, 82, 84]])  # a second part, found when the first is done
    faces = np.concatenate([m.faces, far, [[5, 5, 6]]])  # and a degenerate triangle (ignored)
    got = mt._position_order(faces, 85, 87)
    assert got.tolist() == _order_reference(faces, 85) + [85, 86]


def test_symbol_codes_each_decode(rng, monkeypatch):
    """Both ways of writing the gate symbols decode (the encoder usually picks the second on
    small meshes, so the first is forced here)."""
    from neuralcodec.codecs import mesh_traversal as mt

    for row in (0, 1):
        monkeypatch.setattr(mt, "_SYMBOL_CODES", mt._SYMBOL_CODES[row : row + 1])
        _check(_grid(9, rng), 5)
        monkeypatch.undo()


def test_valence_layouts_decode(rng, monkeypatch):
    """With triangle counts sent as vertices appear (layouts >= 4), the gate symbols' contexts
    are the triangles still to come around the gate's ends: each valence layout forced on
    meshes with borders, several parts, degenerate and non-manifold triangles decodes exactly."""
    from neuralcodec.codecs import mesh_traversal as mt

    odd = _grid(7, rng)
    n0 = len(odd.vertices)
    extra = [[0, 1, 2], [3, 3, 4], [n0, n0 + 1, n0 + 2], [n0 + 2, n0 + 1, n0 + 3]]
    odd = Mesh(
        np.concatenate([odd.vertices, rng.normal(size=(4, 3))]),
        np.concatenate([odd.faces, extra]),
    )
    for layout in range(len(mt._LAYOUTS), mt.NUM_LAYOUTS):
        monkeypatch.setattr(mt, "_ENCODER_LAYOUTS", (layout,))
        for mesh in (_grid(9, rng), _closed(), odd):
            vals, *_ = mt._traverse_encode(np.asarray(mesh.faces), len(mesh.vertices))
            assert vals[0] % mt.NUM_LAYOUTS == layout
            _check(mesh, 5)
        # junk after a valid prefix: one-line errors or a mesh of the right size
        codec = get_codec("meshtrav")
        _junk_tails_fail_cleanly(codec, codec.encode(odd, 5), odd, skip=2)
        monkeypatch.undo()


def _with_loose_points(n=40, seed=2) -> Mesh:
    """A grid with unreferenced vertices close to its surface (what a scan's triangulation
    leaves out)."""
    m = _grid(14)
    rng = np.random.default_rng(seed)
    extra = m.vertices[rng.integers(0, len(m.vertices), n)] + rng.normal(0, 0.05, (n, 3))
    return Mesh(np.concatenate([m.vertices, extra]), m.faces)


@pytest.mark.parametrize("quality", [1, 9])
def test_unreferenced_vertices_near_used_ones(quality):
    """Unreferenced vertices as offsets from a used vertex near each: chosen when cheaper,
    decoded exactly (kept, on the grid), and damaged streams fail in one line."""
    from neuralcodec.codecs import mesh_traversal as mt

    m = _with_loose_points()
    bits = g.quality_to_bits(quality)
    q, _, _ = quantise(m.vertices, bits)
    *_, parts = mt._encode_geometry(np.asarray(m.faces), q, (1 << bits) - 1)
    assert parts["near"] in (mt.NEAR_OFFSETS, mt.NEAR_NORMAL)  # at q9 as cheap in either frame
    _check(m, quality)
    codec = get_codec("meshtrav")
    enc = codec.encode(m, quality)
    _junk_tails_fail_cleanly(codec, enc, m, tail=1)
    # far from the surface (a second cloud) the previous-vertex order stays
    far = Mesh(np.concatenate([_grid(14).vertices, 50 + 9 * np.eye(3)]), _grid(14).faces)
    qf, _, _ = quantise(far.vertices, bits)
    assert mt._encode_geometry(np.asarray(far.faces), qf, (1 << bits) - 1)[-1]["near"] == 0
    _check(far, quality)


def _with_surface_points(n=60, seed=6) -> Mesh:
    """A tilted curved sheet with unreferenced vertices on its triangles (random points inside
    them, a little off the surface): tangential offsets from the nearest used vertex, small
    ones along the normal, as a scan's points its triangulation left out."""
    m = _tilted_sheet()
    rng = np.random.default_rng(seed)
    f = m.faces[rng.integers(0, len(m.faces), n)]
    w = rng.dirichlet(np.ones(3), n)
    p = (m.vertices[f] * w[:, :, None]).sum(axis=1) + rng.normal(0, 0.005, (n, 3))
    return Mesh(np.concatenate([m.vertices, p]), m.faces)


@pytest.mark.parametrize("quality", [5, 9])
def test_unreferenced_vertices_in_the_normal_frame(quality):
    """Format 8: unreferenced vertices' offsets from their used vertex along the two axes off
    its normal axis, the third against the tangent plane there: chosen where cheaper, decoded
    exactly, damaged streams fail in one line; a format-7 decoder refuses such a file."""
    m = _with_surface_points()
    bits = g.quality_to_bits(quality)
    q, _, _ = quantise(m.vertices, bits)
    f = np.asarray(m.faces, np.int64)
    *_, parts = mt._encode_geometry(f, q, (1 << bits) - 1)
    assert parts["near"] == mt.NEAR_NORMAL
    _check(m, quality)
    codec = get_codec("meshtrav")
    enc = codec.encode(m, quality)
    _junk_tails_fail_cleanly(codec, enc, m, tail=1)
    old = Encoded(enc.codec, {**enc.header, "format": 7}, enc.streams)
    one_line_error(CodecError, codec.decode, old, match="bad prediction mode")


@pytest.mark.parametrize("near", [0, 1, 2])
@pytest.mark.parametrize("make", [_with_loose_points, _with_surface_points])
def test_unreferenced_vertex_modes_round_trip(monkeypatch, near, make):
    """Each way of coding unreferenced vertices, forced, decodes to the quantised input."""
    monkeypatch.setattr(mt, "_ENCODER_NEAR", near)
    m = make()
    for quality in (1, 9):
        bits = g.quality_to_bits(quality)
        q = quantise(m.vertices, bits)[0]
        *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
        assert parts["near"] == near
        _check(m, quality)


def test_normal_frame_without_a_normal(monkeypatch):
    """Used vertices whose triangles are all degenerate (no normal: offsets along x, y, z) and
    vertices far off the grid's middle at 16 bits, in the normal frame: exact."""
    monkeypatch.setattr(mt, "_ENCODER_NEAR", mt.NEAR_NORMAL)
    m = _with_surface_points()
    v = np.asarray(m.vertices)
    flat = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [30, -20, 9], [1.01, 0.02, 0.01]])
    nf = len(v) + np.array([[0, 1, 2], [0, 2, 1]])  # collinear: zero normals
    mesh = Mesh(np.concatenate([v, flat]), np.concatenate([np.asarray(m.faces), nf]))
    axis, _ = mt._anchor_normals(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]]), nf - len(v), 255)
    assert (axis == -1).all()
    for quality in (1, 9):
        _check(mesh, quality)


@pytest.mark.parametrize("quality", [1, 9])
def test_unreferenced_format_7_golden_files(monkeypatch, quality):
    """Files whose unreferenced vertices are offsets in x, y, z (format 7's near mode; at q9
    the normal frame is as cheap and wins, so the old mode is forced there) are byte for byte
    what format 7 wrote (with format 11's recency inputs off, which q9 would take), and those
    files decode."""
    monkeypatch.setattr(mt, "_ENCODER_RECENCY", 0)
    data = (REPO_DIR / "tests" / "golden" / f"meshtrav_f7_loose_q{quality}.ncf").read_bytes()
    m = _with_loose_points()
    if quality == 9:
        monkeypatch.setattr(mt, "_ENCODER_NEAR", mt.NEAR_OFFSETS)
    assert api.encode_array(m, "meshtrav", quality) == data
    bits = g.quality_to_bits(quality)
    dec, _ = api.decode_bytes(data)
    assert same_triangles(m, dec, bits, quantise)
    dq, o, s = quantise(m.vertices, bits)
    assert np.array_equal(np.sort(g.dequantise(dq, o, s), axis=0), np.sort(dec.vertices, axis=0))


@pytest.mark.parametrize("value", [3, 2])
def test_bad_unreferenced_mode_one_line(monkeypatch, value):
    """An unreferenced-vertex mode out of range, or a near mode on a mesh without unreferenced
    vertices: one-line errors."""
    _write_in_set(monkeypatch, mt.UNUSED_SET, value)
    codec = get_codec("meshtrav")
    m = _with_surface_points() if value == 3 else _grid(6)
    one_line_error(CodecError, codec.decode, codec.encode(m, 3), match="bad prediction mode")


def _mirrored(n=12, seed=4) -> Mesh:
    """Two mirrored halves of a bumpy sheet (x -> -x), joined along x = 0: half of the
    vertices have an exact mirror image, as in modelled characters and CAD parts."""
    m = _grid(n)
    v = m.vertices.copy()
    v[:, 2] = np.random.default_rng(seed).normal(0, 0.3, len(v))
    v[:, 0] += 1.0  # x in 1 .. n: the mirror half is at -n .. -1
    w = v.copy()
    w[:, 0] = -w[:, 0]
    f2 = m.faces[:, ::-1] + len(v)
    return Mesh(np.concatenate([v, w]), np.concatenate([m.faces, f2]))


@pytest.mark.parametrize("quality", [1, 5, 9])
def test_mirror_prediction(quality, monkeypatch):
    """Vertices predicted by the mirror image of an earlier vertex near their prediction's
    image: found, chosen, exact, and damaged streams fail in one line."""
    from neuralcodec.codecs import mesh_traversal as mt

    m = _mirrored()
    bits = g.quality_to_bits(quality)
    q, _, _ = quantise(m.vertices, bits)
    assert mt._mirror_plane(q)[:1] == (0,) and mt._mirror_plane(q)[2] > 0.9
    *_, parts = mt._encode_geometry(np.asarray(m.faces), q, (1 << bits) - 1)
    assert parts["mirror"] > len(q) // 4
    _check(m, quality)
    codec = get_codec("meshtrav")
    enc = codec.encode(m, quality)
    with monkeypatch.context() as mp:  # the same mesh without mirror prediction
        mp.setattr(mt, "_mirror_plane", lambda qn: (0, 0, 0.0))
        plain = codec.encode(m, quality)
    assert len(enc.streams["g"]) < 0.9 * len(plain.streams["g"])  # the second half is cheaper
    _junk_tails_fail_cleanly(codec, enc, m, skip=4)
    # a flat mesh is its own mirror image across its plane: that is no mirror symmetry (a
    # regular grid's own symmetry across x or y is)
    flat = _grid(8)
    flat.vertices[:, 2] = 0.0
    qf, _, _ = quantise(flat.vertices, bits)
    assert mt._mirror_plane(qf)[0] != 2


def test_lattice_palettes():
    """Coordinates written on a grid coarser than the quantisation (about 5.3 steps at 14 bits):
    the palettes go as lattice steps and corrections, cheaper than gaps, and decode exactly;
    the lattice fit reproduces the palette whatever step it estimates."""
    from neuralcodec.codecs import mesh_traversal as mt

    m = _tilted_sheet(40)
    d = np.ptp(m.vertices, axis=0).max() / 3090
    m.vertices = np.round(m.vertices / d) * d
    quality = 7
    bits = g.quality_to_bits(quality)
    q, _, _ = quantise(m.vertices, bits)
    *_, parts = mt._encode_geometry(np.asarray(m.faces), q, (1 << bits) - 1)
    assert parts["palettes"] and parts["lattice"] >= 1
    _check(m, quality)
    pal = np.unique(q[:, 0])
    step, k, corr = mt._lattice(pal)
    n = np.r_[0, np.cumsum(k)]
    assert np.array_equal(np.r_[pal[0], mt._lattice_values(int(pal[0]), step, n[1:]) + corr], pal)
    assert np.mean(corr == 0) > 0.9
    gaps_cost, _ = mt._palette_cost(pal, lattice=False)
    lattice_cost, fit = mt._palette_cost(pal, lattice=True)
    assert fit is not None and lattice_cost < 0.75 * gaps_cost
    # damaged: one-line errors or a mesh of the right size
    codec = get_codec("meshtrav")
    enc = codec.encode(m, quality)
    _junk_tails_fail_cleanly(codec, enc, m, skip=4, div=12)


def test_split_seam_repeats():
    """A surface cut into two parts whose border vertices are duplicated along the cut (a UV or
    material seam): the duplicates are coded as repeats of earlier border vertices."""
    from neuralcodec.codecs import mesh_traversal as mt

    n = 12
    m = _grid(n)
    v, f = m.vertices, m.faces.copy()
    cut = n // 2
    col = v[:, 0].astype(int)
    extra = np.flatnonzero(col == cut)  # the cut column, duplicated for the right part
    dup_of = {int(i): n * n + k for k, i in enumerate(extra)}
    right = (v[f][:, :, 0] >= cut).all(axis=1)
    f[right] = np.vectorize(lambda i: dup_of.get(int(i), int(i)))(f[right])
    m2 = Mesh(np.concatenate([v, v[extra]]), f)
    q, _, _ = quantise(m2.vertices, 14)
    *_, parts = mt._encode_geometry(np.asarray(m2.faces), q, (1 << 14) - 1)
    assert parts["repeats"] >= len(extra) // 2
    _check(m2, 7)
    # a triangle soup: every vertex on a border, most positions shared by several (whether
    # repeats pay there is the encoder's call; either way it decodes)
    _check(Mesh(v[m.faces.reshape(-1)], np.arange(3 * len(m.faces)).reshape(-1, 3)), 5)


def test_normals_uvs_and_attributes(rng):
    m = _grid(7)
    nv, nf = len(m.vertices), len(m.faces)
    m.normals = rng.normal(size=(nv, 3)).astype(np.float32)
    m.uvs = rng.uniform(size=(2 * nf, 2))
    m.uv_faces = rng.integers(0, 2 * nf, (nf, 3))
    m.attributes["rgb"] = rng.integers(0, 256, (nv, 3)).astype(np.uint8)
    dec = _check(m, 7)
    # per-vertex data follows the vertices: match by the unique quantised positions
    q, o, s = quantise(m.vertices, 14)
    key_in = {tuple(p): i for i, p in enumerate(g.dequantise(q, o, s).tolist())}
    perm = np.array([key_in[tuple(p)] for p in dec.vertices.tolist()])
    assert np.array_equal(dec.attributes["rgb"], m.attributes["rgb"][perm])  # lossless
    # normals: normalised, octahedral with 12 bits per coordinate at 14 bits per axis
    want = g.from_octahedral(g.octahedral(m.normals[perm], 12), 12).astype(np.float32)
    assert np.array_equal(dec.normals, want)
    unit = m.normals[perm] / np.linalg.norm(m.normals[perm], axis=1, keepdims=True)
    assert np.degrees(np.arccos(np.clip((dec.normals * unit).sum(1), -1, 1))).max() < 0.1
    # UVs: quantised like positions, 14 bits over their bounding square
    qu, ou, su = g.quantise_columns(m.uvs, 14)
    assert np.array_equal(dec.uvs, ou + qu * su)
    assert np.abs(dec.uvs - m.uvs).max() <= su / 2 + 1e-12
    # per-corner UV indexes travel with their triangle corners
    corner_in = {}
    for f, u in zip(m.faces.tolist(), m.uv_faces.tolist(), strict=True):
        for k in range(3):
            corner_in[(f[k], f[(k + 1) % 3], f[(k + 2) % 3])] = u[k]
    for f, u in zip(dec.faces.tolist(), dec.uv_faces.tolist(), strict=True):
        for k in range(3):
            key = tuple(int(perm[f[(k + j) % 3]]) for j in range(3))
            assert corner_in[key] == u[k]


def test_geometry_header_forms(monkeypatch):
    """Formats 4 to 6 keep the quantisation in 17 bytes: float32 inputs on
    ``geometry.quantise``'s grid, others on a grid whose origin and top are moved to float32
    values (less than a float32 step away); the 33-byte float64 form of older files still
    decodes."""
    m64 = _grid(6)
    m64.vertices = m64.vertices + 0.1  # not float32 values
    m32 = Mesh(m64.vertices.astype(np.float32), m64.faces)
    codec = get_codec("meshtrav")
    for mesh in (m32, m64):
        geom = codec.encode(mesh, 5).streams["g"]
        bits, origin, step, head = _unpack_header(geom)
        q, o, s = quantise(mesh.vertices, 12)
        assert (bits, head, step) == (12, 17, s) and np.array_equal(origin, o)
        lo = np.asarray(mesh.vertices, np.float64).min(axis=0)
        assert (origin <= lo).all() and (lo - origin < 1e-6 * (1 + np.abs(lo))).all()
        dec = _check(mesh, 5)
        assert np.abs(np.sort(dec.vertices, axis=0) - np.sort(mesh.vertices, axis=0)).max() <= (
            0.5001 * s
        )
    q, o, s = g.quantise(m32.vertices, 12)
    assert np.array_equal(quantise(m32.vertices, 12)[0], q)  # float32 input: the same grid
    # the float64 form (format 2 / 3 files of float64 inputs; their streams have gate order 0,
    # scale rule 0, no linear prediction and no mixed contexts, which format 6 writes when told)
    monkeypatch.setattr(mt, "_ENCODER_FOCUS", (0,))
    monkeypatch.setattr(mt, "SCALE_RULES", (0,))
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 0)
    monkeypatch.setattr(mt, "_ENCODER_MIX", 0)
    enc = codec.encode(m64, 5)
    geom = enc.streams["g"]
    q, o, s = g.quantise(m64.vertices, 12)
    head64 = struct.pack("<B3dd", 4, *o, s)
    bits, o2, s2, size = _unpack_header(head64)
    assert (bits, s2, size) == (12, s, 33) and np.array_equal(o2, o)
    f3 = Encoded(enc.codec, {**enc.header, "format": 3}, {"geom": head64 + geom[17:]})
    dec = codec.decode(f3)
    assert np.array_equal(codec.decode(enc).faces, dec.faces)
    assert np.allclose(np.sort(dec.vertices, axis=0), np.sort(m64.vertices, axis=0), atol=s)
    one_line_error(CodecError, _unpack_header, b"\x04" + b"\0" * 10, match="truncated")
    one_line_error(CodecError, _unpack_header, b"\x0c" + b"\0" * 40, match="bad geometry")
    # no "format" field and no "g" stream: a file of the first format, refused
    old = Encoded(enc.codec, enc.header, {"geom": geom})
    one_line_error(CodecError, codec.decode, old, match="format")
    assert "format" not in enc.header
    one_line_error(
        CodecError, codec.decode, Encoded(enc.codec, {**enc.header, "format": 4}, {}), match=" g"
    )


def test_float64_header_where_float32_cannot_hold_the_grid():
    """A box without extent, or one beyond float32's range, keeps the 33-byte float64 form."""
    codec = get_codec("meshtrav")
    tri = np.array([[0, 1, 2]])
    for v in (np.full((3, 3), 0.25), np.array([[0, 0, 0], [1e39, 0, 0], [0, 1e39, 0.0]])):
        enc = codec.encode(Mesh(v, tri), 5)
        assert _unpack_header(enc.streams["g"])[3] == 33
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dec = codec.decode(enc)
        q, o, s = quantise(v, 12)
        assert np.array_equal(np.sort(g.dequantise(q, o, s), axis=0), np.sort(dec.vertices, axis=0))


@pytest.mark.parametrize("make", [lambda: _grid(20), _revolution])
def test_estimate_matches_size(make):
    m = make()  # the revolution surface also codes palettes, options and gaps
    codec = get_codec("meshtrav")
    est = codec.estimated_bits(m, 9) / 8
    geom = codec.encode(m, 9).streams["g"]
    real = len(geom) - _unpack_header(geom)[3]
    assert abs(real - est) <= 0.01 * est + 16


def test_golden_bitstream(monkeypatch):
    """The encoder's streams are what they were (format 11: the grid takes the recency inputs);
    with the recency inputs off, what format 10 wrote."""
    enc = get_codec("meshtrav").encode(_grid(9), 5)
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in enc.streams.items())).hexdigest()
    assert digest == GOLDEN
    monkeypatch.setattr(mt, "_ENCODER_RECENCY", 0)
    enc = get_codec("meshtrav").encode(_grid(9), 5)
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in enc.streams.items())).hexdigest()
    assert digest == GOLDEN_10


GOLDEN = "bdfc6f0a4ebd8d4d162b2ad0aadb42d565e36cb8777bc1a7bfdaffa4cd41f7a1"
GOLDEN_10 = "8299cdd3fbc6e7b418726eeac3b8f03c47606eb6a1c68a906a9ca5d96a1c19db"  # format 10's


@pytest.mark.parametrize(
    "name, make, quality", [("grid9_q5", lambda: _grid(9), 5), ("revolution_q9", _revolution, 9)]
)
@pytest.mark.parametrize("fmt", [2, 3])
def test_format_2_files_still_decode(name, make, quality, fmt):
    """Files written by format 2 (no normal-axis flag; the revolution one uses palettes,
    parallelogram options and repeats) and format 3 (33-byte float64 quantisation header,
    stream "geom", a "format" field) decode to the source's triangles and grid positions."""
    data = (REPO_DIR / "tests" / "golden" / f"meshtrav_f{fmt}_{name}.ncf").read_bytes()
    dec, header = api.decode_bytes(data)
    assert header["metadata"]["format"] == fmt
    m = make()
    bits = g.quality_to_bits(quality)
    assert same_triangles(m, dec, bits)
    q, o, s = g.quantise(m.vertices, bits)
    assert np.array_equal(np.sort(g.dequantise(q, o, s), axis=0), np.sort(dec.vertices, axis=0))


def test_bad_inputs_one_line():
    codec = get_codec("meshtrav")
    v = np.zeros((3, 3))
    one_line_error(CodecError, codec.encode, Mesh(v, np.array([[0, 1, 3]])), 5, match="outside")
    nan = np.array([[0, 0, 0], [np.nan, 0, 0], [0, 1, 0]])
    one_line_error(CodecError, codec.encode, Mesh(nan, np.array([[0, 1, 2]])), 5, match="NaN")
    one_line_error(CodecError, codec.encode, Mesh(v, np.zeros((0, 3), np.int64)), 5, match="empty")
    one_line_error(CodecError, codec.encode, _closed(), 0, match="quality")


def test_damaged_streams_fail_cleanly(rng):
    codec = get_codec("meshtrav")
    m = _grid(10)
    m.attributes["rgb"] = rng.integers(0, 256, (100, 3)).astype(np.uint8)
    enc = codec.encode(m, 6)
    for name in ("a0", "g"):
        data = enc.streams[name]
        for cut in (len(data) // 2, 5):
            bad = Encoded(enc.codec, enc.header, {**enc.streams, name: data[:cut]})
            with pytest.raises(CodecError) as err:
                codec.decode(bad)
            assert "\n" not in str(err.value)
    # random bytes in the range-coded part (connectivity and positions)
    head = enc.streams["g"][: _unpack_header(enc.streams["g"])[3]]
    for seed in range(5):
        size = len(enc.streams["g"]) - len(head)
        junk = np.random.default_rng(seed).integers(0, 256, size, np.uint8)
        bad = Encoded(enc.codec, enc.header, {**enc.streams, "g": head + junk.tobytes()})
        try:
            out = codec.decode(bad)
        except CodecError as err:
            assert "\n" not in str(err)
        else:
            assert len(out.faces) == len(m.faces)  # garbage that happens to decode


@pytest.mark.parametrize("make", [_revolution, _tilted_sheet])
def test_damaged_modes_fail_cleanly(make):
    """Junk after a valid prefix of a stream that uses palettes, options and repeats (or the
    normal axis): one-line errors (or a mesh of the right size), never a crash or a hang."""
    codec = get_codec("meshtrav")
    enc = codec.encode(make(), 9)
    geom = enc.streams["g"]
    head = _unpack_header(geom)[3]
    rng = np.random.default_rng(7)
    for cut in (head + 8, (head + len(geom)) // 2, len(geom) - 6):
        for _ in range(3):
            junk = rng.integers(0, 256, len(geom) - cut, np.uint8).tobytes()
            bad = Encoded(enc.codec, enc.header, {**enc.streams, "g": geom[:cut] + junk})
            try:
                out = codec.decode(bad)
            except CodecError as err:
                assert "\n" not in str(err)
            else:
                assert len(out.faces) == enc.header["shape"][1]


def test_file_round_trip_cli(tmp_path, run_cli, capsys):
    m = _grid(8)
    src = tmp_path / "in.obj"
    write_mesh(src, m)
    r = run_cli("encode", src, tmp_path / "m.ncf", "--codec", "meshtrav", "-q", "6")
    assert r.returncode == 0, r.stderr
    r = run_cli("decode", tmp_path / "m.ncf", tmp_path / "out.ply")
    assert r.returncode == 0, r.stderr
    back = read_mesh(tmp_path / "out.ply")
    assert same_triangles(read_mesh(src), back, g.quality_to_bits(6), quantise)
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    capsys.readouterr()
    assert cli_main(["encode", str(bad), str(tmp_path / "bad.ncf"), "--codec", "meshtrav"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    data = (tmp_path / "m.ncf").read_bytes()
    (tmp_path / "cut.ncf").write_bytes(data[:-9])
    assert cli_main(["decode", str(tmp_path / "cut.ncf"), str(tmp_path / "cut.ply")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cut.ply").exists()


def test_bunny_and_demo_call(tmp_path):
    path = shared(BUNNY)
    mesh = read_mesh(path)
    _check(mesh, 6)
    out = encode_geometry_file(path, 6, tmp_path)
    assert out["codec"] == "meshtrav" and out["rate_unit"] == "bits/vertex"
    assert out["bytes"] < out["original_bytes"]
    dec = read_mesh(out["decoded"])
    assert len(dec.faces) == len(mesh.faces)
    assert out["d1_psnr"] == pytest.approx(d1_psnr(mesh.vertices, dec.vertices), abs=0.01)
    blob = api.encode_array(mesh, "meshtrav", 6, modality="mesh")
    assert api.decode_bytes(blob)[1]["codec_name"] == "meshtrav"


def test_draco_anchors_round_trip(rng):
    pc_codec, mesh_codec = get_codec("draco"), get_codec("draco-mesh")
    if pc_codec.unavailable_reason():
        pytest.skip(pc_codec.unavailable_reason())
    m = _grid(8)
    out = mesh_codec.decompress(mesh_codec.compress(m, 7))
    assert len(out.faces) == len(m.faces)
    assert d1_psnr(m.vertices, out.vertices) > 70
    from neuralcodec.datasets.pointcloud import PointCloud

    cloud = PointCloud(rng.uniform(0, 1, (500, 3)).astype(np.float32))
    back = pc_codec.decompress(pc_codec.compress(cloud, 9))
    assert len(back) == 500 and d1_psnr(cloud.xyz, back.xyz) > 80
    one_line_error(CodecError, pc_codec.compress, m, 5, match="PointCloud")


def test_geometry_header_overflowing_the_grid_is_refused_without_warnings():
    """Found by the fuzzer (one case in 20,000): a finite origin and step whose far grid corner
    overflows float64 decoded with a numpy overflow warning; now refused in one line first."""
    codec = get_codec("meshtrav")
    enc = codec.encode(_grid(6), 6)
    geom = enc.streams["g"]
    bits, _, _, size = _unpack_header(geom)
    for origin, step in (((1e308, 0.0, 0.0), 1e305), ((0.0, 0.0, 0.0), 1e306)):
        head = struct.pack("<B3dd", bits - 8, *origin, step)
        bad = Encoded(enc.codec, enc.header, {**enc.streams, "g": head + geom[size:]})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            one_line_error(CodecError, codec.decode, bad, match="overflow the grid")


def _sphere_blob(n=300, seed=5) -> Mesh:
    """A closed, irregularly sampled bumpy sphere (random points, their convex hull)."""
    from scipy.spatial import ConvexHull

    p = np.random.default_rng(seed).normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    f = ConvexHull(p).simplices.copy()
    normal = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
    inward = (normal * p[f].mean(axis=1)).sum(axis=1) < 0
    f[inward] = f[inward][:, ::-1]
    return Mesh(p * (1 + 0.1 * np.sin(3 * p[:, :1]) * np.cos(2 * p[:, 1:2])), f)


@pytest.mark.parametrize("name", ["grid9_q5", "revolution_q9"])
def test_format_4_files_still_decode(name):
    """Format-4 files (gate order 0, scale rule 0: no "format" field, stream "g") decode to
    the source's triangles and grid positions."""
    data = (REPO_DIR / "tests" / "golden" / f"meshtrav_f4_{name}.ncf").read_bytes()
    dec, header = api.decode_bytes(data)
    assert "format" not in header["metadata"]
    m, quality = (_grid(9), 5) if name == "grid9_q5" else (_revolution(), 9)
    bits = g.quality_to_bits(quality)
    assert same_triangles(m, dec, bits, quantise)
    q, o, s = quantise(m.vertices, bits)
    assert np.array_equal(np.sort(g.dequantise(q, o, s), axis=0), np.sort(dec.vertices, axis=0))


@pytest.mark.parametrize("name", ["grid9_q5", "revolution_q9"])
def test_format_5_golden_files(name):
    """Format-5 files (the grid: gate order 1, scale rule 2; the revolution surface: gate order
    2 with triangle counts, scale rule 1; written by the format-5 encoder) still decode to the
    source's triangles and grid positions."""
    data = (REPO_DIR / "tests" / "golden" / f"meshtrav_f5_{name}.ncf").read_bytes()
    m, quality = (_grid(9), 5) if name == "grid9_q5" else (_revolution(), 9)
    assert api.encode_array(m, "meshtrav", quality) != data  # format 6 writes other bytes
    bits = g.quality_to_bits(quality)
    dec, _ = api.decode_bytes(data)
    assert same_triangles(m, dec, bits, quantise)
    q, o, s = quantise(m.vertices, bits)
    assert np.array_equal(np.sort(g.dequantise(q, o, s), axis=0), np.sort(dec.vertices, axis=0))


@pytest.mark.parametrize("focus", [0, 1, 2])
@pytest.mark.parametrize("rule", mt.SCALE_RULES)
@pytest.mark.parametrize("make", [_sphere_blob, _revolution, lambda: _grid(9)])
def test_gate_orders_and_scale_rules_round_trip(monkeypatch, focus, rule, make):
    monkeypatch.setattr(mt, "_ENCODER_FOCUS", (focus,))
    monkeypatch.setattr(mt, "FOCUS_LARGE", 10**9)
    monkeypatch.setattr(mt, "SCALE_RULES", (rule,))
    m = make()
    for quality in (1, 9):
        bits = g.quality_to_bits(quality)
        q = quantise(m.vertices, bits)[0]
        *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
        assert (parts["focus"], parts["scale_rule"]) == (focus, rule)
        dec = get_codec("meshtrav").decode(get_codec("meshtrav").encode(m, quality))
        assert same_triangles(m, dec, bits, quantise)
        dq, o, s = quantise(m.vertices, bits)
        assert np.array_equal(
            np.sort(g.dequantise(dq, o, s), axis=0), np.sort(dec.vertices, axis=0)
        )


def test_focus_orders_code_irregular_meshes_in_fewer_bits():
    """The gate order by triangles still to come (focus 2) leaves almost no split walks on a
    closed irregular mesh, and its connectivity costs less than the stack order's."""
    f = np.asarray(_sphere_blob(600).faces, np.int64)
    cost = {k: mt._traverse_encode_order(f, 600, k) for k in (0, 2)}
    walks = {k: sum(s == mt.WALK_SET for s in cost[k][2]) for k in (0, 2)}
    assert cost[2][0] < cost[0][0] and walks[2] < walks[0]


@pytest.mark.parametrize(
    "bad_mode, bad_blend, match",
    [
        (2 * 12 + 1, None, "gate order without triangle counts"),
        (3 * 12, None, "bad context layout"),
        (None, -1, "bad prediction mode"),
        (None, mt._LIN_SPLIT_BASE + len(mt.LIN_SPLITS) * mt.NUM_SCALE_RULES, "bad linear"),
    ],
)
def test_bad_gate_order_or_scale_rule_one_line(monkeypatch, bad_mode, bad_blend, match):
    """A gate order that needs triangle counts with a layout that sends none, a gate order or a
    scale rule out of range: one-line errors."""
    real_traverse, real_encode = mt._traverse_encode, mt.AdaptiveEncoder.code_ints

    def traverse(faces, nverts):
        vals, *rest = real_traverse(faces, nverts)
        return [bad_mode if bad_mode is not None else vals[0], *vals[1:]], *rest

    def code_ints(self, values, sets, st, markov=1):
        values = np.array(values)
        if bad_blend is not None and len(sets) and mt.BLEND_SET in list(sets):
            values[list(sets).index(mt.BLEND_SET)] = bad_blend
        return real_encode(self, values, sets, st, markov)

    monkeypatch.setattr(mt, "_traverse_encode", traverse)
    monkeypatch.setattr(mt.AdaptiveEncoder, "code_ints", code_ints)
    codec = get_codec("meshtrav")
    enc = codec.encode(_grid(6), 3)
    one_line_error(CodecError, codec.decode, enc, match=match)


@pytest.mark.parametrize("name", ["grid9_q5", "revolution_q9", "blob_q9"])
def test_format_6_golden_files(monkeypatch, name):
    """Format 6 (linear prediction with fitted coefficients and mixed residual contexts where
    they pay; the blob takes both): the encoder writes these bytes (with format 10's mantissa
    contexts and format 11's recency inputs off) and they decode."""
    monkeypatch.setattr(mt, "_ENCODER_MANT", 0)
    monkeypatch.setattr(mt, "_ENCODER_RECENCY", 0)
    data = (REPO_DIR / "tests" / "golden" / f"meshtrav_f6_{name}.ncf").read_bytes()
    make, quality = {
        "grid9_q5": (lambda: _grid(9), 5),
        "revolution_q9": (_revolution, 9),
        "blob_q9": (_sphere_blob, 9),
    }[name]
    m = make()
    assert api.encode_array(m, "meshtrav", quality) == data
    bits = g.quality_to_bits(quality)
    q = quantise(m.vertices, bits)[0]
    *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
    assert (parts["linear"] is not None, parts["mix"]) == GOLDEN_6_MODES[name]
    dec, _ = api.decode_bytes(data)
    assert same_triangles(m, dec, bits, quantise)
    dq, o, s = quantise(m.vertices, bits)
    assert np.array_equal(np.sort(g.dequantise(dq, o, s), axis=0), np.sort(dec.vertices, axis=0))


GOLDEN_6_MODES = {"grid9_q5": (False, 1), "revolution_q9": (False, 1), "blob_q9": (True, 1)}


@pytest.mark.parametrize("linear, mix", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize(
    "make",
    [_sphere_blob, _revolution, lambda: _grid(9), _tilted_sheet, _mirrored, _with_loose_points],
)
def test_linear_prediction_and_mixed_contexts_round_trip(monkeypatch, linear, mix, make):
    """Each combination of linear prediction and mixed residual contexts, forced on or off,
    decodes to the source's triangles and grid positions (palettes, options, mirror images,
    repeats, the normal axis and unreferenced vertices included)."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", linear)
    monkeypatch.setattr(mt, "_ENCODER_MIX", mix)
    m = make()
    for quality in (1, 9):
        bits = g.quality_to_bits(quality)
        q = quantise(m.vertices, bits)[0]
        *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
        assert parts["mix"] == mix and (parts["linear"] is not None) == bool(linear)
        _check(m, quality)


@pytest.mark.parametrize(
    "ab",
    [
        (mt.LIN_A[0], mt.LIN_B[1], mt.LIN_G[1]),
        (mt.LIN_A[1], mt.LIN_B[0], mt.LIN_G[0]),
        (-3, 7, -5),
    ],
)
def test_linear_prediction_extreme_coefficients(monkeypatch, ab):
    """The decoder's integer rule (C) and the encoder's (numpy) agree for coefficients at the
    ends of their ranges and for odd ones (floor division of negative numbers)."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    monkeypatch.setattr(mt, "_linear_options", lambda q, rows, terms, t: [ab])
    for make in (_sphere_blob, _revolution):
        m = make()
        for quality in (1, 9):
            _check(m, quality)


@pytest.mark.parametrize(
    "slot, value", [(1, mt.LIN_A[1] + 1), (2, mt.LIN_B[0] - 1), (6, mt.LIN_G[1] + 1)]
)
def test_bad_linear_coefficients_one_line(monkeypatch, slot, value):
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    _write_in_set(monkeypatch, mt.BLEND_SET, value, slot)
    codec = get_codec("meshtrav")
    enc = codec.encode(_sphere_blob(), 3)
    one_line_error(CodecError, codec.decode, enc, match="bad linear prediction")


@pytest.mark.parametrize("split", [0, 1])
@pytest.mark.parametrize(
    "make",
    [_sphere_blob, _revolution, lambda: _grid(9), _tilted_sheet, _mirrored, _with_loose_points],
)
def test_split_linear_weights_round_trip(monkeypatch, split, make):
    """Format 7: the linear weights of vertices with 2+ parallelograms in two classes by the
    parallelograms' spread, forced on or off, decode to the source's triangles and positions."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    monkeypatch.setattr(mt, "_ENCODER_SPLIT", split)
    m = make()
    for quality in (1, 9):
        bits = g.quality_to_bits(quality)
        q = quantise(m.vertices, bits)[0]
        *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
        assert len(parts["linear"]) == (10 if split else 6)
        _check(m, quality)


@pytest.mark.parametrize(
    "coefs",
    [
        (mt.LIN_A[0], mt.LIN_B[1], mt.LIN_G[1], mt.LIN_A[1], mt.LIN_B[0], mt.LIN_G[0], -2),
        (-3, 7, -5, 5, -9, 3, -1),
    ],
)
def test_split_linear_extreme_coefficients(monkeypatch, coefs):
    """Format 7's classes and coefficients at the ends of their ranges: C and numpy agree."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    monkeypatch.setattr(mt, "_linear_split", lambda *a: (coefs, 0.0))
    for make in (_sphere_blob, _revolution):
        for quality in (1, 9):
            _check(make(), quality)


def test_format_7_golden_file(monkeypatch):
    """Format 7 (split linear weights; forced, as this small blob gains nothing from them): the
    encoder writes these bytes (with format 11's recency inputs off) and they decode."""
    monkeypatch.setattr(mt, "_ENCODER_SPLIT", 1)
    monkeypatch.setattr(mt, "_ENCODER_RECENCY", 0)
    data = (REPO_DIR / "tests" / "golden" / "meshtrav_f7_blob_q9.ncf").read_bytes()
    m = _sphere_blob()
    assert api.encode_array(m, "meshtrav", 9) == data
    bits = g.quality_to_bits(9)
    q = quantise(m.vertices, bits)[0]
    *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
    assert parts["linear"] is not None and len(parts["linear"]) == 10
    dec, _ = api.decode_bytes(data)
    assert same_triangles(m, dec, bits, quantise)
    dq, o, s = quantise(m.vertices, bits)
    assert np.array_equal(np.sort(g.dequantise(dq, o, s), axis=0), np.sort(dec.vertices, axis=0))


def _noisy_blob(n=400, seed=8) -> Mesh:
    """The bumpy sphere with Gaussian noise along the radius (a noisy scan of a smooth surface)."""
    m = _sphere_blob(n, seed)
    v = m.vertices * (1 + np.random.default_rng(seed).normal(0, 0.02, (len(m.vertices), 1)))
    return Mesh(v, m.faces)


@pytest.mark.parametrize("frac", [0, *mt.FRAC_CLASSES])
@pytest.mark.parametrize("mix", [0, 1])
@pytest.mark.parametrize(
    "make", [_sphere_blob, _noisy_blob, _revolution, _tilted_sheet, _mirrored, _with_loose_points]
)
def test_prediction_fractions_round_trip(monkeypatch, frac, mix, make):
    """Format 9: the linear prediction's rounding (side and class) as residual context, forced
    to each class count or off, with plain or mixed contexts, decodes to the source's
    triangles and grid positions (palettes, options, mirror images, repeats, the normal axis and
    unreferenced vertices included)."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    monkeypatch.setattr(mt, "_ENCODER_MIX", mix)
    monkeypatch.setattr(mt, "_ENCODER_FRAC", frac)
    m = make()
    taken = []
    for quality in (1, 9):
        bits = g.quality_to_bits(quality)
        q = quantise(m.vertices, bits)[0]
        *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
        assert parts["frac"] in (0, frac) and parts["mix"] == mix
        taken.append(parts["frac"])
        _check(m, quality)
    assert frac in taken  # (where every axis has a palette, nothing takes the fractions)


def _noisy_grid(n=40, sigma=0.2, seed=1) -> Mesh:
    """The curved grid with Gaussian noise across it (about a fifth of an edge)."""
    m = _grid(n)
    v = m.vertices.copy()
    v[:, 2] += np.random.default_rng(seed).normal(0, sigma, len(v))
    return Mesh(v, m.faces)


def test_prediction_fractions_pay_at_low_bit_depths(monkeypatch):
    """Where residuals are a step or two (8 bits, a noisy surface) the encoder takes the
    prediction fractions and the file is smaller than without them; a file that does not take
    them is byte for byte a format-8 file (the same bytes as with the mode off)."""
    m = _noisy_grid()
    bits = g.quality_to_bits(1)
    q = quantise(m.vertices, bits)[0]
    *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
    assert parts["frac"] in mt.FRAC_CLASSES
    on, grid_on = api.encode_array(m, "meshtrav", 1), api.encode_array(_grid(9), "meshtrav", 9)
    monkeypatch.setattr(mt, "_ENCODER_FRAC", 0)
    off, grid_off = api.encode_array(m, "meshtrav", 1), api.encode_array(_grid(9), "meshtrav", 9)
    assert len(on) < len(off)
    assert grid_on == grid_off


@pytest.mark.parametrize("frac", mt.FRAC_CLASSES)
def test_prediction_fractions_damaged_or_cut_streams_one_line(monkeypatch, frac):
    """A format-9 stream cut short or with junk after a valid prefix: one-line errors (or a mesh
    of the right size), never a crash."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    monkeypatch.setattr(mt, "_ENCODER_FRAC", frac)
    codec = get_codec("meshtrav")
    m = _noisy_blob()
    enc = codec.encode(m, 1)
    geom = enc.streams["g"]
    for cut in (len(geom) // 2, len(geom) - 3):
        bad = Encoded(enc.codec, enc.header, {**enc.streams, "g": geom[:cut]})
        one_line_error(CodecError, codec.decode, bad, match="meshtrav")
    _junk_tails_fail_cleanly(codec, enc, m)
    _junk_tails_fail_cleanly(codec, enc, m, tail=1)


@pytest.mark.parametrize("value, linear", [(32, 1), (16, 1), (16 + 1, 0), (4, 0), (12 + 2, 0)])
def test_bad_fraction_mode_one_line(monkeypatch, value, linear):
    """A select value past format 10's, format 10's mantissa contexts without mixing, or
    prediction fractions without the linear prediction: one-line errors."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", linear)
    monkeypatch.setattr(mt, "_ENCODER_FRAC", 0)
    _write_in_set(monkeypatch, mt.SELECT_SET, value)
    codec = get_codec("meshtrav")
    enc = codec.encode(_sphere_blob(), 1)
    one_line_error(CodecError, codec.decode, enc, match="bad prediction mode")


@pytest.mark.parametrize("mant", [0, 1])
@pytest.mark.parametrize("frac", [0, 2])
@pytest.mark.parametrize(
    "make", [_sphere_blob, _noisy_blob, _revolution, _tilted_sheet, _mirrored, _with_loose_points]
)
def test_mantissa_contexts_round_trip(monkeypatch, mant, frac, make):
    """Format 10: the mixed residuals' second and third mantissa bits in contexts, forced on or
    off (with or without the prediction fractions), decode to the source's triangles and grid
    positions (palettes, options, mirror images, repeats, the normal axis and unreferenced
    vertices included)."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    monkeypatch.setattr(mt, "_ENCODER_MIX", 1)
    monkeypatch.setattr(mt, "_ENCODER_FRAC", frac)
    monkeypatch.setattr(mt, "_ENCODER_MANT", mant)
    m = make()
    for quality in (1, 9):
        bits = g.quality_to_bits(quality)
        q = quantise(m.vertices, bits)[0]
        *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
        assert parts["mant"] == mant and parts["mix"] == 1
        _check(m, quality)


def test_mantissa_contexts_pay_on_noise(monkeypatch):
    """Where residuals are many steps of noise (16 bits, a noisy surface) the encoder takes the
    mantissa contexts and the file is smaller than without them; a file that does not take them
    is byte for byte a format-9 file (the same bytes as with the mode off)."""
    m = _noisy_blob(2000)
    bits = g.quality_to_bits(9)
    q = quantise(m.vertices, bits)[0]
    *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
    assert parts["mant"] == 1
    on, grid_on = api.encode_array(m, "meshtrav", 9), api.encode_array(_grid(9), "meshtrav", 1)
    monkeypatch.setattr(mt, "_ENCODER_MANT", 0)
    off, grid_off = api.encode_array(m, "meshtrav", 9), api.encode_array(_grid(9), "meshtrav", 1)
    assert len(on) < len(off)
    assert grid_on == grid_off


@pytest.mark.parametrize("tool", ["_ENCODER_MANT", "_ENCODER_RECENCY"])
def test_mixed_position_tools_damaged_or_cut_streams_one_line(monkeypatch, tool):
    """A stream with format 10's mantissa contexts or format 11's recency inputs, cut short or
    with junk after a valid prefix: one-line errors (or a mesh of the right size), never a
    crash."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    monkeypatch.setattr(mt, "_ENCODER_MIX", 1)
    monkeypatch.setattr(mt, tool, 1)
    codec = get_codec("meshtrav")
    m = _noisy_blob()
    enc = codec.encode(m, 9)
    geom = enc.streams["g"]
    for cut in (len(geom) // 2, len(geom) - 3):
        bad = Encoded(enc.codec, enc.header, {**enc.streams, "g": geom[:cut]})
        one_line_error(CodecError, codec.decode, bad, match="meshtrav")
    _junk_tails_fail_cleanly(codec, enc, m)
    _junk_tails_fail_cleanly(codec, enc, m, tail=1)


@pytest.mark.parametrize("recency", [0, 1])
@pytest.mark.parametrize("mant", [0, 1])
@pytest.mark.parametrize(
    "make", [_sphere_blob, _noisy_blob, _revolution, _tilted_sheet, _mirrored, _with_loose_points]
)
def test_recency_inputs_round_trip(monkeypatch, recency, mant, make):
    """Format 11: the mix's recency inputs (fast copy and bit history of each context, second
    refinement table), forced on or off (with or without format 10's mantissa contexts), decode
    to the source's triangles and grid positions (palettes, options, mirror images, repeats, the
    normal axis and unreferenced vertices included)."""
    monkeypatch.setattr(mt, "_ENCODER_LINEAR", 1)
    monkeypatch.setattr(mt, "_ENCODER_MIX", 1)
    monkeypatch.setattr(mt, "_ENCODER_MANT", mant)
    monkeypatch.setattr(mt, "_ENCODER_RECENCY", recency)
    m = make()
    for quality in (1, 9):
        bits = g.quality_to_bits(quality)
        q = quantise(m.vertices, bits)[0]
        *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
        assert parts["recency"] == recency and parts["mant"] == mant and parts["mix"] == 1
        _check(m, quality)


def test_recency_inputs_pay_where_taken(monkeypatch):
    """The encoder takes the recency inputs where they code fewer bits (a noisy sphere at 16
    bits: the file is smaller than without them) and leaves them off where they do not (the
    small grid: the same bytes as with the mode off, i.e. a format-10 file)."""
    m = _noisy_blob(2000)
    bits = g.quality_to_bits(9)
    q = quantise(m.vertices, bits)[0]
    *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
    assert parts["recency"] == 1 and parts["mix"] == 1
    assert parts["positions_mixed"] + 8 < _recency_off_bits(monkeypatch, m, 9)
    grid = _grid(9)
    bits = g.quality_to_bits(1)
    q = quantise(grid.vertices, bits)[0]
    *_, parts = mt._encode_geometry(np.asarray(grid.faces, np.int64), q, (1 << bits) - 1)
    assert parts["recency"] == 0
    on, grid_on = api.encode_array(m, "meshtrav", 9), api.encode_array(grid, "meshtrav", 1)
    monkeypatch.setattr(mt, "_ENCODER_RECENCY", 0)
    off, grid_off = api.encode_array(m, "meshtrav", 9), api.encode_array(grid, "meshtrav", 1)
    assert len(on) < len(off)
    assert grid_on == grid_off


def _recency_off_bits(monkeypatch, m: Mesh, quality: int) -> float:
    """Ideal bits of the position part with the recency inputs off."""
    with monkeypatch.context() as mp:
        mp.setattr(mt, "_ENCODER_RECENCY", 0)
        bits = g.quality_to_bits(quality)
        q = quantise(m.vertices, bits)[0]
        *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), q, (1 << bits) - 1)
    assert parts["recency"] == 0
    return parts["positions_mixed"]


def test_format_10_files_still_decode(monkeypatch):
    """With the recency inputs off the encoder writes exactly what format 10 wrote (the hash of
    format 10's file: the noisy sphere at 16 bits, which takes the mixed contexts, the mantissa
    contexts and the linear prediction), and that file decodes to the source's grid positions."""
    monkeypatch.setattr(mt, "_ENCODER_RECENCY", 0)
    m = _noisy_blob(2000)
    data = api.encode_array(m, "meshtrav", 9)
    assert hashlib.sha256(data).hexdigest() == GOLDEN_10_NOISY_Q9
    bits = g.quality_to_bits(9)
    monkeypatch.setattr(mt, "_ENCODER_RECENCY", None)
    dec, _ = api.decode_bytes(data)
    assert same_triangles(m, dec, bits, quantise)
    dq, o, s = quantise(m.vertices, bits)
    assert np.array_equal(np.sort(g.dequantise(dq, o, s), axis=0), np.sort(dec.vertices, axis=0))


GOLDEN_10_NOISY_Q9 = "f812bab0c6415656826a9e03e58949d119d3acf3f6e56e2df1d99f92241a8c2d"


@pytest.mark.parametrize("value", [32, 32 + 16, 64, 64 + 2])
def test_bad_recency_mode_one_line(monkeypatch, value):
    """Format 11's recency inputs without mixing (alone or with the mantissa contexts), or a
    select value past format 11's: one-line errors."""
    monkeypatch.setattr(mt, "_ENCODER_FRAC", 0)
    _write_in_set(monkeypatch, mt.SELECT_SET, value)
    codec = get_codec("meshtrav")
    enc = codec.encode(_sphere_blob(), 1)
    one_line_error(CodecError, codec.decode, enc, match="bad prediction mode")


def test_recency_inputs_need_their_model_sizes():
    """The C encoder refuses the recency flag with a model of format 10's sizes, and the decoder
    refuses it without mixing; the estimate (``pos_mix_bits``) with the flag matches the
    encoder's parts."""
    from neuralcodec.entropy import adaptive as ad

    st = ad.states(ad.POS_MIX_STATES)
    ad._adaptive.pos_mix_init(st)
    small_w = np.full(ad._POS_MIX_W_OWN, ad._POS_MIX_W0, np.int32)
    sym = np.empty(65 * 3 + 1, np.int32)
    args = [np.array(x, np.int32) for x in ([1, -2, 0], [0, 0, 0], [8, 9, 10], [0, 0, 0], [0, 0])]
    with pytest.raises(ValueError, match="bad set"):
        ad._adaptive.pos_mix_encode(*args, np.zeros(0, np.int32), st, small_w, sym, sym.copy())
    args[2] = np.array([0, 1, 2], np.int32)  # without the flag format 10's sizes still work
    ad._adaptive.pos_mix_encode(*args, np.zeros(0, np.int32), st, small_w, sym, sym.copy())

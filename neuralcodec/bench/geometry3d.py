"""``codec bench 3d``: point cloud and mesh codecs against Draco, plus the demo's geometry call.

::

    codec bench 3d --dataset DIR [--codecs octree,meshtrav,draco] [--qualities 1,3,5,7,9]
                   [--layout GLOB=LAYOUT ...] [--out DIR]

Every point cloud (.ply without faces, .pcd, .xyz, .bin) and mesh (.obj, .ply with faces) under
DIR is coded at each quality with each codec of its modality (``draco`` stands for the Draco
anchor of the file's modality: ``draco`` or ``draco-mesh``). Geometry only: attributes, normals
and UVs are removed before coding, for every codec alike, so the rates compare like with like.

Measured per (file, codec, quality): bytes, rate (bits per point / per vertex), encode and decode
seconds (wall, one thread), D1 PSNR (point-to-point, symmetric: the larger of the two one-way
mean squared nearest-neighbour distances; peak = the diagonal of the original's bounding box)
and, where the input has per-point / per-vertex normals, D2 PSNR (point-to-plane with the
original's normals, same peak). Meshes: whether the decoded triangles are the input's (up to
vertex renumbering and corner rotation). Written: ``results.json``, ``rd_<file>.png`` per file
and ``bdrate.md`` (BD-rate of each codec against the Draco anchor, rate vs D1 PSNR).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec.bench.bdrate import bd_rate, try_bd
from neuralcodec.codecs.base import CodecError, codec_class, get_codec
from neuralcodec.datasets.mesh import Mesh
from neuralcodec.datasets.pointcloud import PointCloud

DEFAULT_CODECS = ("octree", "meshtrav", "draco")
DEFAULT_QUALITIES = (1, 3, 5, 7, 9)
ANCHOR = {"pointcloud": "draco", "mesh": "draco-mesh"}


# ----------------------------------------------------------------------------- metrics


def _nearest(ref: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    d, i = cKDTree(ref).query(pts, k=1, workers=1)
    return d, i


def peak_of(xyz: np.ndarray) -> float:
    """The diagonal of the bounding box of ``xyz``."""
    x = np.asarray(xyz, np.float64)
    return float(np.linalg.norm(x.max(axis=0) - x.min(axis=0)))


def _psnr(mse: float, peak: float) -> float | None:
    if mse <= 0 or peak <= 0:
        return None  # identical: no finite PSNR
    return 10.0 * math.log10(peak * peak / mse)


def d1_psnr(ref: np.ndarray, dec: np.ndarray, peak: float | None = None) -> float | None:
    """Symmetric point-to-point PSNR (dB); ``None`` when the sets coincide."""
    a, b = np.asarray(ref, np.float64), np.asarray(dec, np.float64)
    dab, _ = _nearest(b, a)
    dba, _ = _nearest(a, b)
    mse = max(float(np.mean(dab**2)), float(np.mean(dba**2)))
    return _psnr(mse, peak_of(a) if peak is None else peak)


def d2_psnr(ref: np.ndarray, normals: np.ndarray, dec: np.ndarray, peak: float | None = None):
    """Symmetric point-to-plane PSNR (dB) with the reference's normals (normalised here)."""
    a, b = np.asarray(ref, np.float64), np.asarray(dec, np.float64)
    n = np.asarray(normals, np.float64)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    _, ia = _nearest(a, b)  # decoded -> reference
    e_ba = np.einsum("ij,ij->i", b - a[ia], n[ia])
    _, ib = _nearest(b, a)  # reference -> decoded
    e_ab = np.einsum("ij,ij->i", b[ib] - a, n)
    mse = max(float(np.mean(e_ba**2)), float(np.mean(e_ab**2)))
    return _psnr(mse, peak_of(a) if peak is None else peak)


def same_triangles(ref: Mesh, dec: Mesh, bits: int, quantise=None) -> bool:
    """Whether ``dec`` holds ``ref``'s oriented triangles once ``ref`` is quantised to ``bits``
    per axis as the codec does (``quantise``, default ``geometry.quantise``; a codec's own grid is
    its ``quantise`` attribute): triangles compared as position triples, each rotated to start at
    its smallest corner, as sorted lists (vertex numbering and triangle order free)."""
    from neuralcodec.codecs import geometry as g

    if len(ref.faces) != len(dec.faces):
        return False
    q, origin, step = (quantise or g.quantise)(ref.vertices, bits)

    def canon(v: np.ndarray, f: np.ndarray) -> np.ndarray:
        t = np.asarray(v, np.float64)[np.asarray(f)]  # F x 3 corners x 3
        flat = t.reshape(len(t), 9)
        rots = np.stack([np.roll(flat, -3 * j, axis=1) for j in range(3)], axis=1)  # F x 3 x 9
        keys = [tuple(r) for r in rots.reshape(-1, 9).tolist()]
        best = [min(keys[3 * i : 3 * i + 3]) for i in range(len(t))]
        return np.array(sorted(best))

    return bool(
        np.array_equal(
            canon(g.dequantise(q, origin, step).astype(np.asarray(dec.vertices).dtype), ref.faces),
            canon(dec.vertices, dec.faces),
        )
    )


# ----------------------------------------------------------------------------- coding one item


def geometry_only(data: Any) -> Any:
    if isinstance(data, PointCloud):
        return PointCloud(np.asarray(data.xyz))
    return Mesh(np.asarray(data.vertices), np.asarray(data.faces))


def _units(data: Any) -> int:
    return len(data.xyz) if isinstance(data, PointCloud) else len(data.vertices)


def code_once(name: str, data: Any, quality: int) -> tuple[int, Any, float, float]:
    """(bytes, decoded, encode s, decode s) of ``data`` with codec ``name``."""
    from neuralcodec import api

    codec = get_codec(name)
    if codec.writes_ncf:
        t0 = time.perf_counter()
        blob = api.encode_array(data, name, quality)
        t1 = time.perf_counter()
        decoded, _ = api.decode_bytes(blob)
        t2 = time.perf_counter()
    else:
        t0 = time.perf_counter()
        blob = codec.compress(data, quality)
        t1 = time.perf_counter()
        decoded = codec.decompress(blob)
        t2 = time.perf_counter()
    return len(blob), decoded, t1 - t0, t2 - t1


def measure(name: str, data: Any, quality: int, normals: np.ndarray | None) -> dict[str, Any]:
    nbytes, dec, te, td = code_once(name, data, quality)
    ref_xyz = data.xyz if isinstance(data, PointCloud) else data.vertices
    dec_xyz = dec.xyz if isinstance(dec, PointCloud) else dec.vertices
    peak = peak_of(ref_xyz)
    row = {
        "codec": name,
        "quality": quality,
        "bits": 7 + quality,
        "bytes": nbytes,
        "rate": 8.0 * nbytes / _units(data),
        "encode_s": te,
        "decode_s": td,
        "d1_psnr": d1_psnr(ref_xyz, dec_xyz, peak),
        "d2_psnr": None if normals is None else d2_psnr(ref_xyz, normals, dec_xyz, peak),
        "decoded_units": _units(dec),
    }
    if isinstance(data, Mesh):
        row["triangles"] = len(dec.faces)
        if get_codec(name).writes_ncf:
            grid = getattr(get_codec(name), "quantise", None)
            row["same_triangles"] = same_triangles(data, dec, 7 + quality, grid)
    return row


# ----------------------------------------------------------------------------- the demo's call


def encode_geometry_file(
    src: str | os.PathLike[str],
    quality: int,
    out_dir: str | os.PathLike[str],
    codec: str | None = None,
    layout: str | None = None,
) -> dict[str, Any]:
    """Encode a point cloud or mesh file at ``quality`` (``octree`` / ``meshtrav`` unless
    ``codec`` is given), decode it, and report: ``ncf`` and ``decoded`` paths (``.ply``, written
    into ``out_dir``), ``bytes``, ``original_bytes``, ``rate`` + ``rate_unit``, ``bits`` per axis,
    ``d1_psnr`` (dB, peak = bounding-box diagonal), ``encode_s`` / ``decode_s``, and the data read
    and decoded (``data``, ``decoded_data``: ``PointCloud`` or ``Mesh``)."""
    from neuralcodec import api
    from neuralcodec.modalities import adapter_for_path

    src = Path(src)
    adapter = adapter_for_path(src)
    if adapter.modality not in ANCHOR:
        raise CodecError(f"{src}: not a point cloud or mesh file")
    name = codec or ("octree" if adapter.modality == "pointcloud" else "meshtrav")
    data = adapter.read(src, layout=layout) if layout else adapter.read(src)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ncf = out / f"{src.stem}.q{quality}.ncf"
    decoded_path = out / f"{src.stem}.q{quality}.decoded.ply"
    t0 = time.perf_counter()
    blob, report = api.encode_with_report(data, name, quality, modality=adapter.modality)
    t1 = time.perf_counter()
    decoded, _ = api.decode_bytes(blob)
    t2 = time.perf_counter()
    from neuralcodec.datasets.paths import write_bytes_atomic

    write_bytes_atomic(ncf, blob, force=True)
    adapter.write(decoded_path, decoded, {}, force=True)
    ref = data.xyz if isinstance(data, PointCloud) else data.vertices
    dec = decoded.xyz if isinstance(decoded, PointCloud) else decoded.vertices
    return {
        "codec": name,
        "quality": quality,
        "bits": 7 + quality,
        "ncf": str(ncf),
        "decoded": str(decoded_path),
        "bytes": len(blob),
        "original_bytes": src.stat().st_size,
        "rate": report.rate,
        "rate_unit": report.rate_unit,
        "d1_psnr": d1_psnr(ref, dec),
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
        "data": data,
        "decoded_data": decoded,
    }


# ----------------------------------------------------------------------------- the benchmark


def find_items(dataset: Path, layouts: list[tuple[str, str]]):
    """(path, modality, data, normals) of every point cloud and mesh under ``dataset``."""
    from neuralcodec.modalities import adapter_for_path

    for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
        try:
            adapter = adapter_for_path(path)
        except KeyError:
            continue
        if adapter.modality not in ANCHOR:
            continue
        layout = next((lay for pat, lay in layouts if fnmatch.fnmatch(path.name, pat)), None)
        try:
            data = adapter.read(path, layout=layout) if layout else adapter.read(path)
        except (CodecError, OSError) as exc:
            yield path, adapter.modality, None, str(exc)
            continue
        if isinstance(data, PointCloud):
            normals = data.attributes.get("normal")
        else:
            normals = (
                data.normals if data.normals is not None and data.normal_faces is None else None
            )
        yield path, adapter.modality, geometry_only(data), normals


def _codec_for(name: str, modality: str) -> str | None:
    if name == "draco":
        return ANCHOR[modality]
    cls = codec_class(name)
    return name if cls.modality == modality else None


def _plot(path: Path, title: str, rows: list[dict], unit: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name in dict.fromkeys(r["codec"] for r in rows):
        pts = sorted((r["rate"], r["d1_psnr"]) for r in rows if r["codec"] == name and r["d1_psnr"])
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax.set_xlabel(unit)
    ax.set_ylabel("D1 PSNR (dB), peak = bbox diagonal")
    ax.set_title(title)
    ax.grid(True, alpha=0.35)
    ax.legend()
    fig.savefig(path)


def bd_table(results: list[dict]) -> tuple[str, dict]:
    lines = [
        "| file | modality | codec | BD-rate vs Draco, D1 (%) | size / Draco at equal bits (mean) |",
        "| --- | --- | --- | --- | --- |",
    ]
    summary: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    for item in results:
        rows = item["rows"]
        anchor = [r for r in rows if r["codec"] == ANCHOR[item["modality"]]]
        for name in dict.fromkeys(r["codec"] for r in rows):
            if name == ANCHOR[item["modality"]]:
                continue
            mine = [r for r in rows if r["codec"] == name]
            pairs = [(r, a) for r in mine for a in anchor if a["quality"] == r["quality"]]
            ratio = [r["bytes"] / a["bytes"] for r, a in pairs]
            a_pts = [(a["rate"], a["d1_psnr"]) for a in anchor if a["d1_psnr"] is not None]
            m_pts = [(r["rate"], r["d1_psnr"]) for r in mine if r["d1_psnr"] is not None]
            bd = None
            if len(a_pts) >= 2 and len(m_pts) >= 2:
                bd = try_bd(
                    bd_rate, tuple(zip(*a_pts, strict=True)), tuple(zip(*m_pts, strict=True))
                )
            item.setdefault("bd_rate_vs_draco", {})[name] = bd
            key = f"{item['modality']}:{name}"
            if bd is not None:
                summary.setdefault(key, []).append(bd)
            if ratio:
                ratios.setdefault(key, []).append(float(np.mean(ratio)))
            lines.append(
                f"| {item['file']} | {item['modality']} | {name} | "
                f"{'n/a' if bd is None else f'{bd:+.1f}'} | "
                f"{(f'{np.mean(ratio):.3f}' if ratio else 'n/a')} |"
            )
    agg = {
        key: {
            "mean_bd_rate": float(np.mean(summary[key])) if key in summary else None,
            "mean_size_ratio": float(np.mean(ratios[key])) if key in ratios else None,
        }
        for key in sorted(set(summary) | set(ratios))
    }
    lines += [
        "",
        "| modality:codec | mean BD-rate vs Draco (%) | mean size / Draco |",
        "| --- | --- | --- |",
    ]
    for key, v in agg.items():
        bd = "n/a" if v["mean_bd_rate"] is None else f"{v['mean_bd_rate']:+.1f}"
        ratio = "n/a" if v["mean_size_ratio"] is None else f"{v['mean_size_ratio']:.3f}"
        lines.append(f"| {key} | {bd} | {ratio} |")
    return "\n".join(lines) + "\n", agg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, type=Path, help="folder of point clouds / meshes")
    p.add_argument("--codecs", default=",".join(DEFAULT_CODECS), help="comma-separated names")
    p.add_argument("--qualities", default=",".join(map(str, DEFAULT_QUALITIES)))
    p.add_argument(
        "--layout",
        action="append",
        default=[],
        metavar="GLOB=LAYOUT",
        help="column layout of matching .bin/.xyz files (e.g. 'sunrgbd*=xyzrgb'); repeatable",
    )
    p.add_argument("--out", type=Path, default=Path("results/bench3d"), help="output folder")


def run(args: argparse.Namespace) -> int:
    from neuralcodec.bench.rd import write_atomic

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    if not args.dataset.is_dir():
        raise CodecError(f"no such dataset folder: {args.dataset}")
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    for n in names:
        if n != "draco":
            codec_class(n)
    try:
        qualities = [int(q) for q in args.qualities.split(",") if q.strip()]
    except ValueError:
        raise CodecError(f"bad --qualities {args.qualities!r}") from None
    layouts = []
    for spec in args.layout:
        if "=" not in spec:
            raise CodecError(f"--layout wants GLOB=LAYOUT, got {spec!r}")
        layouts.append(tuple(spec.split("=", 1)))
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for path, modality, data, normals in find_items(args.dataset, layouts):
        rel = str(path.relative_to(args.dataset))
        if data is None:
            print(f"skip {rel}: {normals}")
            continue
        rows = []
        for n in names:
            codec = _codec_for(n, modality)
            if codec is None:
                continue
            reason = codec_class(codec).unavailable_reason()
            if reason:
                print(f"skip {codec}: {reason}")
                continue
            for q in qualities:
                row = measure(codec, data, q, normals)
                rows.append(row)
                d1 = "inf" if row["d1_psnr"] is None else f"{row['d1_psnr']:.2f}"
                extra = (
                    f" same_triangles={row['same_triangles']}" if "same_triangles" in row else ""
                )
                print(
                    f"{rel} {codec} q={q} ({7 + q} bits): {row['bytes']} B, {row['rate']:.3f} "
                    f"bits/{'point' if modality == 'pointcloud' else 'vertex'}, D1 {d1} dB, "
                    f"enc {row['encode_s']:.3f} s, dec {row['decode_s']:.3f} s{extra}",
                    flush=True,
                )
        unit = "bits per point" if modality == "pointcloud" else "bits per vertex"
        results.append(
            {"file": rel, "modality": modality, "units": _units(data), "unit": unit, "rows": rows}
        )
        _plot(args.out / f"rd_{path.name}.png", rel, rows, unit)
    table, agg = bd_table(results)
    doc = {
        "command": "codec bench 3d "
        + " ".join(
            [
                f"--dataset {args.dataset}",
                f"--codecs {args.codecs}",
                f"--qualities {args.qualities}",
            ]
            + [f"--layout {s}" for s in args.layout]
        ),
        "peak": "bounding-box diagonal of the original",
        "geometry_only": True,
        "summary": agg,
        "files": results,
    }
    write_atomic(args.out / "results.json", json.dumps(doc, indent=1))
    write_atomic(args.out / "bdrate.md", table)
    print(table)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'bdrate.md'} and rd_*.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec bench 3d")
    add_arguments(p)
    return run(p.parse_args(argv))

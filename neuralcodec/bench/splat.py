"""``codec bench splat``: rate and rendered fidelity of splat codecs on a folder of scenes.

::

    for each scene (*.ply, *.splat in --dataset):
        reference = the input's own renders from --views orbit cameras (--size px, render.camera)
        for each codec (--codecs; .ncf codecs at every quality, file formats once):
            bytes (the whole .ncf file / the whole native file), encode and decode seconds
            renders of the decoded scene from the same cameras
            PSNR over the whole image, PSNR over covered pixels (where either render has
            accumulated opacity >= 1/255), SSIM (pytorch-msssim, 11-px Gaussian window)
            -- each the mean over the views
    -> results.json, rd.png (bytes/splat vs covered-pixel PSNR, one panel per scene), a table
       on stdout, and per scene the smallest splat-vq point at >= 40 dB covered-pixel PSNR
       against compressed.ply's bytes

``compare_levels`` is the small entry point for a demo: one scene at one level -> sizes,
metrics and the original and decoded renders from given orbit angles.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET_PSNR = 40.0
DEFAULT_CODECS = "splat-vq,compressed-ply,splat,raw"


# ----------------------------------------------------------------------------- metrics


def psnr(ref: np.ndarray, out: np.ndarray, mask: np.ndarray | None = None) -> float:
    from neuralcodec.bench.metrics import PSNR_CAP

    d = ref.astype(np.float64) - out.astype(np.float64)
    if mask is not None:
        if not mask.any():
            return PSNR_CAP
        d = d[mask]
    mse = float(np.mean(d * d))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


def ssim(ref: np.ndarray, out: np.ndarray) -> float:
    import torch
    from pytorch_msssim import ssim as _ssim

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()[None]

    return float(_ssim(t(ref), t(out), data_range=255, size_average=True))


class Views:
    """Orbit cameras of a scene and the input's own renders (uint8) and coverage."""

    def __init__(self, scene, count: int, size: int, azimuths: list[float] | None = None):
        from neuralcodec.render import SceneTensors, orbit_cameras, render_full, to_uint8

        self.cameras = orbit_cameras(scene.positions, count, size, azimuths_deg=azimuths)
        st = SceneTensors.of(scene)
        self.images, self.alphas = [], []
        for cam in self.cameras:
            r = render_full(st, cam)
            self.images.append(to_uint8(r.image))
            self.alphas.append(r.alpha.numpy())

    def score(self, scene) -> tuple[dict[str, float], list[np.ndarray]]:
        from neuralcodec.render import SceneTensors, render_full, to_uint8

        st = SceneTensors.of(scene)
        rows, images = [], []
        for cam, ref, ref_a in zip(self.cameras, self.images, self.alphas, strict=True):
            r = render_full(st, cam)
            img = to_uint8(r.image)
            covered = (ref_a >= 1 / 255) | (r.alpha.numpy() >= 1 / 255)
            rows.append((psnr(ref, img), psnr(ref, img, covered), ssim(ref, img)))
            images.append(img)
        m = np.mean(np.array(rows), axis=0)
        return {"psnr": float(m[0]), "psnr_covered": float(m[1]), "ssim": float(m[2])}, images


# ----------------------------------------------------------------------------- coding


def code_scene(
    scene, codec: str, quality: int, keep: list | None = None
) -> tuple[int, Any, float, float]:
    """(bytes, decoded scene, encode s, decode s) of one codec at one quality; ``keep`` (a list)
    receives the coded bytes."""
    from neuralcodec import api
    from neuralcodec.codecs.base import get_codec

    c = get_codec(codec)
    if c.modality != "splat":
        raise ValueError(f"{codec} is a {c.modality} codec, not a splat one")
    if c.writes_ncf:
        t = time.perf_counter()
        data, _ = api.encode_with_report(scene, codec, quality, modality="splat")
        enc = time.perf_counter() - t
        if keep is not None:
            keep.append(data)
        t = time.perf_counter()
        decoded, _ = api.decode_bytes(data)
        return len(data), decoded, enc, time.perf_counter() - t
    t = time.perf_counter()
    data = c.compress(scene, quality)
    enc = time.perf_counter() - t
    t = time.perf_counter()
    decoded = c.decompress(data)
    return len(data), decoded, enc, time.perf_counter() - t


def compare_levels(
    scene_or_path,
    quality: int,
    azimuths: list[float] = (0.0, 90.0, 180.0, 270.0),
    size: int = 256,
    codec: str = "splat-vq",
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Encode one scene at ``quality`` and render the original and the decoded scene from the
    orbit at ``azimuths`` (degrees): sizes, metrics, renders (uint8 HxWx3 lists). ``out_dir``:
    also write the ``.ncf`` and the decoded scene (INRIA ``.ply``) there ("ncf_path",
    "decoded_path")."""
    from neuralcodec.codecs.base import get_codec
    from neuralcodec.datasets.splat import read_splat

    scene = scene_or_path
    if isinstance(scene, (str, os.PathLike)):
        scene = read_splat(scene)
    n = len(scene)
    kept: list[bytes] = []
    nbytes, decoded, enc, dec = code_scene(scene, codec, quality, kept)
    files: dict[str, Path] = {}
    if out_dir is not None and kept:
        from neuralcodec.datasets.paths import write_bytes_atomic
        from neuralcodec.datasets.splat import write_inria

        files["ncf_path"] = write_bytes_atomic(Path(out_dir) / "scene.ncf", kept[0], force=True)
        path = Path(out_dir) / "scene-decoded.ply"
        files["decoded_path"] = write_inria(path, decoded, force=True)
    ref_bytes = len(get_codec("compressed-ply").compress(scene, 1))
    views = Views(scene, len(azimuths), size, list(azimuths))
    metrics, images = views.score(decoded)
    return {
        "codec": codec,
        "quality": quality,
        "splats": n,
        "splats_decoded": len(decoded),
        "bytes": nbytes,
        "bytes_per_splat": nbytes / n,
        "compressed_ply_bytes": ref_bytes,
        "ratio_to_compressed_ply": nbytes / ref_bytes,
        "encode_s": enc,
        "decode_s": dec,
        **metrics,
        "original": views.images,
        "decoded": images,
        **files,
    }


# ----------------------------------------------------------------------------- the benchmark


def scene_files(dataset: Path) -> list[Path]:
    files = sorted(p for p in dataset.iterdir() if p.suffix.lower() in (".ply", ".splat"))
    if not files:
        raise FileNotFoundError(f"{dataset}: no .ply or .splat scenes")
    return files


def bench_scene(path: Path, codecs: list[str], qualities: dict, views: int, size: int, log=print):
    from neuralcodec.codecs.base import codec_class
    from neuralcodec.datasets.splat import read_splat

    scene = read_splat(path)
    t = time.perf_counter()
    ref = Views(scene, views, size)
    log(f"{path.name}: {len(scene)} splats, SH {scene.sh_degree}, {views} views "
        f"rendered in {time.perf_counter() - t:.1f} s")  # fmt: skip
    points = []
    for name in codecs:
        cls = codec_class(name)
        for q in qualities.get(name) or cls.qualities_to_bench():
            nbytes, decoded, enc, dec = code_scene(scene, name, q)
            m, _ = ref.score(decoded)
            row = {"codec": name, "quality": q, "bytes": nbytes, "bytes_per_splat": nbytes / len(scene),
                   "splats_decoded": len(decoded), "sh_degree_decoded": decoded.sh_degree,
                   "encode_s": enc, "decode_s": dec, **m}  # fmt: skip
            points.append(row)
            log(f"  {name:15s} q={q}  {row['bytes_per_splat']:7.3f} B/splat  "
                f"PSNR {m['psnr']:6.2f}  covered {m['psnr_covered']:6.2f}  SSIM {m['ssim']:.4f}  "
                f"enc {enc:6.2f} s  dec {dec:5.2f} s")  # fmt: skip
    return {"scene": path.name, "splats": len(scene), "sh_degree": scene.sh_degree,
            "points": points, "target": target_summary(points)}  # fmt: skip


def target_summary(points: list[dict], ours: str = "splat-vq") -> dict | None:
    """The smallest ``ours`` point at >= TARGET_PSNR covered-pixel PSNR, against compressed.ply."""
    ref = [p for p in points if p["codec"] == "compressed-ply"]
    good = [p for p in points if p["codec"] == ours and p["psnr_covered"] >= TARGET_PSNR]
    if not ref or not good:
        return None
    best = min(good, key=lambda p: p["bytes"])
    out = {"quality": best["quality"], "bytes": best["bytes"],
           "psnr_covered": best["psnr_covered"], "compressed_ply_bytes": ref[0]["bytes"],
           "ratio": best["bytes"] / ref[0]["bytes"]}  # fmt: skip
    # the curve at exactly the target: linear in bytes between the next points below and above
    below = [p for p in points if p["codec"] == ours and p["psnr_covered"] < TARGET_PSNR
             and p["bytes"] < best["bytes"]]  # fmt: skip
    if below:
        lo = max(below, key=lambda p: p["psnr_covered"])
        f = (TARGET_PSNR - lo["psnr_covered"]) / (best["psnr_covered"] - lo["psnr_covered"])
        out["ratio_at_target"] = (lo["bytes"] + f * (best["bytes"] - lo["bytes"])) / ref[0]["bytes"]
    return out


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(6.0 * len(results), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for i, res in enumerate(results):
        ax = fig.add_subplot(1, len(results), i + 1)
        for name in dict.fromkeys(p["codec"] for p in res["points"]):
            pts = sorted((p for p in res["points"] if p["codec"] == name), key=lambda p: p["bytes"])
            x = [p["bytes_per_splat"] for p in pts]
            y = [min(p["psnr_covered"], 70.0) for p in pts]
            ax.plot(x, y, "o-" if len(pts) > 1 else "s", label=name)
        ax.axhline(TARGET_PSNR, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks([t for t in (1, 2, 3, 5, 10, 20, 30, 50, 100)
                       if min(x for x in ax.get_xlim()) <= t <= max(ax.get_xlim())])  # fmt: skip
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("bytes per splat (log)")
        ax.set_ylabel("covered-pixel PSNR (dB, capped at 70)")
        ax.set_title(f"{res['scene']} ({res['splats']} splats)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def table(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines.append(f"\n{res['scene']} ({res['splats']} splats, SH {res['sh_degree']})")
        lines.append(
            "| codec | q | bytes | B/splat | splats out | PSNR | covered PSNR | SSIM | enc s | dec s |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for p in res["points"]:
            lines.append(
                f"| {p['codec']} | {p['quality']} | {p['bytes']} | {p['bytes_per_splat']:.3f} | "
                f"{p['splats_decoded']} | {p['psnr']:.2f} | {p['psnr_covered']:.2f} | "
                f"{p['ssim']:.4f} | {p['encode_s']:.2f} | {p['decode_s']:.2f} |"
            )
        t = res["target"]
        if t:
            lines.append(f"smallest splat-vq at >= {TARGET_PSNR:.0f} dB covered: q={t['quality']}, "
                         f"{t['bytes']} B = {t['ratio']:.3f} x compressed.ply ({t['compressed_ply_bytes']} B)")  # fmt: skip
            if "ratio_at_target" in t:
                lines.append(f"the curve at {TARGET_PSNR:.0f} dB: {t['ratio_at_target']:.3f} x")
        else:
            lines.append(f"no splat-vq point reached {TARGET_PSNR:.0f} dB covered-pixel PSNR")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", type=Path, default=None,
                   help="folder of scenes (default: <data root>/3d/gaussian_splats)")  # fmt: skip
    p.add_argument("--codecs", default=DEFAULT_CODECS, help=f"default: {DEFAULT_CODECS}")
    p.add_argument("--qualities", default=None, help="qualities of the .ncf codecs, e.g. 2,4,6,8")
    p.add_argument("--views", type=int, default=16, help="orbit views per scene")
    p.add_argument("--size", type=int, default=512, help="render size in pixels")
    p.add_argument("--out", type=Path, default=Path("results/splat"), help="output folder")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")


def run(args: argparse.Namespace) -> int:
    import torch

    from neuralcodec.codecs.base import codec_class

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = args.dataset
    if dataset is None:
        from neuralcodec.datasets.paths import data_root

        dataset = Path(data_root()) / "3d" / "gaussian_splats"
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    qualities: dict[str, list[int]] = {}
    for c in codecs:
        cls = codec_class(c)
        if cls.modality != "splat":
            raise ValueError(f"{c} is a {cls.modality} codec, not a splat one")
        if args.qualities and cls.writes_ncf:
            qualities[c] = [cls().check_quality(int(q)) for q in args.qualities.split(",")]
    if args.views < 1 or args.size < 16:
        raise ValueError("need --views >= 1 and --size >= 16")
    args.out.mkdir(parents=True, exist_ok=True)
    results = [
        bench_scene(f, codecs, qualities, args.views, args.size) for f in scene_files(dataset)
    ]
    meta = {"command": "codec bench splat", "views": args.views, "size": args.size,
            "threads": torch.get_num_threads(), "dataset": str(dataset)}  # fmt: skip
    (args.out / "results.json").write_text(
        json.dumps({"settings": meta, "scenes": results}, indent=1)
    )
    plot(results, args.out / "rd.png")
    print(table(results))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'rd.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec bench splat", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))

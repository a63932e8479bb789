"""``codec bench video``: rate-distortion and speed of video codecs on short sequences.

::

    --dataset PATH[,PATH]  each a video file (.y4m, .mp4, ...), a folder of image frames, or a
                           folder holding such sequences; the first --frames frames of each
    --codecs elic-ip,x264,x265
        .ncf video codecs: api.encode_with_report (container included) -> api.decode_bytes
        x264 / x265:       PyAV, raw Annex-B stream (no container), preset medium, constant
                           rate factor per point, intra period --gop (scenecut off);
                           x264 tune=psnr; x265 psy-rd=0:psy-rdoq=0:aq-mode=0
    --scenecut             every codec also starts an intra period at scene cuts (x264 / x265
                           scenecut=40, elic-ip its own detector); without it none does
    per (sequence, codec, point): bytes, bpp, kbps, PSNR of each 4:2:0 plane and
        PSNR-YUV = (6 PSNR-Y + PSNR-U + PSNR-V) / 8 (each the mean over frames), encode and
        decode frames per second
    --> results.json, rd_<sequence>.png, bdrate.md (every codec against every anchor)

Frame rates are measured on this process's threads (``--threads``, default 2); PyAV's
encoders use the same thread count.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec.bench import bdrate, plots
from neuralcodec.bench.reference import RDCurve
from neuralcodec.codecs.base import CodecError
from neuralcodec.datasets.video import VideoSource, read_video

ANCHORS = {
    "x264": ("libx264", "h264", (20, 24, 28, 32, 36, 40)),
    "x265": ("libx265", "hevc", (22, 26, 30, 34, 38, 42)),
}
SEQUENCE_EXTENSIONS = (".y4m", ".yuv", ".mp4", ".mkv", ".mov", ".264", ".h264", ".265", ".hevc")
RESULTS_FORMAT = "neuralcodec-video/1"


def plane_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def frame_psnr(orig, dec) -> tuple[float, float, float]:
    return tuple(plane_psnr(a, b) for a, b in zip(orig, dec, strict=True))  # type: ignore[return-value]


def summarise(orig: list, dec: list, nbytes: int, fps: float, enc_s: float, dec_s: float) -> dict:
    """One RD point: rate and the mean per-frame PSNR of each plane, weighted 6:1:1."""
    p = np.array([frame_psnr(o, d) for o, d in zip(orig, dec, strict=True)])
    y, u, v = (float(x) for x in p.mean(axis=0))
    n = len(orig)
    h, w = orig[0][0].shape
    return {
        "bytes": nbytes,
        "bpp": 8.0 * nbytes / (n * h * w),
        "kbps": 8.0 * nbytes * fps / n / 1000.0,
        "psnr": (6 * y + u + v) / 8,
        "psnr_y": y,
        "psnr_u": u,
        "psnr_v": v,
        "encode_fps": n / enc_s,
        "decode_fps": n / dec_s,
        "frames": n,
    }


# ----------------------------------------------------------------------------- anchors


def anchor_code(
    name: str,
    frames: list,
    info,
    crf: int,
    gop: int,
    threads: int,
    extra: str = "",
    scenecut: bool = False,
):
    """Encode ``frames`` with x264/x265 through PyAV; (bytes, decoded frames, enc s, dec s).
    ``extra``: more ``:key=value`` encoder parameters (e.g. ``":bframes=0"``)."""
    import av

    from neuralcodec.datasets.video_av import _planes

    encoder, fmt, _ = ANCHORS[name]
    # scene cuts: an IDR frame where the encoder sees one, as elic-ip starts a period there
    cuts = "min-keyint=1:scenecut=40" if scenecut else f"min-keyint={gop}:scenecut=0"
    buf = io.BytesIO()
    start = time.perf_counter()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(encoder, rate=info.fps)
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, "yuv420p"
        stream.thread_count = threads
        if name == "x264":
            stream.options = {
                "preset": "medium",
                "tune": "psnr",
                "crf": str(crf),
                "x264-params": f"keyint={gop}:{cuts}{extra}",
            }
        else:
            params = f"keyint={gop}:{cuts}:psy-rd=0:psy-rdoq=0:aq-mode=0:log-level=error{extra}"
            stream.options = {"preset": "medium", "crf": str(crf), "x265-params": params}
        for i, planes in enumerate(frames):
            f = av.VideoFrame(info.width, info.height, "yuv420p")
            for plane, arr in zip(f.planes, planes, strict=True):
                rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
                rows[: arr.shape[0], : arr.shape[1]] = arr
            f.pts = i
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    enc_s = time.perf_counter() - start
    data = buf.getvalue()
    start = time.perf_counter()
    decoded = []
    with av.open(io.BytesIO(data), "r", format=fmt) as inp:
        inp.streams.video[0].thread_count = threads
        for frame in inp.decode(video=0):
            decoded.append(_planes(frame))
    dec_s = time.perf_counter() - start
    if len(decoded) != len(frames):
        raise CodecError(f"{name}: decoded {len(decoded)} of {len(frames)} frames")
    return len(data), decoded, enc_s, dec_s


# ----------------------------------------------------------------------------- ours


def ours_code(name: str, source: VideoSource, quality: int, gop: int, scenecut: bool = False):
    from neuralcodec import api

    start = time.perf_counter()
    options = {"gop": gop, "scenecut": scenecut}
    data, _ = api.encode_with_report(source, name, quality, options, modality="video")
    enc_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = list(api.decode_bytes(data)[0])
    dec_s = time.perf_counter() - start
    return len(data), decoded, enc_s, dec_s


# ----------------------------------------------------------------------------- driver


def sequences(paths: list[Path]) -> list[Path]:
    out = []
    for p in paths:
        if not p.exists():
            raise CodecError(f"no such dataset: {p}")
        if p.is_file():
            out.append(p)
            continue
        subs = sorted(
            q
            for q in p.iterdir()
            if q.suffix.lower() in SEQUENCE_EXTENSIONS or (q.is_dir() and any(q.iterdir()))
        )
        has_images = any(q.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp") for q in p.iterdir())
        out.extend([p] if has_images or not subs else subs)
    return out


def _label(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def run_sequence(
    path: Path,
    codecs: list[str],
    qualities: list[int] | None,
    frames: int,
    gop: int,
    threads: int,
    log,
    scenecut: bool = False,
) -> dict[str, list[dict]]:
    source = read_video(path, max_frames=frames)
    orig = list(source)
    fps = float(source.info.fps)
    result: dict[str, list[dict]] = {}
    for name in codecs:
        points = []
        if name in ANCHORS:
            for crf in ANCHORS[name][2]:
                nbytes, dec, es, ds = anchor_code(
                    name, orig, source.info, crf, gop, threads, scenecut=scenecut
                )
                points.append({"crf": crf, **summarise(orig, dec, nbytes, fps, es, ds)})
                log(
                    f"  {_label(path)} {name} crf {crf}: {points[-1]['bpp']:.4f} bpp {points[-1]['psnr']:.2f} dB"
                )
        else:
            from neuralcodec.codecs.base import codec_class

            cls = codec_class(name)
            if cls.modality != "video":
                raise CodecError(f"{name} is not a video codec")
            lo, hi = cls.quality_range
            for q in qualities or list(range(lo, hi + 1)):
                nbytes, dec, es, ds = ours_code(name, source, q, gop, scenecut)
                points.append({"quality": q, **summarise(orig, dec, nbytes, fps, es, ds)})
                p = points[-1]
                log(
                    f"  {_label(path)} {name} q{q}: {p['bpp']:.4f} bpp {p['psnr']:.2f} dB "
                    f"enc {p['encode_fps']:.2f} fps dec {p['decode_fps']:.2f} fps"
                )
        result[name] = points
    return result


def _curve(name: str, points: list[dict]) -> RDCurve:
    return RDCurve.from_points(name, name, [{"bpp": p["bpp"], "psnr": p["psnr"]} for p in points])


def write_reports(results: dict, out: Path, anchors: list[str]) -> str:
    lines = ["# Video BD-rate (PSNR-YUV (6 Y + U + V) / 8, mean over frames)", ""]
    for seq, by_codec in results["sequences"].items():
        curves = [_curve(n, pts) for n, pts in by_codec.items()]
        style = plots.PlotStyle(min_xmax=0.0)
        n = next(iter(by_codec.values()))[0]["frames"]
        title = f"{seq}: {n} frames, intra period {results['gop']}"
        plots.plot_rd(curves, "psnr", out / f"rd_{seq}.png", title, style, "PSNR-YUV 6:1:1 (dB)")
        anchor_curves = [c for c in curves if c.key in anchors]
        tested = [c for c in curves if c.key not in anchors]
        lines.append(f"## {seq}")
        lines.append("")
        lines.append(
            "| codec | "
            + " | ".join(f"BD-rate vs {a.key} (%)" for a in anchor_curves)
            + " | enc fps | dec fps |"
        )
        lines.append("|---|" + "---|" * (len(anchor_curves) + 2))
        for c in tested + anchor_curves:
            cells = []
            for a in anchor_curves:
                v = (
                    None
                    if a is c
                    else bdrate.try_bd(bdrate.bd_rate, (a.bpp, a.psnr), (c.bpp, c.psnr))
                )
                cells.append("-" if v is None else f"{v:+.1f}")
            pts = by_codec[c.key]
            ef = np.mean([p["encode_fps"] for p in pts])
            df = np.mean([p["decode_fps"] for p in pts])
            lines.append(f"| {c.key} | " + " | ".join(cells) + f" | {ef:.2f} | {df:.2f} |")
        lines.append("")
    text = "\n".join(lines)
    (out / "bdrate.md").write_text(text + "\n")
    return text


def report_only(out: Path) -> int:
    """Rewrite the plots and tables of an existing ``results.json``."""
    results = json.loads((out / "results.json").read_text())
    anchors = sorted({n for seq in results["sequences"].values() for n in seq if n in ANCHORS})
    print(write_reports(results, out, anchors))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="video files / frame folders, comma-separated")
    p.add_argument("--codecs", default="elic-ip,x264,x265")
    p.add_argument("--qualities", default=None, help="qualities of the .ncf codecs (default: all)")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--gop", type=int, default=32, help="intra period of every codec")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/video"))
    p.add_argument(
        "--scenecut",
        action="store_true",
        help="every codec also starts an intra period at scene cuts (default: none does)",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else None
    if args.frames < 1 or args.gop < 1:
        raise CodecError("--frames and --gop must be at least 1")
    paths = sequences([Path(p) for p in args.dataset.split(",")])
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "frames": args.frames,
        "gop": args.gop,
        "scenecut": args.scenecut,
        "threads": args.threads,
        "metric": "PSNR-YUV = (6 Y + U + V) / 8 of per-plane PSNR averaged over frames",
        "sequences": {},
    }
    for path in paths:
        print(f"{_label(path)}", flush=True)
        results["sequences"][_label(path)] = run_sequence(
            path,
            codecs,
            qualities,
            args.frames,
            args.gop,
            args.threads,
            lambda m: print(m, flush=True),
            args.scenecut,
        )
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(write_reports(results, args.out, [c for c in codecs if c in ANCHORS]))
    return 0

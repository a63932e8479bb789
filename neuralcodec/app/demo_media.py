"""The demo's Video and 3D tabs: the work (plain functions, testable without a browser) and the
Gradio layout.

::

    Video  clip (y4m / mp4 / ...) --run_video--> elic-ip .ncf + H.264 previews of the original
           and the decoded clip, bpp / PSNR / fps, and x265 at the closest size
    3D     point cloud / mesh --run_geometry--> octree / meshtrav .ncf + decoded .ply (viewer),
                                               views of original and decoded from four orbit
                                               angles (render/geometry.py), sizes and D1 PSNR
           splat scene       --run_splat-----> splat-vq .ncf, renders of original and decoded
                                               from four orbit angles, sizes and PSNR

Inputs are capped (frames, frame size, file size); every user error is one line in the page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..codecs.base import CodecError

MAX_FRAMES = 16
MAX_VIDEO_PIXELS = 1280 * 720
MAX_3D_BYTES = 64 * 1024 * 1024
SPLAT_SUFFIXES = (".splat",)


@dataclass
class MediaResult:
    summary: str  # markdown
    ncf: Path | None = None
    original: Any = None  # video path / 3D model path / image
    decoded: Any = None
    decoded_file: Path | None = None  # a decoded file to download, when ``decoded`` is a render
    viewer: Path | None = None  # a model file for the 3D viewer (point clouds and meshes)


def _check_file(path: str | os.PathLike[str] | None, max_bytes: int) -> Path:
    if not path:
        raise CodecError("upload a file first")
    p = Path(path)
    if not p.is_file():
        raise CodecError(f"{p.name}: no such file")
    if p.stat().st_size > max_bytes:
        raise CodecError(f"{p.name}: larger than the demo's {max_bytes // 2**20} MB limit")
    return p


# ----------------------------------------------------------------------------- video


def run_video(
    path: str | os.PathLike[str] | None, quality: int, frames: int, out_dir: Path
) -> MediaResult:
    """Code the first ``frames`` frames (at most MAX_FRAMES) with the default video codec."""
    from .. import api
    from ..datasets.video import frames_source, write_video

    src = _check_file(path, MAX_3D_BYTES)
    frames = max(1, min(int(frames), MAX_FRAMES))
    adapter = api.modality_adapter("video")
    source = adapter.read(src, max_frames=frames)
    info = source.info
    if info.width * info.height > MAX_VIDEO_PIXELS:
        raise CodecError(f"{src.name}: {info.width}x{info.height} is above the demo's 1280x720")
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = list(source)
    original = out_dir / f"{src.stem}.original.mp4"
    write_video(original, frames_source(info, iter(clip)), force=True)
    decoded = out_dir / f"{src.stem}.q{quality}.decoded.mp4"
    point = api.encode_video_clip(src, int(quality), decoded, frames=frames, gop=frames, force=True)
    ncf = out_dir / f"{src.stem}.q{quality}.ncf"
    ncf.write_bytes(point["ncf"])
    lines = [
        f"**{point['codec']}** q{point['quality']}: {point['frames']} frames, "
        f"{point['bytes']:,} bytes, **{point['bpp']:.4f} bpp**, "
        f"**PSNR {point['psnr']:.2f} dB** (Y {point['psnr_y']:.2f}, U {point['psnr_u']:.2f}, "
        f"V {point['psnr_v']:.2f}; weighted 6:1:1), encode {point['encode_fps']:.2f} fps, "
        f"decode {point['decode_fps']:.2f} fps",
    ]
    x265 = x265_closest(clip, info, point["bytes"])
    if x265:
        lines.append(
            f"x265 (medium, PSNR tuning) at the closest size, crf {x265['crf']}: "
            f"{x265['bytes']:,} bytes, {x265['bpp']:.4f} bpp, PSNR {x265['psnr']:.2f} dB"
        )
    return MediaResult("\n\n".join(lines), ncf, str(original), str(decoded))


def x265_closest(clip: list, info: Any, target_bytes: int) -> dict | None:
    """x265 at the CRF (of a coarse ladder) whose size is closest to ``target_bytes``; None when
    PyAV has no x265 here. Both sides start an intra period at scene cuts (``elic-ip`` does by
    default)."""
    from ..bench.video import anchor_code, summarise

    best = None
    for crf in (22, 27, 32, 37, 42, 47):
        try:
            nbytes, dec, enc_s, dec_s = anchor_code(
                "x265", clip, info, crf, len(clip), 1, scenecut=True
            )
        except Exception:  # noqa: BLE001 - the anchor is an extra; without x265 it is left out
            return None
        point = {**summarise(clip, dec, nbytes, float(info.fps), enc_s, dec_s), "crf": crf}
        if best is None or abs(nbytes - target_bytes) < abs(best["bytes"] - target_bytes):
            best = point
        if nbytes < target_bytes:  # sizes fall with the CRF: the rest are further away
            break
    return best


# ----------------------------------------------------------------------------- 3D


def run_3d(path: str | os.PathLike[str] | None, quality: int, out_dir: Path) -> MediaResult:
    """A point cloud or mesh through octree / meshtrav, or a splat scene through splat-vq."""
    from ..datasets.splat import is_splat_ply

    src = _check_file(path, MAX_3D_BYTES)
    if src.suffix.lower() in SPLAT_SUFFIXES or (src.suffix.lower() == ".ply" and is_splat_ply(src)):
        return run_splat(src, quality, out_dir)
    return run_geometry(src, quality, out_dir)


def run_geometry(src: Path, quality: int, out_dir: Path) -> MediaResult:
    from ..bench.geometry3d import encode_geometry_file

    r = encode_geometry_file(src, int(quality), out_dir)
    summary = (
        f"{r['original_bytes']:,} bytes -> **{r['bytes']:,} bytes** "
        f"({r['rate']:.3f} {r['rate_unit']}, {r['bits']} bits per axis), "
        f"**D1 PSNR {r['d1_psnr']:.2f} dB** (peak: bounding-box diagonal), "
        f"encode {r['encode_s']:.2f} s, decode {r['decode_s']:.2f} s"
    )
    from ..render.geometry import orbit_views

    left, right = orbit_views(r["data"], r["decoded_data"])
    decoded_path = Path(r["decoded"])
    return MediaResult(summary, Path(r["ncf"]), left, right, decoded_path, decoded_path)


def run_splat(src: Path, quality: int, out_dir: Path) -> MediaResult:
    from ..bench.splat import compare_levels

    r = compare_levels(
        str(src), int(quality), azimuths=(0.0, 90.0, 180.0, 270.0), size=256, out_dir=out_dir
    )
    original = np.concatenate(r["original"], axis=1)
    decoded = np.concatenate(r["decoded"], axis=1)
    summary = (
        f"**{r['codec']}** level {r['quality']}: {r['splats']:,} splats -> {r['splats_decoded']:,}, "
        f"**{r['bytes']:,} bytes** ({r['bytes_per_splat']:.2f} bytes/splat, "
        f"{r['ratio_to_compressed_ply']:.3f}x PlayCanvas compressed.ply), "
        f"**covered-pixel PSNR {r['psnr_covered']:.2f} dB**, PSNR {r['psnr']:.2f} dB, "
        f"SSIM {r['ssim']:.4f} against the original's renders (4 orbit views, 256 px); "
        f"encode {r['encode_s']:.2f} s, decode {r['decode_s']:.2f} s"
    )
    return MediaResult(summary, r.get("ncf_path"), original, decoded, r.get("decoded_path"))


# ----------------------------------------------------------------------------- Gradio


def video_tab(gr: Any, new_dir, user_errors) -> None:
    """Upload a clip, pick a quality, play the original and the decoded clip side by side."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(
                label="Video clip (.y4m, .mp4, .mkv, ...)",
                file_types=[".y4m", ".mp4", ".mkv", ".mov", ".avi", ".webm"],
                elem_id="video-upload",
            )
            quality = gr.Slider(1, 8, value=4, step=1, label="Quality")
            frames = gr.Slider(1, MAX_FRAMES, value=8, step=1, label="Frames (from the start)")
            run = gr.Button("Compress video", variant="primary", elem_id="video-button")
            ncf = gr.File(label="Download the .ncf file", interactive=False)
        with gr.Column(scale=2):
            summary = gr.Markdown("Upload a short clip and press **Compress video**.",
                                  elem_id="video-summary")  # fmt: skip
            with gr.Row():
                original = gr.Video(label="Original (H.264 preview)", interactive=False)
                decoded = gr.Video(label="Decoded (H.264 preview)", interactive=False)

    def compress(path, q, n):
        with user_errors():
            r = run_video(path, int(q), int(n), new_dir())
            return r.summary, str(r.ncf), r.original, r.decoded
        return "", None, None, None

    run.click(compress, [upload, quality, frames], [summary, ncf, original, decoded],
              api_name="compress_video")  # fmt: skip


def three_d_tab(gr: Any, new_dir, user_errors) -> None:
    """Upload a point cloud, mesh or splat scene; compress it; compare original and decoded."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(
                label="Point cloud, mesh or Gaussian splats (.ply, .pcd, .xyz, .bin, .obj, .splat)",
                file_types=[".ply", ".pcd", ".xyz", ".bin", ".obj", ".splat"],
                elem_id="three-d-upload",
            )
            quality = gr.Slider(1, 8, value=4, step=1, label="Quality / level")
            run = gr.Button("Compress 3D", variant="primary", elem_id="three-d-button")
            ncf = gr.File(
                label="Download (.ncf, decoded .ply)",
                interactive=False,
                file_count="multiple",
                elem_id="three-d-downloads",
            )
        with gr.Column(scale=2):
            summary = gr.Markdown(
                "Upload a file and press **Compress 3D**.", elem_id="three-d-summary"
            )
            original = gr.Image(label="Original, 4 orbit views", interactive=False)
            decoded = gr.Image(label="Decoded, same views", interactive=False)
            model = gr.Model3D(label="Decoded point cloud / mesh (3D viewer)", interactive=False)

    def compress(path, q):
        with user_errors():
            r = run_3d(path, int(q), new_dir())
            files = [str(p) for p in (r.ncf, r.decoded_file) if p is not None]
            viewer = str(r.viewer) if r.viewer else None
            return r.summary, files or None, viewer, r.original, r.decoded
        return "", None, None, None, None

    run.click(compress, [upload, quality], [summary, ncf, model, original, decoded],
              api_name="compress_3d")  # fmt: skip

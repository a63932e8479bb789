"""What the web demo computes, with no web framework in sight (``demo.py`` draws it).

Compress::

    upload --check_upload (size cap)--> image adapter read (pixel cap) --> array (any layout)
      |-- api.encode_with_report(codec, quality | bisected to a target bpp) --> .ncf bytes
      |       --api.decode_bytes--> reconstruction --> bpp (real file size), PSNR, MS-SSIM, times
      '-- rgb8 --JPEG / WebP / AVIF, quality bisected to the bpp closest to ours--> same metrics

Decompress::

    .ncf --api.file_info (header, CRC, weights) --api.decode_bytes--> array --encode_png--> PNG

Benchmarks::

    results/<dataset>/{rd_psnr.png, rd_msssim.png, bdrate.md}  (``codec bench rd --out``)

Metrics are those of the benchmarks (``neuralcodec.bench.metrics``): PSNR and MS-SSIM on 8-bit
RGB; for gray, alpha or 16-bit inputs they are measured on the RGB the codec actually sees.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec import api
from neuralcodec.bench.metrics import ms_ssim_rgb, psnr_rgb
from neuralcodec.codecs.base import CodecError, codec_class, get_codec, ranked_names
from neuralcodec.modalities.base import adapter_for
from neuralcodec.modalities.image import prepare_image

ANCHOR_CODECS = ("jpeg", "webp", "avif")
RESULT_FILES = ("rd_psnr.png", "rd_msssim.png", "bdrate.md")
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class DemoLimits:
    """What the demo accepts: upload size and decoded image size."""

    max_upload_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 50_000_000

    @property
    def max_upload_mb(self) -> int:
        return self.max_upload_bytes // (1024 * 1024)


@dataclass
class Trial:
    """One coding of the image at one quality: the bytes and what they cost."""

    codec: str
    quality: int
    data: bytes
    bpp: float
    enc_s: float


@dataclass
class CodedImage:
    """A reconstruction and its rate-distortion numbers."""

    codec: str
    quality: int
    n_bytes: int
    bpp: float
    psnr: float
    ms_ssim: float | None
    enc_s: float
    dec_s: float
    image: np.ndarray  # HxWx3 uint8


@dataclass
class CompressResult:
    original: np.ndarray  # HxWx3 uint8, what the metrics compare against
    ours: CodedImage
    ncf: bytes
    anchors: list[CodedImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _quiet(fraction: float, message: str) -> None:
    """A progress callback that reports nowhere."""


# ----------------------------------------------------------------------------- inputs


def check_upload(path: str | os.PathLike[str] | None, limits: DemoLimits, what: str) -> Path:
    """The uploaded file as a Path, or ``ValueError`` when missing or over the size limit."""
    if path is None:
        raise ValueError(f"upload {what} first")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"the uploaded {what} is gone; upload it again")
    size = p.stat().st_size
    if size > limits.max_upload_bytes:
        raise ValueError(
            f"the {what} is {size / 2**20:.1f} MB; this demo accepts at most "
            f"{limits.max_upload_mb} MB"
        )
    return p


def load_image(path: str | os.PathLike[str] | None, limits: DemoLimits) -> np.ndarray:
    """Read an uploaded image within the limits (``ValueError`` with a readable message)."""
    p = check_upload(path, limits, "an image")
    return adapter_for("image").read(p, max_pixels=limits.max_pixels)


def rgb8(array: np.ndarray) -> np.ndarray:
    """The HxWx3 uint8 RGB an image codec sees for ``array`` (the image adapter's policy)."""
    return prepare_image(array).rgb


def slow_reason(name: str) -> str | None:
    """Why one encode with ``name`` takes minutes (it optimises a model for every image), or
    None; the demo says so and codes such codecs at one chosen quality only (no bpp search)."""
    return codec_class(name).slow_reason


def ncf_codecs() -> list[str]:
    """Image codecs that write ``.ncf`` files and can run here: by rank, slow ones last."""
    names = [n for n in ranked_names("image") if api.weights_available(n)]
    return sorted(names, key=lambda n: slow_reason(n) is not None)


def codec_label(name: str) -> str:
    desc = codec_class(name).description
    label = f"{name} — {desc}" if desc else name
    slow = slow_reason(name)
    return f"{label} (slow: {slow})" if slow else label


def quality_range(name: str) -> tuple[int, int]:
    lo, hi = codec_class(name).quality_range
    return int(lo), int(hi)


def anchor_status() -> dict[str, str | None]:
    """For each comparison codec: ``None`` when usable here, else why not."""
    out: dict[str, str | None] = {}
    for name in ANCHOR_CODECS:
        try:
            cls = codec_class(name)
        except CodecError as exc:
            out[name] = str(exc)
            continue
        out[name] = cls.unavailable_reason()
    return out


# ----------------------------------------------------------------------------- rate search


def closest_trial(trial_at: Callable[[int], Trial], lo: int, hi: int, target_bpp: float) -> Trial:
    """Bisect the integer qualities ``lo..hi`` for the trial whose bpp is closest to the target.

    Assumes the rate grows with quality; where it does not, the answer is still the closest of
    the qualities tried. Each quality is coded at most once.
    """
    tried: dict[int, Trial] = {}

    def at(q: int) -> Trial:
        if q not in tried:
            tried[q] = trial_at(q)
        return tried[q]

    if at(lo).bpp < target_bpp < at(hi).bpp:
        a, b = lo, hi  # bpp(a) < target <= bpp(b)
        while b - a > 1:
            m = (a + b) // 2
            if at(m).bpp >= target_bpp:
                b = m
            else:
                a = m
    return min(tried.values(), key=lambda t: (abs(t.bpp - target_bpp), t.quality))


def ncf_trial(array: np.ndarray, codec: str, quality: int) -> Trial:
    start = time.perf_counter()
    data, report = api.encode_with_report(array, codec, quality)
    return Trial(codec, quality, data, report.bpp, time.perf_counter() - start)


def anchor_trial(rgb: np.ndarray, codec: str, quality: int) -> Trial:
    coder = get_codec(codec)
    start = time.perf_counter()
    data = coder.compress(rgb, quality)
    seconds = time.perf_counter() - start
    return Trial(codec, quality, data, 8.0 * len(data) / (rgb.shape[0] * rgb.shape[1]), seconds)


# ----------------------------------------------------------------------------- compress


def measure(reference: np.ndarray, trial: Trial, decoded: np.ndarray, dec_s: float) -> CodedImage:
    out = rgb8(decoded)
    return CodedImage(
        trial.codec,
        trial.quality,
        len(trial.data),
        trial.bpp,
        psnr_rgb(reference, out),
        ms_ssim_rgb(reference, out),
        trial.enc_s,
        dec_s,
        out,
    )


def code_ours(
    array: np.ndarray, codec: str, quality: int | None, target_bpp: float | None
) -> tuple[Trial, CodedImage, list[str]]:
    """Encode with our codec at ``quality`` (or the quality closest to ``target_bpp``), decode."""
    lo, hi = quality_range(codec)
    if target_bpp is not None:
        if not target_bpp > 0:
            raise ValueError(f"the target bpp must be positive, got {target_bpp}")
        slow = slow_reason(codec)
        if slow:
            raise ValueError(f"{codec} {slow}; choose a quality level instead of a target bpp")
        trial = closest_trial(lambda q: ncf_trial(array, codec, q), lo, hi, target_bpp)
    else:
        if quality is None or not lo <= int(quality) <= hi:
            raise ValueError(f"{codec}: quality must be in {lo}..{hi}, got {quality}")
        trial = ncf_trial(array, codec, int(quality))
    start = time.perf_counter()
    decoded, _info = api.decode_bytes(trial.data)
    dec_s = time.perf_counter() - start
    notes = prepare_image(array).notes
    return trial, measure(rgb8(array), trial, decoded, dec_s), notes


def code_anchor(rgb: np.ndarray, codec: str, target_bpp: float) -> CodedImage:
    """``codec`` at the quality whose file size is closest to ``target_bpp``, decoded."""
    lo, hi = quality_range(codec)
    trial = closest_trial(lambda q: anchor_trial(rgb, codec, q), lo, hi, target_bpp)
    coder = get_codec(codec)
    start = time.perf_counter()
    decoded = coder.decompress(trial.data)
    return measure(rgb, trial, decoded, time.perf_counter() - start)


def compress(
    array: np.ndarray,
    codec: str,
    quality: int | None = None,
    target_bpp: float | None = None,
    anchors: Sequence[str] = ANCHOR_CODECS,
    progress: Progress = _quiet,
) -> CompressResult:
    """Our codec on ``array``, then each anchor codec at the closest bpp (see module docstring)."""
    if codec not in ncf_codecs():
        raise ValueError(f"codec {codec!r} is not available here (choose one of {ncf_codecs()})")
    progress(0.05, f"encoding with {codec}")
    trial, ours, notes = code_ours(array, codec, quality, target_bpp)
    result = CompressResult(rgb8(array), ours, trial.data, notes=list(notes))
    status = anchor_status()
    usable = [a for a in anchors if status.get(a) is None]
    for a in anchors:
        if status.get(a) is not None:
            result.notes.append(f"{a} left out: {status[a]}")
    for i, name in enumerate(usable):
        progress(0.3 + 0.65 * i / max(len(usable), 1), f"{name} at {ours.bpp:.3f} bpp")
        result.anchors.append(code_anchor(result.original, name, ours.bpp))
    progress(1.0, "done")
    return result


# ----------------------------------------------------------------------------- presentation data

TABLE_HEADERS = [
    "codec",
    "quality",
    "bytes",
    "bpp",
    "PSNR (dB)",
    "MS-SSIM",
    "encode (ms)",
    "decode (ms)",
]


def table_rows(result: CompressResult) -> list[list[Any]]:
    """One row per codec, ours first, for the comparison table."""

    def row(c: CodedImage, label: str) -> list[Any]:
        ssim = "n/a" if c.ms_ssim is None else round(c.ms_ssim, 4)
        return [
            label,
            c.quality,
            c.n_bytes,
            round(c.bpp, 4),
            round(c.psnr, 2),
            ssim,
            round(1000 * c.enc_s, 1),
            round(1000 * c.dec_s, 1),
        ]

    rows = [row(result.ours, f"{result.ours.codec} (.ncf)")]
    rows += [row(a, a.codec) for a in result.anchors]
    return rows


def summary_markdown(result: CompressResult) -> str:
    o = result.ours
    h, w = result.original.shape[:2]
    ssim = "n/a (image under 161 px a side)" if o.ms_ssim is None else f"{o.ms_ssim:.4f}"
    lines = [
        f"### {o.codec}, quality {o.quality}: **{o.bpp:.4f} bpp** · PSNR **{o.psnr:.2f} dB**"
        f" · MS-SSIM **{ssim}**",
        f"{w}×{h} px, {o.n_bytes:,} bytes (container included) · encode {o.enc_s * 1000:.0f} ms"
        f" · decode {o.dec_s * 1000:.0f} ms",
    ]
    for a in result.anchors:
        gain = 100.0 * (a.n_bytes - o.n_bytes) / o.n_bytes
        lines.append(
            f"- {a.codec} q={a.quality}: {a.bpp:.4f} bpp ({gain:+.0f}% bytes),"
            f" PSNR {a.psnr:.2f} dB ({a.psnr - o.psnr:+.2f} dB vs ours)"
        )
    lines += [f"- note: {n}" for n in result.notes]
    return "\n".join(lines)


def crop_box(shape: Sequence[int], cx: float, cy: float, size: int) -> tuple[int, int, int, int]:
    """A square ``size`` crop (smaller for small images) centred at fractions ``cx, cy`` in 0..1.

    Returns ``(top, left, bottom, right)``, always inside the image.
    """
    h, w = int(shape[0]), int(shape[1])
    side = max(1, min(int(size), h, w))
    cx, cy = min(max(float(cx), 0.0), 1.0), min(max(float(cy), 0.0), 1.0)
    left = min(max(int(round(cx * w - side / 2)), 0), w - side)
    top = min(max(int(round(cy * h - side / 2)), 0), h - side)
    return top, left, top + side, left + side


def zoomed_crop(
    image: np.ndarray, box: tuple[int, int, int, int], display: int = 256
) -> np.ndarray:
    """The crop, enlarged by an integer factor with nearest-neighbour (pixels stay visible)."""
    top, left, bottom, right = box
    crop = image[top:bottom, left:right]
    factor = max(1, display // max(crop.shape[0], crop.shape[1]))
    return np.repeat(np.repeat(crop, factor, axis=0), factor, axis=1)


def outline(image: np.ndarray, box: tuple[int, int, int, int], width: int = 0) -> np.ndarray:
    """A copy of ``image`` with the crop box drawn as a yellow frame."""
    top, left, bottom, right = box
    t = width or max(2, min(image.shape[:2]) // 150)
    out = image.copy()
    colour = np.array([255, 214, 0], dtype=np.uint8)
    out[max(top - t, 0) : top, max(left - t, 0) : right + t] = colour
    out[bottom : bottom + t, max(left - t, 0) : right + t] = colour
    out[max(top - t, 0) : bottom + t, max(left - t, 0) : left] = colour
    out[max(top - t, 0) : bottom + t, right : right + t] = colour
    return out


# ----------------------------------------------------------------------------- decompress


def decompress(path: str | os.PathLike[str] | None, limits: DemoLimits) -> tuple[np.ndarray, dict]:
    """Check and decode an uploaded ``.ncf`` image: (array in its original layout, header info)."""
    p = check_upload(path, limits, "an .ncf file")
    info = api.file_info(p)
    if info.get("modality") != "image":
        raise ValueError(f"this file holds a {info.get('modality')}; the demo decodes images only")
    h, w = info["shape"][:2]
    if h * w > limits.max_pixels:
        raise ValueError(f"the image is {w}x{h}, more than the {limits.max_pixels:,} pixel limit")
    array, _ = api.decode_bytes(p.read_bytes())
    return array, info


# ----------------------------------------------------------------------------- benchmarks


@dataclass
class BenchmarkView:
    folder: Path | None
    psnr_plot: Path | None = None
    msssim_plot: Path | None = None
    bdrate: str | None = None


def _has_results(folder: Path) -> bool:
    return any((folder / name).is_file() for name in RESULT_FILES)


def find_results(root: Path, preferred: str = "kodak") -> Path | None:
    """``root/preferred`` if it holds results, else the newest sub-folder (or root) that does."""
    if (root / preferred).is_dir() and _has_results(root / preferred):
        return root / preferred
    candidates = [d for d in sorted(root.glob("*")) if d.is_dir() and _has_results(d)]
    if root.is_dir() and _has_results(root):
        candidates.append(root)
    if not candidates:
        return None
    return max(
        candidates,
        key=lambda d: max((d / n).stat().st_mtime for n in RESULT_FILES if (d / n).is_file()),
    )


def load_benchmarks(root: Path) -> BenchmarkView:
    folder = find_results(root)
    if folder is None:
        return BenchmarkView(None)

    def existing(name: str) -> Path | None:
        p = folder / name
        return p if p.is_file() else None

    md = existing("bdrate.md")
    return BenchmarkView(
        folder,
        existing("rd_psnr.png"),
        existing("rd_msssim.png"),
        md.read_text(encoding="utf-8") if md else None,
    )

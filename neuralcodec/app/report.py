"""``codec demo-report``: one image through the default codec, compared with JPEG at equal size.

::

    image --encode_file--> tmp/x.ncf (real file size -> bpp) --decode_bytes--> image'  -> PSNR
    RGB   --JPEG 4:4:4, quality bisected on size to the closest bpp--> RGB'             -> PSNR
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from neuralcodec import api
from neuralcodec.datasets.images import read_image


@dataclass
class DemoReport:
    image: str
    width: int
    height: int
    codec: str
    quality: int
    bytes: int
    bpp: float
    psnr: float
    encode_seconds: float
    decode_seconds: float
    jpeg_quality: int
    jpeg_bytes: int
    jpeg_bpp: float
    jpeg_psnr: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def psnr(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR in dB over all samples, peak from the dtype (255 or 65535); inf when identical."""
    if ref.shape != out.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {out.shape}")
    peak = float(np.iinfo(ref.dtype).max)
    mse = float(np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def jpeg_bytes(rgb: np.ndarray, quality: int) -> bytes:
    """Pillow JPEG, 4:4:4 chroma, the given quality (1..100)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def jpeg_at_size(rgb: np.ndarray, target_bytes: int) -> tuple[int, bytes]:
    """The JPEG quality (and bytes) whose size is closest to ``target_bytes``, by bisection."""
    lo, hi = 1, 100
    while lo < hi:  # smallest quality whose size reaches the target
        mid = (lo + hi) // 2
        if len(jpeg_bytes(rgb, mid)) >= target_bytes:
            hi = mid
        else:
            lo = mid + 1
    candidates = [(q, jpeg_bytes(rgb, q)) for q in {max(1, lo - 1), lo}]
    return min(candidates, key=lambda c: (abs(len(c[1]) - target_bytes), c[0]))


def demo_report(
    image: str | Path, codec: str | None = None, quality: int | None = None
) -> DemoReport:
    """Encode ``image`` to a temporary ``.ncf``, decode it and compare with JPEG at the same size."""
    original = read_image(image)
    rgb = api.prepare_image(original).rgb
    with tempfile.TemporaryDirectory(prefix="ncf-demo-") as tmp:
        dst = Path(tmp) / "image.ncf"
        report = api.encode_file(image, dst, codec, quality)
        data = dst.read_bytes()
    start = time.perf_counter()
    decoded, _ = api.decode_bytes(data)
    decode_seconds = time.perf_counter() - start
    h, w = original.shape[:2]
    jq, jdata = jpeg_at_size(rgb, len(data))
    jpeg_out = np.asarray(Image.open(io.BytesIO(jdata)).convert("RGB"))
    return DemoReport(
        image=str(image),
        width=w,
        height=h,
        codec=report.codec,
        quality=report.quality,
        bytes=len(data),
        bpp=8.0 * len(data) / (h * w),
        psnr=psnr(original, decoded),
        encode_seconds=report.seconds,
        decode_seconds=decode_seconds,
        jpeg_quality=jq,
        jpeg_bytes=len(jdata),
        jpeg_bpp=8.0 * len(jdata) / (h * w),
        jpeg_psnr=psnr(rgb, jpeg_out),
        notes=report.notes,
    )


def format_demo_report(r: DemoReport) -> str:
    """The few lines ``make demo`` prints."""
    lines = [
        f"image     {r.image} ({r.width}x{r.height})",
        f"codec     {r.codec}, quality {r.quality}",
        f".ncf      {r.bytes} bytes, {r.bpp:.4f} bpp, PSNR {r.psnr:.2f} dB",
        f"time      encode {r.encode_seconds:.3f} s, decode {r.decode_seconds:.3f} s",
        f"JPEG 444  quality {r.jpeg_quality}: {r.jpeg_bytes} bytes, {r.jpeg_bpp:.4f} bpp, PSNR {r.jpeg_psnr:.2f} dB",
    ]
    gain = r.psnr - r.jpeg_psnr
    if math.isfinite(gain):
        lines.append(f"gain      {gain:+.2f} dB over JPEG at {r.jpeg_bpp / r.bpp:.2f}x the size")
    return "\n".join(lines + [f"note      {n}" for n in r.notes])

"""Distortion metrics on 8-bit RGB images, and how per-image values become one RD point.

Per image (``HxWx3 uint8`` reference and reconstruction)::

    mse  = mean over H, W and the 3 channels of (ref - out)^2      (pooled over channels)
    psnr = 10 * log10(255^2 / mse)                                  (capped at PSNR_CAP for mse=0)
    ms_ssim = pytorch_msssim.ms_ssim(ref, out, data_range=255)      (None below 161 px a side)

Per (codec, quality) point, every field is the arithmetic mean over images: mean bpp, mean PSNR
(the average of per-image PSNRs, as CompressAI reports, not the PSNR of the mean MSE), mean
MS-SSIM, mean encode / decode seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

PSNR_CAP = 100.0  # dB reported for identical images, so results stay finite JSON numbers
MS_SSIM_MIN_SIDE = 161  # pytorch-msssim's 5 scales with an 11-tap window need > 160 px
POINT_FIELDS = ("bpp", "psnr", "ms_ssim", "enc_s", "dec_s")
# Only some codecs measure these (est_bpp: the rate a learned codec's model predicts from its
# likelihoods); a mean has them only if the images have them.
OPTIONAL_FIELDS = ("est_bpp",)


def _check_pair(ref: np.ndarray, out: np.ndarray) -> None:
    if ref.shape != out.shape or ref.ndim != 3 or ref.shape[2] != 3:
        raise ValueError(f"images must both be HxWx3, got {ref.shape} and {out.shape}")
    if ref.dtype != np.uint8 or out.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {ref.dtype} and {out.dtype}")


def mse_rgb(ref: np.ndarray, out: np.ndarray) -> float:
    """Mean squared error pooled over all pixels and the three channels."""
    _check_pair(ref, out)
    diff = ref.astype(np.float64) - out.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr_rgb(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR in dB of an 8-bit RGB reconstruction (pooled MSE, peak 255)."""
    mse = mse_rgb(ref, out)
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse))


def ms_ssim_rgb(ref: np.ndarray, out: np.ndarray) -> float | None:
    """MS-SSIM (pytorch-msssim, data_range 255) or ``None`` when the image is too small."""
    _check_pair(ref, out)
    if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch
    from pytorch_msssim import ms_ssim

    def as_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()[None]

    # One thread: on small CPU machines the gaussian convolutions are faster without torch's
    # intra-op threads competing with the codecs (and with --jobs worker processes).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return float(ms_ssim(as_tensor(ref), as_tensor(out), data_range=255.0))
    finally:
        torch.set_num_threads(threads)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - ms_ssim)``, for plots and BD-rates."""
    return -10.0 * math.log10(max(1.0 - value, 1e-10))


def bits_per_pixel(n_bytes: int, shape: tuple[int, ...]) -> float:
    return 8.0 * n_bytes / (shape[0] * shape[1])


def average_point(per_image: Iterable[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Arithmetic mean of each field over images; a field missing for any image becomes None."""
    rows = list(per_image)
    if not rows:
        raise ValueError("no images to average")
    mean: dict[str, float | None] = {}
    for key in POINT_FIELDS + OPTIONAL_FIELDS:
        values = [row.get(key) for row in rows]
        if key in OPTIONAL_FIELDS and all(v is None for v in values):
            continue
        mean[key] = None if any(v is None for v in values) else float(np.mean(values))
    return mean

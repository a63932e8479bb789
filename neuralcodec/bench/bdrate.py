"""Bjøntegaard delta rate and delta PSNR with piecewise-cubic (PCHIP) interpolation.

Given two RD curves (rate, quality) -- an anchor A and a test T::

    BD-rate:  x = quality, y = ln(rate); fit a PCHIP per curve through its points sorted by x;
              over the overlapping quality range [lo, hi]:
              d = (integral(T) - integral(A)) / (hi - lo);   BD-rate = (exp(d) - 1) * 100 %
    BD-PSNR:  x = ln(rate), y = quality; same integration over the overlapping log-rate range;
              BD-PSNR = average quality difference T - A (dB).

Negative BD-rate = the test codec needs fewer bits for the same quality. The interpolation is
monotone piecewise-cubic (scipy ``PchipInterpolator``) as in the current Bjøntegaard practice,
instead of the original single cubic polynomial, so it never overshoots between points.

Points are sorted before fitting; points sharing the same x are averaged. Curves whose ranges do
not overlap raise ``NoOverlapError`` (a ``ValueError``); tables show such entries as "n/a".
Rates must be positive; fewer than two distinct points is an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class NoOverlapError(ValueError):
    """The two curves share no quality (or rate) range, so no Bjøntegaard delta exists."""


def _prepare(x: Sequence[float], y: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort by x, average y over equal x, and check there are at least two finite points."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{what}: rate and quality lists differ in length ({x.size} vs {y.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{what}: rates and qualities must be finite numbers")
    ux, inverse = np.unique(x, return_inverse=True)
    if ux.size < 2:
        raise ValueError(f"{what}: need at least two distinct points, got {ux.size}")
    uy = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return ux, uy


def _log_rates(rate: Sequence[float], what: str) -> np.ndarray:
    r = np.asarray(rate, dtype=np.float64).ravel()
    if r.size and not np.all(r > 0):
        raise ValueError(f"{what}: rates must be positive")
    return np.log(r)


def _mean_gap(xa, ya, xt, yt) -> float:
    """Average of (test - anchor) between the two PCHIP fits over their common x range."""
    from scipy.interpolate import PchipInterpolator

    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not lo < hi:
        raise NoOverlapError(
            f"curves do not overlap: anchor spans [{xa[0]:.4g}, {xa[-1]:.4g}], "
            f"test spans [{xt[0]:.4g}, {xt[-1]:.4g}]"
        )
    area_a = PchipInterpolator(xa, ya).integrate(lo, hi)
    area_t = PchipInterpolator(xt, yt).integrate(lo, hi)
    return float((area_t - area_a) / (hi - lo))


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
) -> float:
    """Average rate difference of test vs anchor at equal quality, in percent."""
    xa, ya = _prepare(quality_anchor, _log_rates(rate_anchor, "anchor"), "anchor")
    xt, yt = _prepare(quality_test, _log_rates(rate_test, "test"), "test")
    return (math.exp(_mean_gap(xa, ya, xt, yt)) - 1.0) * 100.0


def bd_psnr(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
) -> float:
    """Average quality difference (e.g. dB of PSNR) of test vs anchor at equal rate."""
    xa, ya = _prepare(_log_rates(rate_anchor, "anchor"), quality_anchor, "anchor")
    xt, yt = _prepare(_log_rates(rate_test, "test"), quality_test, "test")
    return _mean_gap(xa, ya, xt, yt)


def try_bd(fn, anchor: tuple, test: tuple) -> float | None:
    """``fn(*anchor, *test)`` or ``None`` when the curves do not overlap or are too short."""
    try:
        return fn(*anchor, *test)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# tables over many curves

BD_FIELDS = {
    "bd_rate": ("BD-rate, PSNR (%)", "%+.1f"),
    "bd_psnr": ("BD-PSNR (dB)", "%+.2f"),
    "bd_rate_msssim": ("BD-rate, MS-SSIM (%)", "%+.1f"),
}


def _msssim_db(curve) -> tuple[float, ...] | None:
    from neuralcodec.bench.metrics import ms_ssim_db

    return None if curve.ms_ssim is None else tuple(ms_ssim_db(v) for v in curve.ms_ssim)


# A curve of fewer points, interpolated over 1-3 segments, bends unlike a fuller curve: its BD
# against one measures the interpolation, not the codec (compare such a codec on the points both
# curves share instead).
MIN_BD_POINTS = 4


def bd_entry(anchor, test) -> dict[str, float | None]:
    """BD-rate (PSNR), BD-PSNR and BD-rate (MS-SSIM in dB) of ``test`` vs ``anchor`` curves.

    Each value is ``None`` where the curves do not overlap (or MS-SSIM is missing), and all are
    ``None`` when one curve has fewer than ``MIN_BD_POINTS`` points and the other has more.
    """
    counts = (len(anchor.bpp), len(test.bpp))
    if min(counts) < MIN_BD_POINTS <= max(counts):
        return {"bd_rate": None, "bd_psnr": None, "bd_rate_msssim": None}
    a, t = (anchor.bpp, anchor.psnr), (test.bpp, test.psnr)
    out = {"bd_rate": try_bd(bd_rate, a, t), "bd_psnr": try_bd(bd_psnr, a, t)}
    ma, mt = _msssim_db(anchor), _msssim_db(test)
    out["bd_rate_msssim"] = (
        None if ma is None or mt is None else try_bd(bd_rate, (anchor.bpp, ma), (test.bpp, mt))
    )
    return out


def bd_matrix(curves: list, anchors: list) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{curve key: {anchor key: bd_entry}}`` for every curve against every anchor."""
    return {c.key: {a.key: bd_entry(a, c) for a in anchors} for c in curves}


def _fmt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt % value


def bd_markdown(curves: list, anchors: list, title: str, notes: list[str] | None = None) -> str:
    """Markdown with one table per BD measure: rows = curves, columns = anchors."""
    matrix = bd_matrix(curves, anchors)
    lines = [
        f"# {title}",
        "",
        "Bjøntegaard deltas with PCHIP interpolation over the overlapping range of each pair.",
        "BD-rate < 0: fewer bits than the anchor at equal quality; BD-PSNR > 0: higher PSNR at",
        "equal rate. MS-SSIM enters as -10 log10(1 - MS-SSIM). n/a: the curves do not overlap,",
        f"a curve has no MS-SSIM, or one curve has fewer than {MIN_BD_POINTS} points and the other",
        "more. Rows and anchors marked (published) are read from published results, not run here.",
        "",
    ]
    lines += [f"- {n}" for n in notes or []]
    if notes:
        lines.append("")
    header = "| codec | " + " | ".join(f"vs {a.label}" for a in anchors) + " |"
    rule = "|---|" + "---:|" * len(anchors)
    for field, (name, fmt) in BD_FIELDS.items():
        lines += [f"## {name}", "", header, rule]
        for c in curves:
            cells = [_fmt(matrix[c.key][a.key][field], fmt) for a in anchors]
            lines.append(f"| {c.label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)

"""RD curves, local and published, and the reader of published Kodak results.

A published curve is one JSON file in the reference directory, in CompressAI's results layout::

    {"name": "VTM", "description": "...",
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}

``psnr`` is accepted for ``psnr-rgb`` and ``ms-ssim`` for ``ms-ssim-rgb``; other keys are ignored.
Each becomes an ``RDCurve`` keyed ``pub:<file stem>`` (e.g. ``pub:vtm``), labelled
``"<name> (published)"``, with points sorted by bpp.

The directory is, in order of precedence: the ``--reference`` flag, the ``NEURALCODEC_REFERENCE``
environment variable, then ``<repo root>/../shared/reference/kodak``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import neuralcodec

REFERENCE_ENV = "NEURALCODEC_REFERENCE"
PUBLISHED_PREFIX = "pub:"


@dataclass(frozen=True)
class RDCurve:
    """One rate-distortion curve: points sorted by bpp; ``ms_ssim`` may be absent."""

    key: str  # codec name, or "pub:<stem>" for a published curve
    label: str
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim: tuple[float, ...] | None = None
    published: bool = False

    @staticmethod
    def from_points(key: str, label: str, points: list[dict], published: bool = False) -> RDCurve:
        """Build from dicts with ``bpp``, ``psnr`` and optional ``ms_ssim``."""
        points = sorted(points, key=lambda p: p["bpp"])
        ms = [p.get("ms_ssim") for p in points]
        return RDCurve(
            key=key,
            label=label,
            bpp=tuple(float(p["bpp"]) for p in points),
            psnr=tuple(float(p["psnr"]) for p in points),
            ms_ssim=None if any(m is None for m in ms) else tuple(float(m) for m in ms),
            published=published,
        )


def default_reference_dir() -> Path:
    """``$NEURALCODEC_REFERENCE`` or ``<repo root>/../shared/reference/kodak``."""
    env = os.environ.get(REFERENCE_ENV)
    if env:
        return Path(env)
    repo_root = Path(neuralcodec.__file__).resolve().parent.parent
    return repo_root.parent / "shared" / "reference" / "kodak"


def _series(results: dict, *names: str) -> list | None:
    for name in names:
        if name in results:
            return results[name]
    return None


def _is_number_list(values: object, n: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) == n
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    )


def read_reference_file(path: Path) -> RDCurve:
    """Parse one published-results JSON file; ``ValueError`` says what is wrong with it."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise ValueError(f"{path}: no 'results' object")
    bpp = results.get("bpp")
    psnr = _series(results, "psnr-rgb", "psnr")
    n = len(bpp) if isinstance(bpp, list) else -1
    if n < 2 or not _is_number_list(bpp, n) or not _is_number_list(psnr, n):
        raise ValueError(f"{path}: needs equal-length number lists 'bpp' and 'psnr-rgb'")
    ms = _series(results, "ms-ssim-rgb", "ms-ssim")
    points = [
        {"bpp": b, "psnr": p, "ms_ssim": ms[i] if _is_number_list(ms, n) else None}
        for i, (b, p) in enumerate(zip(bpp, psnr, strict=True))
    ]
    name = str(doc.get("name") or path.stem)
    return RDCurve.from_points(
        PUBLISHED_PREFIX + path.stem.lower(), f"{name} (published)", points, published=True
    )


def load_reference_curves(directory: Path) -> tuple[list[RDCurve], list[str]]:
    """Every readable curve in ``directory`` (sorted by key) and one message per skipped file.

    A missing directory yields no curves and one message.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return [], [f"no published reference directory at {directory}"]
    curves, problems = [], []
    for path in sorted(directory.glob("*.json")):
        try:
            curves.append(read_reference_file(path))
        except ValueError as exc:
            problems.append(f"skipping published curve {exc}")
    return curves, problems

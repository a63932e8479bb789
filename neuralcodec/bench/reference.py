"""RD curves, local and published, the reader of published Kodak results, and when they apply.

A published curve is one JSON file in the reference directory, in CompressAI's results layout::

    {"name": "VTM", "description": "...",
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}

``psnr`` is accepted for ``psnr-rgb`` and ``ms-ssim`` for ``ms-ssim-rgb``; other keys are ignored.
Each becomes an ``RDCurve`` keyed ``pub:<file stem>`` (e.g. ``pub:vtm``), labelled
``"<name> (published)"``, with points sorted by bpp.

The directory is, in order of precedence: the ``--reference`` flag, the ``NEURALCODEC_REFERENCE``
environment variable, then ``reference/kodak`` beside the data root (``<data root>/../reference/
kodak``, i.e. ``../shared/reference/kodak`` next to a checkout; see ``neuralcodec.datasets.paths``).
The curves are not shipped with the package: they are other projects' measurements, kept where
the data is.

Published curves are means over the 24 Kodak images, so they apply only to a run over exactly
those images: ``is_kodak(images)`` checks the file names ``kodim01.png`` .. ``kodim24.png`` and
the 768x512 / 512x768 sizes (not the folder name). Any other image set (another folder, a subset,
``--quick``) gets no published curves and a note saying why (``published_note``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from neuralcodec.datasets.paths import DataPathError, data_root

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


KODAK_NAMES = frozenset(f"kodim{i:02d}.png" for i in range(1, 25))
KODAK_SIZES = frozenset({(768, 512), (512, 768)})


def default_reference_dir() -> Path:
    """``$NEURALCODEC_REFERENCE``, else ``<data root>/../reference/kodak``.

    ``DataPathError`` when neither that variable nor a data root is available.
    """
    env = os.environ.get(REFERENCE_ENV)
    if env:
        return Path(env).expanduser()
    return data_root().parent / "reference" / "kodak"


def is_kodak(images: list[Path]) -> bool:
    """True when ``images`` are the 24 Kodak images: their names and (768x512 or 512x768) sizes."""
    if len(images) != len(KODAK_NAMES) or {p.name.lower() for p in images} != KODAK_NAMES:
        return False
    from PIL import Image, UnidentifiedImageError

    try:
        for path in images:
            with Image.open(path) as im:  # reads the header only
                if im.size not in KODAK_SIZES:
                    return False
    except (OSError, UnidentifiedImageError):
        return False
    return True


def published_note(dataset: Path, n_images: int) -> str:
    """Why published curves are left out of a run over ``n_images`` images of ``dataset``."""
    return (
        f"published curves (means over the 24 Kodak images) left out: the {n_images} images of "
        f"{dataset.name} are not that set"
    )


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


def find_reference_dir(explicit: Path | None) -> Path | None:
    """``explicit``, else ``default_reference_dir()``; None when that cannot be located."""
    if explicit is not None:
        return Path(explicit)
    try:
        return default_reference_dir()
    except DataPathError:
        return None


def load_reference_curves(directory: Path | None) -> tuple[list[RDCurve], list[str]]:
    """Every readable curve in ``directory`` (sorted by key) and one message per skipped file.

    A missing directory (or None: none could be located) yields no curves and one message.
    """
    if directory is None:
        return [], [f"no published reference directory (set {REFERENCE_ENV} or --reference)"]
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

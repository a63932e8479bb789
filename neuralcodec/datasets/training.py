"""Training images held in memory, sampled as random crops.

Photos are decoded once into uint8 tensors. JPEG sources (BSDS500, SUN) are downscaled 2x
first to hide their compression artefacts; large PNGs are kept at full size and also added at
half size, so the model sees both fine texture and downscaled content. Kodak is refused:
it is the test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"}
# Held out of training: the source of examples/sample.png, used by `make demo`.
HELD_OUT = {("wikipedia_photos", "021.png")}


def _image_files(root: Path) -> list[Path]:
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and (p.parent.name, p.name) not in HELD_OUT
    )
    if any("kodak" in p.parts for p in files):
        raise ValueError(f"{root} contains Kodak images: they are the test set, not training data")
    return files


# The photos whose 512-px centre crops are the held-out benchmark (results/heldout-crops).
HELD_OUT_BENCH = {("urban100", f"img_{i:03d}.png") for i in range(20, 26)} | {
    ("wikipedia_photos", "030.png"),
    ("wikipedia_photos", "031.png"),
}


def split_photos(root: Path, val_every: int = 25) -> tuple[list[Path], list[Path], list[Path]]:
    """(training, validation, test) photos under ``root``: test = ``HELD_OUT_BENCH``, validation
    = every ``val_every``-th of the others (by sorted path), training = the rest."""
    files = _image_files(root)
    test = [p for p in files if (p.parent.name, p.name) in HELD_OUT_BENCH]
    rest = [p for p in files if (p.parent.name, p.name) not in HELD_OUT_BENCH]
    val = rest[val_every // 2 :: val_every]
    chosen = set(val)
    return [p for p in rest if p not in chosen], val, test


def _load(path: Path, min_side: int) -> list[torch.Tensor]:
    img = Image.open(path).convert("RGB")
    jpeg = path.suffix.lower() in {".jpg", ".jpeg"}
    versions = []
    if jpeg:
        img = img.resize((img.width // 2, img.height // 2), Image.BICUBIC)
        versions.append(img)
    else:
        versions.append(img)
        if min(img.size) >= 2 * min_side:
            versions.append(img.resize((img.width // 2, img.height // 2), Image.BICUBIC))
    out = []
    for v in versions:
        if min(v.size) >= min_side:
            arr = np.asarray(v, dtype=np.uint8).copy()
            out.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous())
    return out


class CropSampler:
    """Random ``crop x crop`` patches with random horizontal flips, as float tensors in [0, 1]."""

    def __init__(self, root: Path, crop: int, seed: int = 0, files: list[Path] | None = None):
        """``files``: the photos to sample from (default: every training photo under ``root``)."""
        self.images: list[torch.Tensor] = []
        for path in _image_files(root) if files is None else files:
            self.images.extend(_load(path, crop))
        if not self.images:
            raise ValueError(f"no training images of at least {crop}x{crop} under {root}")
        areas = np.array([im.shape[1] * im.shape[2] for im in self.images], dtype=np.float64)
        self.weights = np.sqrt(areas) / np.sqrt(areas).sum()
        self.rng = np.random.default_rng(seed)
        self.crop = crop

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, size: int, crop: int | None = None) -> torch.Tensor:
        crop = crop or self.crop
        idx = self.rng.choice(len(self.images), size=size, p=self.weights)
        out = torch.empty(size, 3, crop, crop, dtype=torch.uint8)
        for k, i in enumerate(idx):
            im = self.images[i]
            _, h, w = im.shape
            if h < crop or w < crop:
                im = (
                    torch.nn.functional.interpolate(
                        im[None].float(), size=(max(h, crop), max(w, crop)), mode="bilinear"
                    )[0]
                    .round()
                    .clamp(0, 255)
                    .to(torch.uint8)
                )
                _, h, w = im.shape
            top = int(self.rng.integers(0, h - crop + 1))
            left = int(self.rng.integers(0, w - crop + 1))
            patch = im[:, top : top + crop, left : left + crop]
            if self.rng.random() < 0.5:
                patch = patch.flip(-1)
            out[k] = patch
        return out.float().div_(255.0)

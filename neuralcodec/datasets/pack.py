"""A crop pack: a fixed set of training and validation crops in one folder, small enough to
travel with a training job to another machine (``scripts/device_train_*.sh``).

::

    PACK/meta.json          {"crop": 256, "train": [{"file", "source", "box"}...], "val": [...]}
    PACK/train/00000.png    lossless crops, uint8 RGB, crop x crop
    PACK/val/00000.png

Crops are cut at full resolution from PNG photos and from JPEG photos downscaled 2x (as
``datasets.training`` does, to hide their compression artefacts); half of the training crops
are the most textured of four random positions. The pack is filled photo by photo (weighted by
the square root of the area) until its byte budget is spent, so its size is known in advance.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _photo(path: Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    if path.suffix.lower() in {".jpg", ".jpeg"}:
        img = img.resize((img.width // 2, img.height // 2), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def _texture(crop: np.ndarray) -> float:
    g = crop.astype(np.float32).mean(2)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def _png(crop: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def write_pack(
    out: Path,
    train: list[Path],
    val: list[Path],
    crop: int = 256,
    budget_bytes: int = 36 << 20,
    val_crops: int = 24,
    seed: int = 0,
) -> dict:
    """Write a pack of ``crop``-px crops from the ``train`` / ``val`` photos into ``out`` (which
    must not exist yet); validation crops (the centre of each validation photo, then random
    ones) are written first and count towards the budget. Returns the meta dict."""
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it first")
    rng = np.random.default_rng(seed)
    meta: dict = {"crop": crop, "train": [], "val": []}
    staged: dict[str, list[tuple[str, bytes]]] = {"train": [], "val": []}
    used = 0

    def usable(paths: list[Path]) -> list[tuple[Path, np.ndarray]]:
        out_ = []
        for p in paths:
            im = _photo(p)
            if min(im.shape[:2]) >= crop:
                out_.append((p, im))
        return out_

    def add(part: str, p: Path, im: np.ndarray, y0: int, x0: int) -> int:
        data = _png(np.ascontiguousarray(im[y0 : y0 + crop, x0 : x0 + crop]))
        name = f"{len(staged[part]):05d}.png"
        staged[part].append((name, data))
        source = f"{p.parent.name}/{p.name}"
        meta[part].append({"file": f"{part}/{name}", "source": source, "box": [y0, x0, crop]})
        return len(data)

    vals = usable(val)
    for i in range(val_crops if vals else 0):
        p, im = vals[i % len(vals)]
        h, w = im.shape[:2]
        if i < len(vals):
            y0, x0 = (h - crop) // 2, (w - crop) // 2
        else:
            y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        used += add("val", p, im, y0, x0)
    trains = usable(train)
    if not trains:
        raise ValueError(f"no training photo has both sides >= {crop} px")
    weights = np.sqrt([im.shape[0] * im.shape[1] for _, im in trains])
    weights /= weights.sum()
    while True:
        p, im = trains[int(rng.choice(len(trains), p=weights))]
        h, w = im.shape[:2]
        tries = 4 if len(staged["train"]) % 2 == 0 else 1
        boxes = [
            (int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1)))
            for _ in range(tries)
        ]
        y0, x0 = max(boxes, key=lambda b: _texture(im[b[0] : b[0] + crop, b[1] : b[1] + crop]))
        size = len(_png(np.ascontiguousarray(im[y0 : y0 + crop, x0 : x0 + crop])))
        if used + size > budget_bytes:
            break
        used += add("train", p, im, y0, x0)
    for part, items in staged.items():
        (out / part).mkdir(parents=True, exist_ok=True)
        for name, data in items:
            (out / part / name).write_bytes(data)
    meta["bytes"] = used
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def read_pack(pack: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) crops of a pack as uint8 tensors (N, 3, crop, crop)."""
    meta_path = pack / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{pack} is not a crop pack (no meta.json)")
    meta = json.loads(meta_path.read_text())
    crop = int(meta["crop"])
    parts = []
    for part in ("train", "val"):
        arrays = []
        for entry in meta[part]:
            im = np.asarray(Image.open(pack / entry["file"]).convert("RGB"), dtype=np.uint8)
            if im.shape != (crop, crop, 3):
                raise ValueError(f"{entry['file']}: {im.shape}, expected {crop}x{crop} RGB")
            arrays.append(im)
        stack = np.stack(arrays) if arrays else np.zeros((0, crop, crop, 3), np.uint8)
        parts.append(torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous())
    return parts[0], parts[1]


class PackSampler:
    """Random ``crop`` x ``crop`` windows of a pack's training crops with random horizontal
    flips, as float tensors in [0, 1] on ``device`` (the whole pack is held there): the
    ``datasets.training.CropSampler`` interface for jobs that carry a pack."""

    def __init__(self, pack: Path, crop: int, device: torch.device | str = "cpu", seed: int = 0):
        train, _ = read_pack(pack)
        if train.shape[0] == 0 or train.shape[-1] < crop:
            raise ValueError(f"{pack}: no training crops of at least {crop} px")
        self.crops, self.crop = train.to(device), crop
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def batch(self, size: int, crop: int | None = None) -> torch.Tensor:
        crop = crop or self.crop
        n, _, h, w = self.crops.shape
        idx = torch.from_numpy(self.rng.integers(0, n, size)).to(self.crops.device)
        y0, x0 = self.rng.integers(0, h - crop + 1), self.rng.integers(0, w - crop + 1)
        x = self.crops[idx][..., y0 : y0 + crop, x0 : x0 + crop].float().div_(255.0)
        flip = torch.from_numpy(self.rng.random(size) < 0.5).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

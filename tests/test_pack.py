"""Crop packs (datasets/pack.py): what is written is what is read, within the byte budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from neuralcodec.datasets.pack import read_pack, write_pack


def _photos(tmp_path, n: int, size=(300, 280)):
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        yy, xx = np.mgrid[: size[0], : size[1]]
        img = (np.stack([xx, yy, xx + yy], -1) * (i + 1) + rng.integers(0, 40, (*size, 3))) % 256
        p = tmp_path / f"photo{i}.png"
        Image.fromarray(img.astype(np.uint8)).save(p)
        out.append(p)
    return out


def test_pack_round_trip_and_budget(tmp_path):
    photos = _photos(tmp_path, 3)
    budget = 400_000
    meta = write_pack(tmp_path / "pack", photos[:2], photos[2:], crop=64, budget_bytes=budget,
                      val_crops=2)  # fmt: skip
    assert meta["bytes"] <= budget
    on_disk = sum(p.stat().st_size for p in (tmp_path / "pack").rglob("*.png"))
    assert on_disk == meta["bytes"]
    train, val = read_pack(tmp_path / "pack")
    assert train.shape == (len(meta["train"]), 3, 64, 64) and len(meta["train"]) > 2
    assert val.shape == (2, 3, 64, 64)
    # each crop is the photo's pixels at its recorded box, losslessly
    for part, crops in (("train", train), ("val", val)):
        for entry, crop in zip(meta[part], crops, strict=True):
            y0, x0, c = entry["box"]
            src = np.asarray(Image.open(tmp_path / entry["source"].split("/")[1]))
            assert np.array_equal(crop.permute(1, 2, 0).numpy(), src[y0 : y0 + c, x0 : x0 + c])
    # the first validation crop is the centre of the validation photo
    assert meta["val"][0]["box"][:2] == [(300 - 64) // 2, (280 - 64) // 2]


def test_pack_refuses_existing_folder_and_small_photos(tmp_path):
    photos = _photos(tmp_path, 1, size=(40, 40))
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError):
        write_pack(tmp_path / "exists", photos, [], crop=32)
    with pytest.raises(ValueError, match="no training photo"):
        write_pack(tmp_path / "new", photos, [], crop=64)
    with pytest.raises(FileNotFoundError, match="not a crop pack"):
        read_pack(tmp_path)


def test_pack_sampler_windows_come_from_the_crops(tmp_path):
    from neuralcodec.datasets.pack import PackSampler

    photos = _photos(tmp_path, 2)
    write_pack(tmp_path / "pack", photos[:1], photos[1:], crop=64, budget_bytes=200_000,
               val_crops=1)  # fmt: skip
    train, _ = read_pack(tmp_path / "pack")
    sampler = PackSampler(tmp_path / "pack", 32, seed=3)
    x = sampler.batch(5)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    windows = train.unfold(2, 32, 1).unfold(3, 32, 1)  # every 32x32 window of every crop
    flat = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, 32, 32)
    for w in (x * 255).round().to(torch.uint8):
        assert any(torch.equal(w, f) or torch.equal(w.flip(-1), f) for f in flat)
    assert sampler.batch(2, crop=16).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="no training crops"):
        PackSampler(tmp_path / "pack", 128)

"""Train the post-filter of the ``wavelet`` codec's format 3 (a small residual CNN on decoded
pixels), then store its integer form.

::

    python scripts/train_wavelet_filter.py --out build/wfilter [--photos 60] [--minutes 8]
    python scripts/train_wavelet_filter.py --checkpoint build/wfilter/filter.pt \
        --export weights/wavelet-filter.safetensors

Data: photos under ../shared/data/train split as ``datasets.training.split_photos`` (the
held-out benchmark photos are never read, validation photos only score), each coded by format 3
at every quality; crops of (decoded, original) pairs train ``residual = net((decoded - 128) /
64)``, output ``decoded + 64 gain[q] residual``, MSE. Kodak is never read. The result
(``--out``/filter.safetensors) becomes ``weights/wavelet-filter.safetensors`` when it pays on the
validation photos (``codecs/dyadic.py`` has the integer decoder).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralcodec.codecs import dyadic  # noqa: E402
from neuralcodec.datasets.training import split_photos  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "train"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/train")
CROP = 128
QUALITIES = len(dyadic.QSTEP16)


def load(p: Path) -> np.ndarray:
    img = Image.open(p).convert("RGB")
    if p.suffix.lower() in (".jpg", ".jpeg"):  # JPEG sources: halve (artefacts)
        img = img.resize((img.width // 2, img.height // 2), Image.BICUBIC)
    return np.asarray(img)


def decoded(img: np.ndarray, qi: int) -> np.ndarray:
    q, levels = dyadic.quantise(img, qi)
    return dyadic.reconstruct(q, *img.shape[:2], levels, qi)


def make_pairs(files, crops_per: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, qs = [], [], []
    for p in files:
        img = load(p)
        h, w = img.shape[:2]
        if min(h, w) < CROP:
            continue
        for qi in range(QUALITIES):
            rec = decoded(img, qi)
            for _ in range(crops_per):
                i, j = rng.integers(0, h - CROP + 1), rng.integers(0, w - CROP + 1)
                xs.append(rec[i : i + CROP, j : j + CROP])
                ys.append(img[i : i + CROP, j : j + CROP])
                qs.append(qi)
    return np.stack(xs), np.stack(ys), np.array(qs)


def make_net(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 3, 3, padding=1),
    )


class Filter(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = make_net(width)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.gain = nn.Parameter(torch.ones(QUALITIES))

    def forward(self, x: torch.Tensor, qi: torch.Tensor) -> torch.Tensor:
        """x: decoded pixels (float, 0..255) -> filtered pixels."""
        r = self.net((x - 128.0) / 64.0)
        return x + 64.0 * self.gain[qi].view(-1, 1, 1, 1) * r


def to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float()


def _psnr(a: np.ndarray, ref: np.ndarray) -> float:
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - ref) ** 2))


def psnr_gain(model: Filter, files, qualities=range(QUALITIES)) -> list[float]:
    """Mean PSNR change per quality on whole photos (float filter, output rounded)."""
    out = []
    with torch.no_grad():
        for qi in qualities:
            d = []
            for p in files:
                img = load(p)
                rec = decoded(img, qi)
                y = model(to_t(rec[None]), torch.tensor([qi]))
                y = y.round().clamp(0, 255)[0].permute(1, 2, 0).numpy()

                d.append(_psnr(y, img) - _psnr(rec, img))
            out.append(float(np.mean(d)))
    return out


def calibrate(model: Filter, files) -> list[float]:
    """Largest |input| of each convolution over decoded training photos at every quality."""
    from neuralcodec.compress.intnet import PeakRecorder

    convs = {str(i): m for i, m in enumerate(model.net) if isinstance(m, nn.Conv2d)}
    with PeakRecorder(convs) as rec, torch.no_grad():
        for p in files:
            img = load(p)
            for qi in range(QUALITIES):
                model(to_t(decoded(img, qi)[None]), torch.tensor([qi]))
    return [rec.peaks[k] for k in convs]


def export(args) -> int:
    """The integer filter from ``--checkpoint``: calibrated on training photos, its gain per
    quality kept only where it raises the validation photos' PSNR by at least 0.01 dB."""
    from safetensors.numpy import save_file

    from neuralcodec.compress.intnet import IntNet

    rng = np.random.default_rng(args.seed + 7)
    train, val, _ = split_photos(DATA)
    val = [v for v in val if "bsds500" not in str(v)]
    calib = [train[i] for i in sorted(rng.choice(len(train), 12, replace=False))]
    model = Filter(args.width)
    model.load_state_dict(torch.load(args.checkpoint))
    peaks = calibrate(model, calib)
    net = IntNet.from_sequential(model.net, [1.25 * p for p in peaks])
    gains = [int(round(256 * float(g))) for g in model.gain.detach().clamp(0, 15)]
    filt = dyadic.PostFilter(net, tuple(gains), "")
    delta = []
    for qi in range(QUALITIES):
        d = []
        for p in val:
            img = load(p)
            rec = decoded(img, qi)
            d.append(_psnr(filt(rec, qi), img) - _psnr(rec, img))
        delta.append(float(np.mean(d)))
    kept = tuple(g if dd >= 0.01 else 0 for g, dd in zip(gains, delta, strict=True))
    print("integer filter, validation PSNR gain per quality (dB):", [round(v, 3) for v in delta])
    print("gains (2^-8) kept:", kept, flush=True)
    filt = dyadic.PostFilter(net, kept, "")
    save_file(filt.to_arrays(), str(args.export), metadata={"peaks": json.dumps(peaks)})
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--checkpoint", type=Path, help="with --export: a trained filter.pt")
    p.add_argument("--export", type=Path, help="write the integer filter (safetensors) here")
    p.add_argument("--photos", type=int, default=60)
    p.add_argument("--crops", type=int, default=6)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.export:
        return export(args)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train, val, _ = split_photos(DATA)
    train = [train[i] for i in sorted(rng.choice(len(train), args.photos, replace=False))]
    val = [v for v in val if "bsds500" not in str(v)]
    t0 = time.time()
    x, y, q = make_pairs(train, args.crops, rng)
    print(f"{len(x)} pairs in {time.time() - t0:.0f} s", flush=True)
    model = Filter(args.width)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    end = time.time() + 60 * args.minutes
    step, t_start, total = 0, time.time(), 60 * args.minutes
    while time.time() < end:
        frac = (time.time() - t_start) / total
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        idx = rng.integers(0, len(x), args.batch)
        i, j = rng.integers(0, CROP - 64 + 1, 2)
        xb = to_t(x[idx, i : i + 64, j : j + 64])
        yb = to_t(y[idx, i : i + 64, j : j + 64])
        loss = torch.mean((model(xb, torch.from_numpy(q[idx])) - yb) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    torch.save(model.state_dict(), args.out / "filter.pt")
    gains = psnr_gain(model, val)
    print("validation PSNR gain per quality (dB):", [round(g, 3) for g in gains], flush=True)
    (args.out / "report.json").write_text(json.dumps({"steps": step, "gains": gains}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())

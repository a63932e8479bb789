"""Fine-tune the shipped ``wavelet`` model for its format-2 entropy coder (spatial contexts).

    python scripts/finetune_wavelet.py --init weights/wavelet.safetensors --out build/wavelet-ft \
        --steps 1500 --batch 16 --lr 1e-4

Format 2 codes the thumbnail channels (``codecs.learned_wavelet.thumbnail_channels``) by DPCM
from decoded neighbours, so the training rate of those channels is here a discretised Laplace
centred on the prediction the coder makes, ``(W + N) / 2`` of the noisy latent, with a scale
that grows with the neighbours' activity ``|W - NW| + |N - NW| + |NE - N|`` (a learned base and
slope per channel and quality, training-only parameters). The other channels keep the
hyperprior's Gaussian. Warm start from a frozen weights file (its float encoder and the
dequantised integer decoder); data split as ``train_wavelet.py`` (held-out photos never read,
the validation photos choose ``best.safetensors``; Kodak is never read). Then
``python -m neuralcodec.compress.wavelet --checkpoint OUT/best.safetensors --out W``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from train_wavelet import VAL_EVERY, validation_crops  # noqa: E402

from neuralcodec.codecs.learned_wavelet import thumbnail_channels  # noqa: E402
from neuralcodec.datasets.paths import data_root  # noqa: E402
from neuralcodec.datasets.training import CropSampler, split_photos  # noqa: E402
from neuralcodec.entropy.conditionals import LaplaceConditional  # noqa: E402
from neuralcodec.entropy.models import quantize_noise, quantize_ste  # noqa: E402
from neuralcodec.models import frozen as frozen_protocol  # noqa: E402
from neuralcodec.models.wavelet import WaveletModel  # noqa: E402
from neuralcodec.train import lr_at, save_checkpoint  # noqa: E402


class ThumbnailRate(nn.Module):
    """Training rate of the DPCM-coded channels: Laplace(pred, base + slope * activity)."""

    def __init__(self, channels: int, qualities: int):
        super().__init__()
        self.log_base = nn.Parameter(torch.zeros(qualities, channels))
        self.log_slope = nn.Parameter(torch.full((qualities, channels), -1.0))
        self.laplace = LaplaceConditional()

    def forward(self, t: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Likelihoods of ``t`` (B, K, H, W): the noisy (or rounded) thumbnail channels."""
        p = F.pad(t, (1, 1, 1, 0), mode="replicate")
        w, n, nw, ne = p[..., 1:, :-2], p[..., :-1, 1:-1], p[..., :-1, :-2], p[..., :-1, 2:]
        pred = 0.5 * (w + n)
        act = (w - nw).abs() + (n - nw).abs() + (ne - n).abs()
        base = self.log_base[q].exp()[:, :, None, None]
        slope = self.log_slope[q].exp()[:, :, None, None]
        return self.laplace.likelihood(t, base + slope * act.detach(), pred)


def forward(model: WaveletModel, rate: ThumbnailRate, dc: list[int], x, q, train: bool):
    """(x_hat, {name: likelihoods}) with the format-2 rate model."""
    m = model.config.m
    other = [c for c in range(m) if c not in dc]
    y = model.g_a(x) * model.y_gain.gain(q)
    z = model.h_a(y) * model.z_gain.gain(q)
    z_q = quantize_noise(z) if train else torch.round(z)
    lik = {"z": model.z_density.likelihood(z_q)}
    scales, means = model.hyper_params(quantize_ste(z) if train else z_q, q)
    y_q = quantize_noise(y) if train else None
    if train:
        lik["y"] = model.y_conditional.likelihood(y_q[:, other], scales[:, other], means[:, other])
        lik["t"] = rate(y_q[:, dc], q)
    thumb = torch.zeros(m, dtype=torch.bool)
    thumb[dc] = True
    y_hat = torch.where(
        thumb[None, :, None, None], quantize_ste(y), quantize_ste(y - means) + means
    )
    if not train:
        lik["y"] = model.y_conditional.likelihood(
            y_hat[:, other], scales[:, other], means[:, other]
        )
        lik["t"] = rate(y_hat[:, dc], q)
    x_hat = model.g_s(y_hat * model.y_gain.inverse(q))
    return x_hat, lik


def rd(x_hat, lik, x, lambdas):
    b, _, h, w = x.shape
    bits = sum(torch.log2(v).reshape(b, -1).sum(1) for v in lik.values())
    bpp = -bits / (h * w)
    mse = (x_hat - x).pow(2).reshape(b, -1).mean(1)
    loss = (lambdas * 255**2 * mse + bpp).mean()
    psnr = (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean()
    return {"loss": loss, "bpp": bpp.mean(), "psnr": psnr}


@torch.no_grad()
def validate(model, rate, dc, crops, lambdas) -> dict[str, float]:
    model.eval()
    totals = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0}
    nq = len(lambdas)
    for qi in range(nq):
        for chunk in crops.split(8):
            q = torch.full((chunk.shape[0],), qi, dtype=torch.int64)
            x_hat, lik = forward(model, rate, dc, chunk, q, train=False)
            stats = rd(x_hat.clamp(0, 1), lik, chunk, lambdas[q])
            for k in totals:
                totals[k] += float(stats[k]) * chunk.shape[0] / (crops.shape[0] * nq)
    model.train()
    return totals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", type=Path, required=True, help="frozen wavelet weights to start from")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--gain-lr-scale", type=float, default=20.0)
    p.add_argument("--rate-lr-scale", type=float, default=50.0)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    frozen = frozen_protocol.load(args.init, kinds=("wavelet",))
    dc = list(thumbnail_channels(frozen))
    model = WaveletModel(frozen.model.config)
    model.load_state_dict({k: v.float() for k, v in frozen.model.state_dict().items()})
    model.train()
    config = model.config
    rate = ThumbnailRate(len(dc), len(config.lambdas))
    gains = [p for name, p in model.named_parameters() if "_gain." in name]
    others = [p for name, p in model.named_parameters() if "_gain." not in name]
    opt = torch.optim.Adam(
        [
            {"params": others, "scale": 1.0},
            {"params": gains, "scale": args.gain_lr_scale},
            {"params": list(rate.parameters()), "scale": args.rate_lr_scale},
        ],
        lr=args.lr,
    )
    root = args.data or data_root() / "train"
    train_files, val_files, _ = split_photos(root, VAL_EVERY)
    data = CropSampler(root, args.crop, seed=args.seed, files=train_files)
    val = validation_crops(val_files)
    lambdas = torch.tensor(config.lambdas)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train.log").open("a")
    # fit the rate model's few parameters first (the transforms frozen), so that step 0 of the
    # fine-tune sees a sensible rate for the thumbnail channels
    fit = torch.optim.Adam(rate.parameters(), lr=0.05)
    for _ in range(100):
        x = data.batch(args.batch)
        q = torch.randint(0, len(config.lambdas), (args.batch,))
        with torch.no_grad():
            t = quantize_noise(model.g_a(x) * model.y_gain.gain(q))[:, dc]
        loss = -torch.log2(rate(t, q)).mean()
        fit.zero_grad()
        loss.backward()
        fit.step()
    best = validate(model, rate, dc, val, lambdas)
    print(f"thumbnail channels {dc}; step 0 val {best}", file=log, flush=True)
    best_loss, window, t0 = best["loss"], [], time.time()
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, args) * group["scale"]
        x = data.batch(args.batch)
        q = torch.randint(0, len(config.lambdas), (args.batch,))
        stats = rd(*forward(model, rate, dc, x, q, train=True), x, lambdas[q])
        opt.zero_grad(set_to_none=True)
        stats["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window.append({k: float(v.detach()) for k, v in stats.items()})
        if step % 50 == 0:
            avg = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            window = []
            print(
                f"step {step} loss {avg['loss']:.4f} bpp {avg['bpp']:.4f} psnr {avg['psnr']:.2f} "
                f"({(time.time() - t0) / 50:.3f} s/step)",
                file=log,
                flush=True,
            )
            t0 = time.time()
        if step % args.val_every == 0 or step == args.steps:
            save_checkpoint(args.out, model, opt, step)
            v = validate(model, rate, dc, val, lambdas)
            mark = ""
            if v["loss"] < best_loss:
                best_loss, mark = v["loss"], " (best)"
                save_file(
                    {k: t.contiguous() for k, t in model.state_dict().items()},
                    str(args.out / "best.safetensors"),
                    metadata={"config": json.dumps(config.to_dict()), "step": str(step)},
                )
            print(f"step {step} val {v}{mark}", file=log, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

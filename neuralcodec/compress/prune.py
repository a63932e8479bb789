"""Structured channel pruning of the image synthesis, then a short synthesis-only fine-tune.

::

    g_s (hidden widths n, n, n) --importance on training latents--> keep the top channels
        --> narrower g_s (widths a, b, c) --fine-tune (distortion only)--> --> compress.elic

The synthesis runs after every entropy-coded value is known, so pruning it changes no rate:
fine-tuning needs only the distortion, ``sum_q lambda_q 255^2 MSE`` with the latents of the
frozen analysis (``y_hat = round(y - mu) + mu``, mu from the hyper-synthesis, as the coder
rounds), and nothing else of the model moves. The hidden channels at the two finest stages are
where the decoder spends its time (the 96x96 transposed convolution at half resolution and its
inverse GDN); halving them divides that work by four.

Importance of a hidden channel: its mean square activation (calibration latents, every quality)
times the squared norm of the weights that read it in the next layer, i.e. how much signal
reaches the next layer through it.

``python -m neuralcodec.compress.prune --source weights/elic.safetensors --widths 96,48,48
--steps 1500 --out build/prune`` checkpoints every ``--save-every`` steps (``--resume``), and
writes ``elic-int`` weights (``--final``) through ``compress.elic`` when done. On a GPU machine
(``scripts/device_train_prune.sh``): ``--device cuda --pack DIR --minutes M`` trains on a crop
pack (``datasets/pack.py``) for a time budget; ``--resume --steps 0 --final FILE`` then
quantises the returned checkpoint here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..datasets.paths import data_root
from ..datasets.training import CropSampler
from ..models import frozen as frozen_protocol
from ..models.transforms import HybridSynthesis
from ..train import TimeBudget

HIDDEN = (0, 2, 4)  # residual indices of the deconvolutions that produce hidden channels


def channel_importance(g_s: HybridSynthesis, inputs: list[torch.Tensor]) -> list[np.ndarray]:
    """Per hidden stage: mean square activation entering the next layer x its squared weights."""
    res = g_s.residual
    readers = [res[i + 2] for i in HIDDEN]  # the layers reading each hidden stage
    power = [torch.zeros(m.in_channels, dtype=torch.float64) for m in readers]
    counts = [0, 0, 0]

    def hook(k):
        def f(_m, args):
            a = args[0].detach().double()
            power[k] += a.pow(2).mean(dim=(0, 2, 3))
            counts[k] += 1

        return f

    handles = [m.register_forward_pre_hook(hook(k)) for k, m in enumerate(readers)]
    try:
        with torch.no_grad():
            for y in inputs:
                g_s(y)
    finally:
        for h in handles:
            h.remove()
    out = []
    for k, m in enumerate(readers):
        w = m.weight.detach().double()  # transposed: (cin, cout, k, k)
        norm = w.pow(2).sum(dim=(1, 2, 3))
        out.append((power[k] / max(counts[k], 1) * norm).numpy())
    return out


def prune_synthesis(
    g_s: HybridSynthesis, widths: tuple[int, int, int], importance: list[np.ndarray]
) -> HybridSynthesis:
    """A narrower copy of ``g_s`` keeping the most important channels of each hidden stage."""
    m = g_s.block.in_channels
    n = g_s.residual[0].out_channels
    new = HybridSynthesis(n, m, tuple(widths))
    keep = [
        torch.from_numpy(np.sort(np.argsort(-imp, kind="stable")[:w]))
        for imp, w in zip(importance, widths, strict=True)
    ]
    with torch.no_grad():
        new.block.weight.copy_(g_s.block.weight)
        old, res = g_s.residual, new.residual
        prev = None
        for stage, i in enumerate(HIDDEN):
            idx = keep[stage]
            w = old[i].weight
            w = w if prev is None else w[prev]
            res[i].weight.copy_(w[:, idx])
            res[i].bias.copy_(old[i].bias[idx])
            gdn_old, gdn_new = old[i + 1], res[i + 1]
            gdn_new.beta.param.copy_(gdn_old.beta.param[idx])
            gdn_new.gamma.param.copy_(gdn_old.gamma.param[idx][:, idx])
            prev = idx
        res[6].weight.copy_(old[6].weight[prev])
        res[6].bias.copy_(old[6].bias)
    return new


def latents(model: nn.Module, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The synthesis input the coder produces, up to the context model's mean refinement:
    ``(round(y - mu) + mu) / gain`` with mu from the hyper-synthesis."""
    with torch.no_grad():
        y = model.g_a(x) * model.y_gain.gain(q)
        z = torch.round(model.h_a(y) * model.z_gain.gain(q))
        hyper = model.h_s(z * model.z_gain.inverse(q))
        mu = hyper[:, model.config.m :]
        y_hat = torch.round(y - mu) + mu
        return y_hat * model.y_gain.inverse(q)


def distortion(model: nn.Module, g_s: nn.Module, val: list[tuple[torch.Tensor, int]]) -> float:
    """Mean ``lambda_q 255^2 MSE`` of ``g_s`` over fixed (crop, quality) pairs."""
    total = 0.0
    with torch.no_grad():
        for x, q in val:
            qt = torch.tensor([q], device=x.device)
            mse = float((g_s(latents(model, x, qt)) - x).pow(2).mean())
            total += model.config.lambdas[q] * 255**2 * mse
    return total / len(val)


def finetune(
    model: nn.Module,
    sampler: CropSampler,
    steps: int,
    out: Path,
    batch: int = 8,
    lr: float = 1e-4,
    save_every: int = 100,
    resume: bool = False,
    log=print,
    val: list[tuple[torch.Tensor, int]] | None = None,
    minutes: float = 0.0,
) -> dict:
    """Train ``model.g_s`` alone on ``sum_q lambda_q 255^2 MSE``; checkpoints under ``out``;
    the distortion on ``val`` is logged at every checkpoint. ``minutes``: stop (with a
    checkpoint) once that much time has passed, whatever ``steps`` says."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "synthesis.pt"
    g_s = model.g_s
    for p in model.parameters():
        p.requires_grad_(False)
    for p in g_s.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(g_s.parameters(), lr=lr)
    start = 0
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False, map_location=next(g_s.parameters()).device)
        g_s.load_state_dict(state["g_s"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
        sampler.rng = np.random.default_rng(state["seed"] + start)
        log(f"resumed at step {start}")
    device = next(g_s.parameters()).device
    lambdas = torch.tensor(model.config.lambdas, device=device)
    qn = len(lambdas)
    g = torch.Generator().manual_seed(start)
    t0, history = time.time(), []
    budget = TimeBudget(minutes)
    for step in range(start, steps):
        x = sampler.batch(batch).to(device)
        q = torch.randint(0, qn, (batch,), generator=g).to(device)
        y_hat = latents(model, x, q)
        x_hat = g_s(y_hat)
        mse = (x_hat - x).pow(2).mean(dim=(1, 2, 3))
        loss = (lambdas[q] * 255**2 * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        timeout = budget.over()
        if (step + 1) % save_every == 0 or step + 1 == steps or timeout:
            torch.save(
                {"g_s": g_s.state_dict(), "opt": opt.state_dict(), "step": step + 1, "seed": 0},
                ckpt,
            )
            rate = (step + 1 - start) / (time.time() - t0)
            v = f" val {distortion(model, g_s, val):.4f}" if val else ""
            log(
                f"step {step + 1}/{steps} loss {np.mean(history[-save_every:]):.4f}{v}"
                f" ({rate:.2f} steps/s)"
            )
        if timeout:
            steps = step + 1
            break
    for p in model.parameters():
        p.requires_grad_(False)
    return {
        "steps": max(steps, start),
        "final_loss": float(np.mean(history[-save_every:])) if history else None,
    }


def main(argv: list[str] | None = None) -> int:
    from . import elic as elic_quant

    def log(*a):
        print(*a, flush=True)

    p = argparse.ArgumentParser(prog="python -m neuralcodec.compress.prune", description=__doc__)
    p.add_argument("--source", type=Path, required=True, help="float elic weights")
    p.add_argument("--widths", default="96,48,48", help="hidden widths of the pruned synthesis")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--final", type=Path, default=None, help="write elic-int weights here at the end"
    )
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pack", type=Path, default=None, help="train on a crop pack's crops")
    p.add_argument("--minutes", type=float, default=0.0, help="time budget (0: --steps only)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    widths = tuple(int(v) for v in args.widths.split(","))
    source = frozen_protocol.load(args.source, kinds=("elic",))
    model = source.model.eval().to(device)
    root = args.data or data_root() / "train"
    if args.pack is not None:  # the pack's validation crops stand for the calibration crops
        from ..datasets.pack import read_pack

        pack_val = read_pack(args.pack)[1][:6, :, :128, :128].to(device)
        crops = [c[None].float() / 255 for c in pack_val]
    else:
        crops = [c.to(device) for c in elic_quant.calibration_crops(root, 6, 128)]
    inputs = [
        latents(model, x, torch.tensor([q])) for x in crops for q in range(model.num_qualities)
    ]
    importance = channel_importance(model.g_s, inputs)
    val = [(x, q) for x in crops for q in range(0, model.num_qualities, 2)]
    before = distortion(model, model.g_s, val)
    model.g_s = prune_synthesis(model.g_s, widths, importance)
    model.config.synthesis_widths = widths
    pruned = distortion(model, model.g_s, val)
    log(f"validation distortion: full {before:.4f}, pruned {pruned:.4f}")
    if args.pack is not None:
        from ..datasets.pack import PackSampler

        sampler = PackSampler(args.pack, args.crop, device)
    else:
        sampler = CropSampler(root, args.crop)
    info = finetune(model, sampler, args.steps, args.out, args.batch, args.lr, args.save_every,
                    args.resume, log, val, args.minutes)  # fmt: skip
    info.update(val_full=before, val_pruned=pruned, val_final=distortion(model, model.g_s, val))
    log(json.dumps(info))
    model.eval().cpu()
    if args.final:
        peaks = elic_quant.calibrate(source, elic_quant.calibration_crops(root, 12))
        meta = {
            **source.meta,
            "model_id": f"{source.meta.get('model_id', 'elic')}-p{'-'.join(map(str, widths))}-int",
            "quantized_from": source.meta.get("model_id", "elic"),
            "pruned": {"widths": list(widths), **info, "batch": args.batch, "crop": args.crop},
            "calibration": {"images": 12, "crop": elic_quant.CROP, "peaks": peaks},
        }
        frozen = elic_quant.quantize(source, peaks, meta)
        sha = frozen_protocol.save(frozen, args.final)
        print(json.dumps({"weights": str(args.final), "sha256": sha}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

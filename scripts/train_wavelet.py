"""Train the ``wavelet`` model (models/wavelet.py) on random crops of the training photos, on one
CPU thread, variable rate (one random quality per crop).

    python scripts/train_wavelet.py --out build/wavelet-run --steps 12000 [--resume]

The photos under ``<data root>/train`` (never Kodak) are split three ways, by name:
* test: the eight photos whose centre crops are the held-out benchmark
  (``datasets.training.HELD_OUT_BENCH``, as in ``results/heldout-crops``): never seen in
  training, calibration or checkpoint choice;
* validation: every ``VAL_EVERY``-th remaining photo; fixed centre crops of them score every
  checkpoint (the RD loss averaged over all qualities, with rounded latents) and the best one is
  kept as ``best.safetensors``;
* training: the rest.

Step 0 is the KLT codec (``init_from_crops``). Checkpoints: ``last.safetensors`` + ``last.opt``
every ``--save-every`` steps (``--resume`` continues from them), ``best.safetensors``.

On a GPU machine (``scripts/device_train_wavelet.sh``): ``--device cuda --pack DIR --minutes M``
trains on a crop pack (``datasets/pack.py``; its validation crops choose the checkpoint) for a
time budget, the cosine schedule's length set from the speed of the first 30 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralcodec.datasets.pack import PackSampler, read_pack  # noqa: E402
from neuralcodec.datasets.paths import data_root  # noqa: E402
from neuralcodec.datasets.training import CropSampler, split_photos  # noqa: E402
from neuralcodec.models.hyperprior import rd_loss  # noqa: E402
from neuralcodec.models.wavelet import WaveletConfig, WaveletModel, init_from_crops  # noqa: E402
from neuralcodec.train import TimeBudget, lr_at, save_checkpoint  # noqa: E402

VAL_EVERY = 25
VAL_CROP = 256


def validation_crops(files: list[Path]) -> torch.Tensor:
    """Centre VAL_CROP crops of the validation photos (those large enough)."""
    sampler = CropSampler(Path("."), VAL_CROP, files=files)
    out = []
    for im in sampler.images:
        _, h, w = im.shape
        y0, x0 = (h - VAL_CROP) // 2, (w - VAL_CROP) // 2
        out.append(im[:, y0 : y0 + VAL_CROP, x0 : x0 + VAL_CROP])
    return torch.stack(out).float() / 255.0


@torch.no_grad()
def validate(model: WaveletModel, crops: torch.Tensor, lambdas: torch.Tensor) -> dict[str, float]:
    """RD loss with rounded latents (eval mode), averaged over crops and every quality."""
    model.eval()
    totals = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0}
    nq = len(lambdas)
    for qi in range(nq):
        for chunk in crops.split(8):
            q = torch.full((chunk.shape[0],), qi, dtype=torch.int64, device=chunk.device)
            y = model.g_a(chunk) * model.y_gain.gain(q)
            z_hat = torch.round(model.h_a(y) * model.z_gain.gain(q))
            scales, means = model.hyper_params(z_hat, q)
            y_hat = torch.round(y - means) + means
            out = {
                "x_hat": model.g_s(y_hat * model.y_gain.inverse(q)).clamp(0, 1),
                "likelihoods": {
                    "z": model.z_density.likelihood(z_hat),
                    "y": model.y_conditional.likelihood(y_hat, scales, means),
                },
            }
            stats = rd_loss(out, chunk, lambdas[q])
            w = chunk.shape[0] / (crops.shape[0] * nq)
            for k in totals:
                totals[k] += float(stats[k]) * w
    model.train()
    return totals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--gain-lr-scale", type=float, default=20.0)
    p.add_argument("--density-lr-scale", type=float, default=10.0)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--m", type=int, default=96)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--hyper", type=int, default=64)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--probe", type=int, default=0, help="time this many steps and exit")
    p.add_argument("--device", default="cpu")
    p.add_argument("--pack", type=Path, default=None, help="train on a crop pack's crops")
    p.add_argument("--minutes", type=float, default=0.0, help="time budget (0: --steps only)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    config = WaveletConfig(
        levels=args.levels, m=args.m, n=args.n, hyper=args.hyper, width=args.width,
        depth=args.depth,
    )  # fmt: skip
    model = WaveletModel(config)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    # The gain units and the hyper-latent's density are few parameters that must travel far
    # (the density starts wide and a near-constant channel should cost almost nothing): at the
    # transforms' learning rate they would take most of a CPU budget.
    gains = [p for name, p in model.named_parameters() if "_gain." in name]
    density = [p for name, p in model.named_parameters() if name.startswith("z_density.")]
    others = [
        p
        for name, p in model.named_parameters()
        if "_gain." not in name and not name.startswith("z_density.")
    ]
    opt = torch.optim.Adam(
        [
            {"params": others, "scale": 1.0},
            {"params": gains, "scale": args.gain_lr_scale},
            {"params": density, "scale": args.density_lr_scale},
        ],
        lr=args.lr,
    )
    root = args.data or data_root() / "train"
    train_files, val_files, test_files = split_photos(root, VAL_EVERY)
    step, best = 0, float("inf")
    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "state.json"
    if args.resume and (args.out / "last.safetensors").exists():
        model.load_state_dict(load_file(str(args.out / "last.safetensors"), device=str(device)))
        state = torch.load(args.out / "last.opt", weights_only=True, map_location=device)
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        if state_path.exists():
            best = json.loads(state_path.read_text())["best"]
    if args.pack is not None:
        data = PackSampler(args.pack, args.crop, device, seed=args.seed + step)
    else:
        data = CropSampler(root, args.crop, seed=args.seed + step, files=train_files)
    if step == 0:
        values = init_from_crops(model, data.batch(512, crop=64))
        kept = float(values[: config.m].sum() / values.sum())
        print(f"KLT init: {kept:.5f} of the subband energy in {config.m} components")
    if args.pack is not None:
        val = read_pack(args.pack)[1][..., :VAL_CROP, :VAL_CROP].float().div(255.0).to(device)
    else:
        val = validation_crops(val_files).to(device)
    lambdas = torch.tensor(config.lambdas, device=device)
    log = (args.out / "train.log").open("a")
    print(
        f"{len(train_files)} training / {len(val_files)} validation ({val.shape[0]} crops) / "
        f"{len(test_files)} test photos; {config}; step {step}",
        file=log,
        flush=True,
    )
    if step == 0 and not args.probe:
        v = validate(model, val, lambdas)
        print(f"step 0 val loss {v['loss']:.4f} bpp {v['bpp']:.4f} psnr {v['psnr']:.2f}", file=log)
    t0, window, start = time.time(), [], time.time()
    budget = TimeBudget(args.minutes)
    while step < args.steps:
        args.steps = budget.total(step, args.steps)  # the last step is saved and validated
        if budget.note:
            print(budget.note, file=log)
            budget.note = None
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args) * group["scale"]
        x = data.batch(args.batch).to(device)
        q = torch.randint(0, len(config.lambdas), (args.batch,)).to(device)
        stats = rd_loss(model(x, q), x, lambdas[q])
        opt.zero_grad(set_to_none=True)
        stats["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if args.probe and step >= args.probe:
            print(f"{(time.time() - start) / step:.3f} s/step")
            return 0
        window.append({k: float(v.detach()) for k, v in stats.items()})
        if step % 50 == 0:
            avg = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            window = []
            rate = (time.time() - t0) / 50
            t0 = time.time()
            print(
                f"step {step} lr {lr_at(step, args):.2e} loss {avg['loss']:.4f} "
                f"bpp {avg['bpp']:.4f} psnr {avg['psnr']:.2f} ({rate:.3f} s/step)",
                file=log,
                flush=True,
            )
        if step % args.save_every == 0 or step == args.steps:
            save_checkpoint(args.out, model, opt, step)
        if step % args.val_every == 0 or step == args.steps:
            v = validate(model, val, lambdas)
            mark = ""
            if v["loss"] < best:
                best, mark = v["loss"], " (best)"
                save_file(
                    {k: t.detach().cpu().contiguous() for k, t in model.state_dict().items()},
                    str(args.out / "best.safetensors"),
                    metadata={"config": json.dumps(config.to_dict()), "step": str(step)},
                )
                state_path.write_text(json.dumps({"best": best, "step": step}))
            print(
                f"step {step} val loss {v['loss']:.4f} bpp {v['bpp']:.4f} "
                f"psnr {v['psnr']:.2f}{mark}",
                file=log,
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

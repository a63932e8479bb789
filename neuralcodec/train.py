"""``codec train``: train a variable-rate image model on random crops, on the CPU.

Every step draws a batch of crops and one quality level per crop, so a single model learns all
rate-distortion trade-offs at once. Checkpoints (weights as safetensors + optimizer state) are
written every ``--save-every`` steps into ``--out``; ``--resume`` continues from the newest one
and ``--init`` warm-starts from another model's weights (matching tensors only).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .datasets.paths import data_root
from .datasets.training import CropSampler
from .export import load_model
from .models.elic import ElicConfig, ElicModel
from .models.hyperprior import HyperpriorConfig, HyperpriorModel, rd_loss
from .models.transforms import HybridAnalysis, init_block_basis
from .models.widen import widen_elic

MODEL_KINDS = ("mean-scale", "scale", "factorized", "elic")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=MODEL_KINDS, default="mean-scale")
    p.add_argument("--n", type=int, default=96, help="transform width")
    p.add_argument("--m", type=int, default=160, help="latent channels")
    p.add_argument(
        "--transform",
        choices=("gdn", "hybrid"),
        default="hybrid",
        help="g_a/g_s: GDN stack, or block transform + GDN residual (see models/transforms.py)",
    )
    p.add_argument(
        "--lambdas",
        type=_lambda_list,
        default=None,
        help="comma-separated rate-distortion trade-offs, one per quality (default: the model's)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="training image folder (default: <data root>/train; data root: $NEURALCODEC_DATA, "
        "else ../shared/data beside the checkout)",
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument(
        "--gain-lr-scale", type=float, default=20.0, help="learning-rate factor of the gain units"
    )
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--resume", action="store_true", help="continue from --out/last.*")
    p.add_argument("--init", type=Path, default=None, help="warm start from a .safetensors")
    p.add_argument("--seed", type=int, default=0)


def _lambda_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if len(values) < 2 or any(not 0 < v < 10 for v in values) or list(values) != sorted(values):
        raise argparse.ArgumentTypeError(
            "lambdas must be at least two increasing values in (0, 10)"
        )
    return values


def remap_gains(log_gain: torch.Tensor, src: tuple[float, ...], dst: tuple[float, ...]):
    """Gain-unit logs learned at lambdas ``src`` read at lambdas ``dst``.

    Each channel's log gain is interpolated linearly in log(lambda), and extrapolated from the
    two nearest trained levels outside the trained range, so a warm start with a shifted
    quality ladder begins close to what the source model does at those trade-offs.
    """
    xs = torch.log(torch.tensor(src, dtype=torch.float64))
    out = torch.empty(len(dst), log_gain.shape[1], dtype=torch.float64)
    for i, lam in enumerate(dst):
        x = math.log(lam)
        j = int(torch.searchsorted(xs, torch.tensor(x, dtype=torch.float64)).clamp(1, len(src) - 1))
        t = (x - xs[j - 1]) / (xs[j] - xs[j - 1])
        out[i] = (1 - t) * log_gain[j - 1].double() + t * log_gain[j].double()
    return out.to(log_gain.dtype)


class TimeBudget:
    """A training run's time limit (``minutes``; 0: none). ``total(step, total)`` is the
    schedule's length to use at ``step``: ``PROBE`` steps after the first call it is cut to what
    the measured speed fits in 90% of the time left (so a cosine schedule still ends at its
    floor), and once the time is up the current step becomes the last. ``note`` says what the
    probe measured, once."""

    PROBE = 30

    def __init__(self, minutes: float):
        self.deadline = time.time() + 60 * minutes if minutes else None
        self.first: tuple[int, float] | None = None
        self.note: str | None = None

    def over(self) -> bool:
        return self.deadline is not None and time.time() > self.deadline

    def total(self, step: int, total: int) -> int:
        if self.deadline is None:
            return total
        now = time.time()
        if self.first is None:
            self.first = (step, now)
        elif step == self.first[0] + self.PROBE:
            rate = self.PROBE / max(now - self.first[1], 1e-9)
            total = min(total, step + max(1, int(rate * (self.deadline - now) * 0.9)))
            self.note = f"{rate:.1f} steps/s: the schedule ends at step {total}"
        if now > self.deadline:
            total = min(total, step + 1)
        return total


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr`` at ``steps``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * t))


def save_checkpoint(
    out: Path, model: HyperpriorModel, opt: torch.optim.Optimizer, step: int
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "last.safetensors.tmp"
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        str(tmp),
        metadata={"config": json.dumps(model.config.to_dict()), "step": str(step)},
    )
    tmp.replace(out / "last.safetensors")
    torch.save({"optimizer": opt.state_dict(), "step": step}, out / "last.opt.tmp")
    (out / "last.opt.tmp").replace(out / "last.opt")


def warm_start(model: HyperpriorModel, path: Path, crops=None) -> int:
    """Load ``path``'s matching tensors into ``model``; returns how many.

    An ELIC source with fewer latent channels than an ELIC ``model`` is first widened
    (``models.widen``), which needs ``crops()``, a batch of training crops.
    """
    # Shipped weights are loaded as the codec loads them, which rebuilds the networks stored
    # only in integer form and widens float16 tensors.
    source = load_model(path)
    if (
        isinstance(source, ElicModel)
        and isinstance(model, ElicModel)
        and source.config.m < model.config.m
    ):
        if crops is None:
            raise ValueError("widening a warm start needs training crops")
        source = widen_elic(source, model.config.m, crops())
        if source.config.groups != model.config.groups:
            raise ValueError(
                f"widened groups {source.config.groups} differ from {model.config.groups}"
            )
    if source is not None:
        src, src_lambdas = source.state_dict(), tuple(source.config.lambdas)
    else:
        src, src_lambdas = load_file(str(path)), ()
    own = model.state_dict()
    dst_lambdas = tuple(model.config.lambdas)
    if src_lambdas and src_lambdas != dst_lambdas:
        for name, value in list(src.items()):
            if "_gain." in name and name in own and value.shape[0] == len(src_lambdas):
                src[name] = remap_gains(value, src_lambdas, dst_lambdas)
    matched = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return len(matched)


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Contiguous (NCHW) memory: channels-last measured 3x slower for these layers on this CPU.
    extra = {"lambdas": args.lambdas} if args.lambdas else {}
    if args.model == "elic":
        model = ElicModel(ElicConfig(n=args.n, m=args.m, transform=args.transform, **extra))
    else:
        model = HyperpriorModel(
            HyperpriorConfig(kind=args.model, n=args.n, m=args.m, transform=args.transform, **extra)
        )
    config = model.config
    # The gain units are few (qualities x channels) and must travel far (a factor of 10 or more
    # between qualities): at the transforms' learning rate they would need tens of thousands of
    # steps, so they learn ``--gain-lr-scale`` times faster.
    gains = [p for name, p in model.named_parameters() if "_gain." in name]
    others = [p for name, p in model.named_parameters() if "_gain." not in name]
    opt = torch.optim.Adam(
        [{"params": others, "scale": 1.0}, {"params": gains, "scale": args.gain_lr_scale}],
        lr=args.lr,
    )
    step = 0
    if args.resume and (args.out / "last.safetensors").exists():
        model.load_state_dict(load_file(str(args.out / "last.safetensors")))
        state = torch.load(args.out / "last.opt", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    data = CropSampler(args.data or data_root() / "train", args.crop, seed=args.seed + step)
    if step == 0 and args.init is not None:
        loaded = warm_start(model, args.init, crops=lambda: data.batch(64, crop=256))
        print(f"warm start: {loaded} tensors from {args.init}")
    if step == 0 and args.init is None and isinstance(model.g_a, HybridAnalysis):
        init_block_basis(model.g_a, model.g_s, data.batch(512, crop=64))
    lambdas = torch.tensor(config.lambdas)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train.log").open("a")
    print(
        f"{len(data)} training images; model {config}; starting at step {step}",
        file=log,
        flush=True,
    )
    t0, window = time.time(), []
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args) * group["scale"]
        x = data.batch(args.batch)
        q = torch.randint(0, len(config.lambdas), (args.batch,))
        out = model(x, q)
        stats = rd_loss(out, x, lambdas[q])
        opt.zero_grad(set_to_none=True)
        stats["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        window.append({k: float(v.detach()) for k, v in stats.items()})
        if step % 50 == 0:
            avg = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            window = []
            rate = (time.time() - t0) / 50
            t0 = time.time()
            print(
                f"step {step} lr {lr_at(step, args):.2e} loss {avg['loss']:.4f} "
                f"bpp {avg['bpp']:.4f} psnr {avg['psnr']:.2f} ({rate:.2f} s/step)",
                file=log,
                flush=True,
            )
        if step % args.save_every == 0 or step == args.steps:
            save_checkpoint(args.out, model, opt, step)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec train", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""Train the ``mlic`` entropy model on cached ``elic`` latents, on one CPU thread.

With ``elic``'s transforms frozen, the analysis ``g_a(x)`` of a crop never changes and neither
does the distortion, so training is a rate-only problem on latents::

    cache:  crops (full resolution, half chosen for texture) --g_a--> float16 (256, h, w) files
    train:  y = cached * gain[q] (random q per sample) --MlicModel.code_forward--> bits -> Adam
    freeze: best validation checkpoint --freeze_mlic (+ elic-int's integer synthesis)--> weights

Frozen: g_a, g_s, the y gains (so ``elic-int``'s integer synthesis still fits), the hyperprior
and the channel / spatial contexts (the coder takes those from ``elic-int``). Trained: the
parameter aggregations and the new global-context projections (warm-started from ``elic``; the
new aggregation columns start at zero, so step 0 codes exactly as ``elic``).

Validation: every ``VAL_EVERY``-th training photo plus the held-out benchmark photos
(``HELD_OUT_BENCH``) are never cached for training; checkpoints are chosen on the mean relative
bpp (rounded latents, eval mode) over the validation crops at every quality against step 0.

    python scripts/train_mlic.py cache --out /work/mlic-cache --crops 1200
    python scripts/train_mlic.py train --cache /work/mlic-cache --out /work/mlic-run --steps 8000
    python scripts/train_mlic.py train ... --resume
    python scripts/train_mlic.py freeze --run /work/mlic-run --out weights/mlic.safetensors

On a GPU machine (``scripts/device_train_mlic.sh``): ``scripts/device_pack.py`` writes a folder
of training and validation crops small enough to travel with the job, ``cache --pack``
computes their latents there (with flips and rotations), and ``train --device cuda --minutes M
--trainable-only`` trains for a time budget and keeps only the trained tensors in ``best.pt``:

    python scripts/device_pack.py --out devdata/crops
    python scripts/train_mlic.py cache --pack devdata/crops --out /tmp/cache --device cuda
    python scripts/train_mlic.py train --cache /tmp/cache --out /tmp/run --device cuda \
        --minutes 8 --batch 64 --base elic-int --trainable-only
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
from torch.nn import functional as F
from torch.nn.utils import parametrize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralcodec.datasets.pack import read_pack  # noqa: E402
from neuralcodec.datasets.paths import data_root  # noqa: E402
from neuralcodec.datasets.training import _image_files  # noqa: E402
from neuralcodec.models import frozen as frozen_protocol  # noqa: E402
from neuralcodec.models.mlic import MlicConfig, MlicModel, freeze_mlic  # noqa: E402
from neuralcodec.models.mlic import save as save_mlic  # noqa: E402
from neuralcodec.train import TimeBudget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VAL_EVERY = 12
# centre crops of these are results/heldout-crops (scripts/heldout_crops.py): never trained on
HELD_OUT_BENCH = {f"img_{i:03d}" for i in range(20, 26)} | {"030", "031"}
NEW_MODULES = ("qk.", "v_inter.", "v_intra.")
NEW_SUFFIX = ".extra"  # the aggregations' global-context columns (``NewColumns``)
# hats carry no gradient to the means (straight-through rounding around the mean), so a frozen
# network that only reads hats (h_s, the channel contexts) costs no backward pass at all
FROZEN_MODULES = (
    "g_a.",
    "g_s.",
    "y_gain.",
    "h_a.",
    "h_s.",
    "z_gain.",
    "z_density.",
    "channel_ctx.",
    "spatial_ctx.",
)


def split(files: list[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(train, validation, held-out benchmark) photos."""
    bench = [p for p in files if p.stem in HELD_OUT_BENCH]
    rest = [p for p in files if p.stem not in HELD_OUT_BENCH]
    val = rest[::VAL_EVERY]
    train = [p for i, p in enumerate(rest) if i % VAL_EVERY]
    return train, val, bench


def _texture(crop: np.ndarray) -> float:
    g = crop.astype(np.float32).mean(2)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def pick_crop(img: np.ndarray, size: int, rng: np.random.Generator, textured: bool) -> np.ndarray:
    h, w = img.shape[:2]
    cands = []
    for _ in range(4 if textured else 1):
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        cands.append(img[y0 : y0 + size, x0 : x0 + size])
    return max(cands, key=_texture) if textured else cands[0]


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th (0..7) flip / rotation of a (B, C, H, W) batch (k = 0: unchanged)."""
    if k & 4:
        x = x.transpose(-1, -2)
    if k & 2:
        x = x.flip(-2)
    if k & 1:
        x = x.flip(-1)
    return x


def cache_from_pack(args) -> int:
    dev = torch.device(args.device)
    # elic and elic-int hold the same float analysis: either file will do
    base = next(n for n in ("elic", "elic-int") if (ROOT / "weights" / f"{n}.safetensors").exists())
    elic = frozen_protocol.load(ROOT / "weights" / f"{base}.safetensors", kinds=(base,))
    g_a = elic.model.g_a.eval().to(dev)
    train, val = read_pack(args.pack)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"crop": int(train.shape[-1]), "train": [], "val": [], "pack": str(args.pack)}
    t0 = time.time()
    for part, crops, variants in (("val", val, 1), ("train", train, args.augment)):
        for k in range(variants):
            for i in range(0, crops.shape[0], 32):
                x = _dihedral(crops[i : i + 32].to(dev).float() / 255, k)
                with torch.no_grad():
                    y = g_a(x).half().cpu().numpy()
                for j in range(y.shape[0]):
                    name = f"{part}_{k}_{i + j:05d}.npy"
                    np.save(args.out / name, y[j])
                    meta[part].append({"file": name, "source": f"pack {i + j} variant {k}"})
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"cached {len(meta['train'])} + {len(meta['val'])} latents ({time.time() - t0:.0f} s)")
    return 0


def cmd_cache(args) -> int:
    if args.pack is not None:
        return cache_from_pack(args)
    torch.set_num_threads(1)
    files = _image_files(args.data or data_root() / "train")
    train, val, _ = split(files)
    elic = frozen_protocol.load(ROOT / "weights" / "elic.safetensors", kinds=("elic",))
    g_a = elic.model.g_a.eval()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"crop": args.crop, "train": [], "val": []}
    for part, pool, count in (("val", val, args.val_crops), ("train", train, args.crops)):
        imgs = []
        for p in pool:
            im = np.asarray(Image.open(p).convert("RGB"))
            if min(im.shape[:2]) >= args.crop:  # full resolution only, never resized
                imgs.append((p, im))
        areas = np.array([np.sqrt(im.shape[0] * im.shape[1]) for _, im in imgs])
        t0 = time.time()
        for i in range(count):
            j = (
                i % len(imgs)
                if part == "val"
                else int(rng.choice(len(imgs), p=areas / areas.sum()))
            )
            p, im = imgs[j]
            crop = pick_crop(im, args.crop, rng, textured=(part == "train" and i % 2 == 0))
            x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                y = g_a(x)[0].half().numpy()
            name = f"{part}_{i:05d}.npy"
            np.save(args.out / name, y)
            meta[part].append({"file": name, "source": str(p.relative_to(p.parents[1]))})
            if i % 100 == 0:
                print(f"{part} {i}/{count} ({time.time() - t0:.0f} s)", flush=True)
        (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    return 0


def build_model(base: str = "elic") -> tuple[MlicModel, object]:
    """The model warm-started from ``base``: "elic" (its float networks) or "elic-int" (the
    dequantised 8-bit hyper-synthesis and contexts the coder really runs)."""
    elic = frozen_protocol.load(ROOT / "weights" / f"{base}.safetensors", kinds=(base,))
    cfg = elic.config.to_dict()
    cfg["kind"] = "mlic"
    model = MlicModel(MlicConfig.from_dict(cfg))
    model.load_elic(elic.model)
    model.detach_contexts = True  # y is fixed: the same gradients, without the dead backward
    model.rounded_rate = True  # y is fixed: train on the rate of what is coded
    return model, elic


def load_latents(cache: Path, part: str) -> torch.Tensor:
    meta = json.loads((cache / "meta.json").read_text())
    return torch.stack([torch.from_numpy(np.load(cache / e["file"])) for e in meta[part]])


def bits(model: MlicModel, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total bits of the batch (y and z)."""
    _, lik = model.code_forward(y, q)
    return sum(-torch.log2(v).sum() for v in lik.values())


@torch.no_grad()
def validate(model: MlicModel, val: torch.Tensor) -> list[float]:
    """bpp at each quality over the validation latents (eval mode: rounded)."""
    model.eval()
    out = []
    pixels = val.shape[0] * val.shape[2] * val.shape[3] * 256
    for qi in range(model.num_qualities):
        total = 0.0
        for i in range(0, val.shape[0], 8):
            ya = val[i : i + 8].float()
            q = torch.full((ya.shape[0],), qi, device=ya.device)
            total += float(bits(model, ya * model.y_gain.gain(q), q))
        out.append(total / pixels)
    model.train()
    return out


class NewColumns(nn.Module):
    """Parametrisation of an aggregation's first weight: ``W + [0 | extra]``. The global-context
    input columns get their own parameter (zero at the start) and so their own learning rate,
    while the columns warm-started from elic move slowly; ``merged_state`` folds them back."""

    def __init__(self, weight: torch.Tensor, new_in: int):
        super().__init__()
        self.old_in = weight.shape[1] - new_in
        self.extra = nn.Parameter(weight.new_zeros(weight.shape[0], new_in, *weight.shape[2:]))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + F.pad(self.extra, (0, 0, 0, 0, self.old_in, 0))


def add_new_columns(model: MlicModel) -> None:
    for k, c in enumerate(model.config.groups):
        layer = model.param_agg[k][0]
        parametrize.register_parametrization(
            layer, "weight", NewColumns(layer.weight.detach(), (2 if k else 1) * c)
        )


def merged_state(model: MlicModel, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """The plain ``MlicModel`` state dict (parametrised weights evaluated), on the CPU;
    ``trainable_only``: without the frozen modules (they come from the base at freeze time)."""
    out = {}
    for name, value in model.state_dict().items():
        if ".parametrizations.weight." in name:
            if name.endswith(".original"):
                prefix = name.split(".parametrizations.")[0]
                out[f"{prefix}.weight"] = model.get_submodule(prefix).weight.detach().clone()
            continue
        out[name] = value
    if trainable_only:
        out = {k: v for k, v in out.items() if not k.startswith(FROZEN_MODULES)}
    return {k: v.detach().cpu() for k, v in out.items()}


def load_merged(model: MlicModel, state: dict[str, torch.Tensor]) -> None:
    """Load ``merged_state`` output (whole, or trainable only) into a fresh ``build_model``."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(FROZEN_MODULES)]
    if missing or unexpected:
        raise SystemExit(f"checkpoint does not fit: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}")  # fmt: skip


def lr_at(step: int, args, total: int | None = None) -> float:
    total = args.steps if total is None else total
    if step < args.warmup:
        return (step + 1) / args.warmup
    t = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
    return args.min_lr_factor + 0.5 * (1 - args.min_lr_factor) * (1 + math.cos(math.pi * t))


def cmd_train(args) -> int:
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    else:  # rate-only training: TF32 products are precise enough, and much faster
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    config_path = args.out / "run.json"
    if args.resume and config_path.exists():
        args.base = json.loads(config_path.read_text()).get("base", "elic")
    config_path.write_text(json.dumps({"base": args.base, "batch": args.batch}, indent=1))
    model, _ = build_model(args.base)
    add_new_columns(model)
    model.to(dev)
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(FROZEN_MODULES))

    def is_new(name: str) -> bool:
        return name.startswith(NEW_MODULES) or name.endswith(NEW_SUFFIX)

    new = [p for n, p in model.named_parameters() if p.requires_grad and is_new(n)]
    old = [p for n, p in model.named_parameters() if p.requires_grad and not is_new(n)]
    opt = torch.optim.Adam(
        [{"params": old, "base": args.lr}, {"params": new, "base": args.lr * args.new_lr_scale}]
    )
    train = load_latents(args.cache, "train").to(dev)
    val = load_latents(args.cache, "val")[: args.val_count].to(dev)
    step, best, history = 0, None, []
    budget = TimeBudget(args.minutes)
    total = args.steps  # the schedule's length; with --minutes, set from the measured speed
    state_path = args.out / "last.pt"
    if args.resume and state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location=dev)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, best, history = state["step"], state["best"], state["history"]
        total = state.get("total", total)
    log = (args.out / "train.log").open("a")
    if step == 0:
        base = validate(model, val)
        history.append({"step": 0, "val_bpp": base})
        best = {"step": 0, "score": 0.0}
        torch.save(merged_state(model, args.trainable_only), args.out / "best.pt")
        print(f"step 0 val bpp {[round(v, 4) for v in base]}", file=log, flush=True)
    base = history[0]["val_bpp"]
    rng = np.random.default_rng(args.seed + step)
    t0, window = time.time(), []
    n_q = model.num_qualities
    while step < total:
        total = budget.total(step, total)  # the last step is validated and saved
        if budget.note:
            print(budget.note, file=log, flush=True)
            budget.note = None
        for g in opt.param_groups:
            g["lr"] = g["base"] * lr_at(step, args, total)
        idx = torch.from_numpy(rng.integers(0, train.shape[0], args.batch)).to(dev)
        ya = train[idx].float()
        if rng.random() < 0.5:
            ya = ya.flip(-1)
        c = args.latent_crop
        if c and c < ya.shape[-1]:
            o0, o1 = rng.integers(0, ya.shape[-2] - c + 1), rng.integers(0, ya.shape[-1] - c + 1)
            ya = ya[..., o0 : o0 + c, o1 : o1 + c]
        q = torch.from_numpy(rng.integers(0, n_q, args.batch)).to(dev)
        with torch.no_grad():
            y = ya * model.y_gain.gain(q)
        loss = bits(model, y, q) / (ya.shape[0] * ya.shape[2] * ya.shape[3] * 256)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        window.append(float(loss.detach()))
        if step % 25 == 0:
            rate = (time.time() - t0) / 25
            t0 = time.time()
            print(f"step {step} bpp {np.mean(window):.5f} ({1 / rate:.2f} steps/s)",
                  file=log, flush=True)  # fmt: skip
            window = []
        if step % args.val_every == 0 or step == total:
            v = validate(model, val)
            score = float(np.mean([a / b - 1 for a, b in zip(v, base, strict=True)]))
            history.append({"step": step, "val_bpp": v, "score": score})
            if score < best["score"]:
                best = {"step": step, "score": score}
                torch.save(merged_state(model, args.trainable_only), args.out / "best.pt")
            print(f"step {step} val bpp {[round(x, 4) for x in v]} rel {100 * score:+.2f}% "
                  f"(best {best['step']} {100 * best['score']:+.2f}%)", file=log, flush=True)  # fmt: skip
            tmp = args.out / "last.pt.tmp"
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                 "total": total, "best": best, "history": history}, tmp)  # fmt: skip
            tmp.replace(state_path)
            (args.out / "history.json").write_text(json.dumps(history, indent=1))
            summary = {"step": step, "total": total, "best": best, "history": history}
            (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


def run_summary(run: Path) -> dict:
    """step, best and history of a run: from last.pt, or from summary.json where only the
    small files came back (a run on another machine)."""
    if (run / "last.pt").exists():
        return torch.load(run / "last.pt", weights_only=False, map_location="cpu")
    return json.loads((run / "summary.json").read_text())


def cmd_freeze(args) -> int:
    torch.set_num_threads(1)
    config_path = args.run / "run.json"
    base = (
        json.loads(config_path.read_text()).get("base", "elic") if config_path.exists() else "elic"
    )
    model, _ = build_model(base)
    load_merged(model, torch.load(args.run / "best.pt", weights_only=True))
    base_path = ROOT / "weights" / "elic-int.safetensors"
    elic_int = frozen_protocol.load(base_path, kinds=("elic-int",))
    state = run_summary(args.run)
    best = state["best"]
    meta = {
        "model_id": args.model_id or f"mlic-s{best['step']}",
        "warm_start": "elic-s75500" if base == "elic" else f"elic-s75500 via {base}",
        "training": {"best_step": best["step"], "val_rel_bpp": best["score"]},
    }
    frozen = freeze_mlic(model, elic_int, meta)
    sha = save_mlic(frozen, args.out, base_path)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {sha[:16]})")
    return 0


def cmd_manifest(args) -> int:
    """Add (or replace) the ``mlic`` entry of weights/manifest.json from the file and the
    Kodak results (``codec bench rd`` output)."""
    path = ROOT / "weights" / "manifest.json"
    doc = json.loads(path.read_text())
    weights = ROOT / "weights" / "mlic.safetensors"
    _, config, meta = frozen_protocol.read_weights_file(weights)
    state = run_summary(args.run)
    points = []
    results = json.loads(args.results.read_text())
    measured = results["codecs"].get("mlic", {}).get("points", {})
    for q, point in sorted(measured.items(), key=lambda t: int(t[0])):
        mean = point.get("mean") or {}
        if mean.get("n_images") != 24:
            continue  # only points measured on every Kodak image
        keep = ("bpp", "psnr", "ms_ssim", "enc_s", "dec_s", "est_bpp", "n_images")
        points.append({"quality": int(q), **{k: mean[k] for k in keep if k in mean}})
    entry = {
        "name": "mlic",
        "file": weights.name,
        "sha256": frozen_protocol.sha256_file(weights),
        "size_bytes": weights.stat().st_size,
        "architecture": {**config, "attention": "linear, exact int64 (docs/mlic.md)"},
        "model_id": meta["model_id"],
        "qualities": list(range(1, 9)),
        "base": config["base"],
        "base_sha256": config["base_sha256"],
        "training": {
            "data": "shared/data/train: 1,200 full-resolution 384-px crops (analysis latents "
            "cached), validation: 48 crops of every 12th photo, never trained on",
            "steps": int(state["step"]),
            "best_step": int(state["best"]["step"]),
            "batch": args.batch,
            "recipe": "warm start from elic-s75500 (global-context columns zero); rate-only "
            "training on cached latents, g_a/g_s/y gains/hyperprior/channel contexts frozen; "
            "Adam lr 3e-4 (attention projections 5x), cosine; one thread "
            "(scripts/train_mlic.py, docs/mlic.md)",
            "val_bpp_step0": state["history"][0]["val_bpp"],
            "val_bpp_best": next(
                h["val_bpp"] for h in state["history"] if h["step"] == state["best"]["step"]
            ),
        },
        "eval": {
            "dataset": "kodak",
            "images": 24,
            "source": str(args.results.relative_to(ROOT)),
            "points": points,
        },
    }
    doc["models"] = [m for m in doc["models"] if m["name"] != "mlic"] + [entry]
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"manifest: mlic {entry['sha256'][:16]} ({len(points)} Kodak points)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--data", type=Path, default=None)
    c.add_argument("--crops", type=int, default=1200)
    c.add_argument("--val-crops", type=int, default=48)
    c.add_argument("--crop", type=int, default=384)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--pack", type=Path, default=None, help="latents of a crop pack's crops")
    c.add_argument("--augment", type=int, default=8, help="flips / rotations per pack crop (1..8)")
    c.add_argument("--device", default="cpu")
    t = sub.add_parser("train")
    t.add_argument("--cache", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, default=8000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--latent-crop", type=int, default=0, help="random latent sub-crop (0: all)")
    t.add_argument("--lr", type=float, default=1e-5, help="warm-started parameters")
    t.add_argument("--new-lr-scale", type=float, default=100.0, help="global-context parts")
    t.add_argument("--min-lr-factor", type=float, default=0.05)
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--val-every", type=int, default=250)
    t.add_argument("--val-count", type=int, default=24, help="validation crops used")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--minutes", type=float, default=0.0, help="time budget (0: --steps only)")
    t.add_argument(
        "--base",
        choices=("elic", "elic-int"),
        default="elic",
        help="warm start: elic's float networks or elic-int's dequantised ones",
    )
    t.add_argument(
        "--trainable-only",
        action="store_true",
        help="best.pt without the frozen modules (small; freeze adds them back)",
    )
    f = sub.add_parser("freeze")
    f.add_argument("--run", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--model-id", default=None)
    m = sub.add_parser("manifest")
    m.add_argument("--run", type=Path, required=True)
    m.add_argument("--results", type=Path, default=ROOT / "results" / "kodak" / "results.json")
    m.add_argument("--batch", type=int, default=6)
    args = p.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1" and getattr(args, "device", "cpu") == "cpu":
        print("note: set OMP_NUM_THREADS=1 (one thread)", file=sys.stderr)
    commands = {"cache": cmd_cache, "train": cmd_train, "freeze": cmd_freeze}
    return {**commands, "manifest": cmd_manifest}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

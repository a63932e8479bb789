"""Freeze a training checkpoint into shipped weights and record it in ``weights/manifest.json``.

    python -m neuralcodec.export --checkpoint runs/msh/last.safetensors --name mbt-mean \
        [--eval-dir ../shared/data/kodak]

Writes ``weights/<name>.safetensors`` (float transforms + frozen integer tables + fixed-point
hyper-synthesis), then measures bpp (real .ncf sizes) and PSNR of every quality level through the
actual codec on ``--eval-dir`` and stores them with the training facts in the manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.torch import load_file

from .models import elic, frozen
from .models.hyperprior import HyperpriorConfig, HyperpriorModel


def load_checkpoint(path: Path) -> tuple[HyperpriorModel | elic.ElicModel, dict]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    config = json.loads(meta["config"])
    if config.get("kind") == elic.KIND:
        model = elic.ElicModel(elic.ElicConfig.from_dict(config))
    else:
        model = HyperpriorModel(HyperpriorConfig.from_dict(config))
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta


def evaluate(name: str, images: list[Path]) -> list[dict]:
    """Average bpp / PSNR per quality over ``images`` through the full .ncf path."""
    from .api import decode_bytes, encode_array
    from .codecs.base import get_codec
    from .datasets.images import read_image

    codec = get_codec(name)
    lo, hi = codec.quality_range
    rows = []
    arrays = [read_image(p) for p in images]
    for q in range(lo, hi + 1):
        bpps, psnrs, t_enc, t_dec = [], [], 0.0, 0.0
        for img in arrays:
            t0 = time.perf_counter()
            data = encode_array(img, name, q)
            t1 = time.perf_counter()
            rec, _ = decode_bytes(data)
            t_dec += time.perf_counter() - t1
            t_enc += t1 - t0
            mse = np.mean((rec.astype(np.float64) - img.astype(np.float64)) ** 2)
            bpps.append(8 * len(data) / (img.shape[0] * img.shape[1]))
            psnrs.append(10 * np.log10(255**2 / max(mse, 1e-10)))
        n = len(arrays)
        rows.append(
            {
                "quality": q,
                "bpp": float(np.mean(bpps)),
                "psnr": float(np.mean(psnrs)),
                "enc_s": t_enc / n,
                "dec_s": t_dec / n,
            }
        )
        print(f"q{q}: bpp {rows[-1]['bpp']:.4f} psnr {rows[-1]['psnr']:.2f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m neuralcodec.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--name", required=True, help="codec name, e.g. mbt-mean")
    p.add_argument("--weights-dir", type=Path, default=Path("weights"))
    p.add_argument("--eval-dir", type=Path, default=None, help="folder of PNGs to measure on")
    p.add_argument(
        "--training-data",
        default="shared/data/train (bsds500, sun_hays80, urban100, wikipedia_photos, set5)",
    )
    args = p.parse_args(argv)

    model, meta = load_checkpoint(args.checkpoint)
    step = int(meta.get("step", 0))
    module = elic if isinstance(model, elic.ElicModel) else frozen
    frozen_model = module.freeze(model, meta={"model_id": f"{args.name}-s{step}", "step": step})
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    out = args.weights_dir / f"{args.name}.safetensors"
    sha = module.save(frozen_model, out)
    entry = {
        "name": args.name,
        "file": out.name,
        "sha256": sha,
        "size_bytes": out.stat().st_size,
        "architecture": model.config.to_dict(),
        "model_id": frozen_model.meta["model_id"],
        "qualities": list(range(1, len(model.config.lambdas) + 1)),
        "training": {"data": args.training_data, "steps": step},
    }
    if args.eval_dir:
        images = sorted(args.eval_dir.glob("*.png"))
        entry["eval"] = {
            "dataset": args.eval_dir.name,
            "images": len(images),
            "points": evaluate(args.name, images),
        }
    manifest_path = args.weights_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": []}
    manifest["models"] = [m for m in manifest["models"] if m["name"] != args.name] + [entry]
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out} ({entry['size_bytes'] / 1e6:.1f} MB, sha256 {sha[:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

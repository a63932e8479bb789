"""Freeze a training checkpoint into shipped weights and record it in their ``manifest.json``.

    python -m neuralcodec.export --checkpoint runs/msh/last.safetensors --name mbt-mean
    codec bench rd --dataset ../shared/data/kodak --codecs mbt-mean --out results/kodak
    python -m neuralcodec.export --name mbt-mean --eval-results results/kodak/results.json

Writes ``<weights dir>/<name>.safetensors`` (float transforms + frozen integer tables + fixed-point
networks) and its entry in the manifest (architecture, sha256, training facts). The weights dir
is ``--weights-dir``, else ``$NEURALCODEC_WEIGHTS``, else the package's own ``neuralcodec/weights/``
(the root ``weights`` link of a checkout points there). After ``codec bench rd`` has measured the codec, ``--eval-results results/kodak/results.json`` copies
its per-quality Kodak points (real .ncf sizes) into the entry, checked against the weights hash.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from .codecs.weights import weights_dir
from .models import elic, frozen
from .models.hyperprior import HyperpriorModel


def load_checkpoint(path: Path) -> tuple[HyperpriorModel | elic.ElicModel, dict]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    config = json.loads(meta["config"])
    family = frozen.family_for(config.get("kind", "mean-scale"))
    model = family.build(family.config_from_dict(config))
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta


def load_model(path: Path) -> HyperpriorModel | elic.ElicModel | None:
    """The float model in a shipped weights file (rebuilt as the codec loads it) or a training
    checkpoint; ``None`` for a file without a model config (a bare tensor file)."""
    with safe_open(str(path), framework="pt") as f:
        shipped = any(k.startswith(("frozen.", "packed.")) for k in f.keys())  # noqa: SIM118
        config = json.loads((f.metadata() or {}).get("config", "{}"))
    if shipped:  # packed shipped files (models/packing.py) hold only frozen models
        return frozen.load(path).model.eval()
    return load_checkpoint(path)[0] if config else None


def eval_points(name: str, sha: str, results: Path) -> dict:
    """Mean points of ``name`` from a ``codec bench rd`` results.json, measured with ``sha``."""
    doc = json.loads(results.read_text())
    codec = doc.get("codecs", {}).get(name)
    if codec is None or codec.get("weights_sha256") != sha:
        raise SystemExit(f"error: {results} has no results of {name} with weights {sha[:12]}")
    points = sorted(
        ({"quality": int(q), **p["mean"]} for q, p in codec["points"].items() if "mean" in p),
        key=lambda r: r["quality"],
    )
    n = points[0]["n_images"] if points else 0
    return {
        "dataset": Path(doc["dataset"]).name,
        "images": n,
        "source": str(results),
        "points": points,
    }


def export(args: argparse.Namespace) -> dict:
    """Freeze ``args.checkpoint`` into ``weights/<name>.safetensors``; the manifest entry."""
    model, meta = load_checkpoint(args.checkpoint)
    step = int(meta.get("step", 0))
    total = step + args.prior_steps
    frozen_model = frozen.freeze(model, meta={"model_id": f"{args.name}-s{total}", "step": total})
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    out = args.weights_dir / f"{args.name}.safetensors"
    sha = frozen.save(frozen_model, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, sha256 {sha[:12]}...)")
    return {
        "name": args.name,
        "file": out.name,
        "sha256": sha,
        "size_bytes": out.stat().st_size,
        "architecture": model.config.to_dict(),
        "model_id": frozen_model.meta["model_id"],
        "qualities": list(range(1, len(model.config.lambdas) + 1)),
        "training": {
            "data": args.training_data,
            "steps": step + args.prior_steps,
            "batch": args.batch,
            "crop": args.crop,
            **({"recipe": args.recipe} if args.recipe else {}),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m neuralcodec.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, help="training checkpoint to freeze")
    p.add_argument("--name", required=True, help="codec name, e.g. mbt-mean")
    p.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="default: $NEURALCODEC_WEIGHTS, else the package's neuralcodec/weights/",
    )
    p.add_argument(
        "--eval-results",
        type=Path,
        help="attach the points `codec bench rd` measured with these weights (results.json)",
    )
    p.add_argument(
        "--training-data",
        default="shared/data/train (bsds500, sun_hays80, urban100, wikipedia_photos, set5)",
    )
    p.add_argument("--batch", type=int, default=8, help="training batch size, for the record")
    p.add_argument("--crop", type=int, default=128, help="training crop size, for the record")
    p.add_argument(
        "--prior-steps",
        type=int,
        default=0,
        help="steps of the run(s) this checkpoint was warm-started from, for the record",
    )
    p.add_argument("--recipe", default="", help="how the checkpoint was trained, for the record")
    args = p.parse_args(argv)
    args.weights_dir = args.weights_dir or weights_dir()
    if args.checkpoint is None and args.eval_results is None:
        p.error("give --checkpoint, --eval-results or both")

    manifest_path = args.weights_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": []}
    entries = {m["name"]: m for m in manifest["models"]}
    if args.checkpoint is not None:
        entries[args.name] = export(args)
    if args.eval_results is not None:
        if args.name not in entries:
            p.error(f"{args.name} is not in {manifest_path}")
        entry = entries[args.name]
        entry["eval"] = eval_points(args.name, entry["sha256"], args.eval_results)
        for r in entry["eval"]["points"]:
            print(f"q{r['quality']}: bpp {r['bpp']:.4f} psnr {r['psnr']:.2f}")
    manifest["models"] = list(entries.values())
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

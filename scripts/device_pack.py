"""Write the crop pack that GPU training jobs carry (``scripts/device_train_*.sh``).

    python scripts/device_pack.py --out devdata/crops [--crop 256] [--budget-mib 28]

Crops come from the training photos of ``../shared/data/train`` only: the held-out benchmark
photos are excluded and the validation crops come from every 12th other photo
(``datasets.training.split_photos``). ``devdata/`` is ignored by git. The budget leaves room
for the tracked files that travel with a job (64 MiB in all; see the job scripts' headers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralcodec.datasets.pack import write_pack  # noqa: E402
from neuralcodec.datasets.paths import data_root  # noqa: E402
from neuralcodec.datasets.training import split_photos  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("devdata/crops"))
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--budget-mib", type=float, default=28.0)
    p.add_argument("--val-crops", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    train, val, _ = split_photos(args.data or data_root() / "train", val_every=12)
    meta = write_pack(args.out, train, val, crop=args.crop,
                      budget_bytes=int(args.budget_mib * 2**20), val_crops=args.val_crops,
                      seed=args.seed)  # fmt: skip
    print(f"{args.out}: {len(meta['train'])} training + {len(meta['val'])} validation crops of "
          f"{args.crop} px, {meta['bytes'] / 2**20:.1f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

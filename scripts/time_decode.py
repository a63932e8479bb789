"""Decode time of one image codec from the checkout this script lives in (for A/B runs of two
checkouts: run each one's copy, alternating, with other work paused).

    python scripts/time_decode.py --codec elic-int --image ../shared/data/kodak/kodim23.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import neuralcodec  # noqa: E402
from neuralcodec.codecs.base import get_codec  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codec", default="elic-int")
    p.add_argument("--image", default=str(ROOT.parent / "shared/data/kodak/kodim23.png"))
    p.add_argument("--quality", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from neuralcodec.runtime import tune_allocator

    tune_allocator()  # as the command line does (NEURALCODEC_MALLOC=system: glibc's defaults)
    codec = get_codec(args.codec)
    img = np.asarray(Image.open(args.image).convert("RGB"))
    encoded = codec.encode(img, args.quality)
    codec.decode(encoded)  # warm-up: weights, plans, probes
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        codec.decode(encoded)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(
        f"{Path(neuralcodec.__file__).parent.parent}: {args.codec} decode best {times[0]:.3f} s, "
        f"median {times[len(times) // 2]:.3f} s ({args.repeat} runs, {args.threads} threads)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

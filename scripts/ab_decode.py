"""Decode time of two checkouts, interleaved decode by decode (A/B; give the same path twice for
an A/A run, which shows how far two identical processes drift apart on this machine).

    python scripts/ab_decode.py CHECKOUT_A CHECKOUT_B [--codec elic-int4] [--decodes 15]
        [--pairs 4] [--image kodim23.png] [--quality 4] [--threads 2]

Each pair starts one worker process per checkout (its own ``neuralcodec``, allocator tuned as the
command line does), warms both up, then alternates single decodes between them (ABBA order), so
that what the machine does meanwhile falls on both alike. Prints each pair's medians and B/A,
then the median B/A over the pairs: fresh processes differ by more than one process's decodes
do, so one pair is weak evidence. Build each checkout's kernels first (``make build``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from PIL import Image
from neuralcodec.codecs.base import get_codec
from neuralcodec.runtime import tune_allocator
torch.set_num_threads(int(sys.argv[5]))
tune_allocator()
codec = get_codec(sys.argv[2])
img = np.asarray(Image.open(sys.argv[3]).convert("RGB"))
enc = codec.encode(img, int(sys.argv[4]))
codec.decode(enc)
codec.decode(enc)
print("ready", flush=True)
for _ in sys.stdin:
    t0 = time.perf_counter()
    codec.decode(enc)
    print(time.perf_counter() - t0, flush=True)
"""


def run_pair(roots: list[str], args: argparse.Namespace) -> list[list[float]]:
    cmd = [args.codec, args.image, str(args.quality), str(args.threads)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, root, *cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for root in roots
    ]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"a worker failed to start ({p.args[3]})")
        times: list[list[float]] = [[], []]
        for i in range(args.decodes):
            for j in (0, 1) if i % 2 == 0 else (1, 0):
                procs[j].stdin.write("go\n")
                procs[j].stdin.flush()
                times[j].append(float(procs[j].stdout.readline()))
        return times
    finally:
        for p in procs:
            p.stdin.close()
            p.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--codec", default="elic-int4")
    p.add_argument("--image", default=str(ROOT.parent / "shared/data/kodak/kodim23.png"))
    p.add_argument("--quality", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--decodes", type=int, default=15)
    p.add_argument("--pairs", type=int, default=4)
    args = p.parse_args()
    ratios = []
    for k in range(args.pairs):
        ta, tb = run_pair([args.a, args.b], args)
        ma, mb = statistics.median(ta), statistics.median(tb)
        ratios.append(mb / ma)
        print(
            f"pair {k}: A median {ma:.3f} s (best {min(ta):.3f}), "
            f"B median {mb:.3f} s (best {min(tb):.3f}), B/A {mb / ma:.3f}",
            flush=True,
        )
    print(
        f"B/A over {args.pairs} pairs: median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

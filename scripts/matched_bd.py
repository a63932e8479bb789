"""BD-rate of one codec against others on the qualities *both* measured, from a results.json.

``codec bench rd`` compares whole curves; when a codec was measured at a few qualities only, its
interpolated curve (PCHIP over 2-4 points) bends differently from an 8-point anchor's and the
BD-rate then measures the interpolation more than the codec. Codecs that share their transforms
and quality ladder (``mlic`` and ``elic``: the same ŷ grid at each quality) are compared exactly
by restricting every curve to the common qualities and images:

    python scripts/matched_bd.py results/kodak/results.json mlic elic,elic-int
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralcodec.bench.bdrate import bd_rate  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    doc = json.loads(Path(argv[0]).read_text())
    codecs = doc["codecs"]
    test, anchors = argv[1], argv[2].split(",")
    for anchor in anchors:
        qs = sorted(set(codecs[test]["points"]) & set(codecs[anchor]["points"]), key=int)
        most = max(len(codecs[test]["points"][q]["images"]) for q in qs) if qs else 0
        qs = [q for q in qs if len(codecs[test]["points"][q]["images"]) == most]  # complete only
        images = None
        for q in qs:
            for name in (test, anchor):
                names = set(codecs[name]["points"][q]["images"])
                images = names if images is None else images & names
        if len(qs) < 2 or not images:
            print(f"{anchor}: fewer than two common qualities")
            continue

        common = sorted(images)

        def curve(name: str, qs=qs, images=common):
            pts = codecs[name]["points"]
            bpp = [float(np.mean([pts[q]["images"][i]["bpp"] for i in images])) for q in qs]
            psnr = [float(np.mean([pts[q]["images"][i]["psnr"] for i in images])) for q in qs]
            return bpp, psnr

        (tb, tp), (ab, ap) = curve(test), curve(anchor)
        per_q = ", ".join(
            f"q{q} {100 * (b / a - 1):+.2f}% ({p - r:+.3f} dB)"
            for q, b, a, p, r in zip(qs, tb, ab, tp, ap, strict=True)
        )
        print(f"{test} vs {anchor}: BD-rate {bd_rate(ab, ap, tb, tp):+.2f}% over qualities "
              f"{','.join(qs)} x {len(images)} images; per quality: {per_q}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Where an integer image decoder spends its time: every integer layer, timed alone.

    python scripts/decode_profile.py --codec elic-int4 [--image kodim23.png] [--quality 4]

Decodes once to record each ``IntConv`` / ``IntIGDN`` call's input, then times every recorded
call alone (best of ``--repeat``) with the plan the decoder takes, and also the float64 and int8
plans where they apply, so a wrong plan choice shows. Also prints the whole decode (best of
``--repeat``). Layers below ``--min-work`` multiply-adds are summed on one line.
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

from neuralcodec.codecs.base import get_codec  # noqa: E402
from neuralcodec.compress import intconv, intnet  # noqa: E402


def best_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codec", default="elic-int4")
    p.add_argument("--image", default=str(ROOT.parent / "shared/data/kodak/kodim23.png"))
    p.add_argument("--quality", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--min-work", type=float, default=5e7, help="multiply-adds of a listed layer")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from neuralcodec.runtime import tune_allocator

    tune_allocator()
    codec = get_codec(args.codec)
    img = np.asarray(Image.open(args.image).convert("RGB"))
    encoded = codec.encode(img, args.quality)
    codec.decode(encoded)
    print(
        f"{args.codec} q{args.quality}: decode best {best_ms(lambda: codec.decode(encoded), args.repeat):.0f} ms"
    )

    calls = []
    conv_call, igdn_call = intconv.IntConv.__call__, intnet.IntIGDN.__call__

    def record_conv(self, a, *rest, **kw):
        calls.append((self, a))
        return conv_call(self, a, *rest, **kw)

    def record_igdn(self, a, *rest, **kw):
        calls.append((self, a))
        return igdn_call(self, a, *rest, **kw)

    intconv.IntConv.__call__, intnet.IntIGDN.__call__ = record_conv, record_igdn
    try:
        codec.decode(encoded)
    finally:
        intconv.IntConv.__call__, intnet.IntIGDN.__call__ = conv_call, igdn_call

    small_ms, small_n, total = 0.0, 0, 0.0
    print(f"{'layer':44s} {'plan':>8s} {'ms':>7s} {'float64':>8s} {'int8':>7s}")
    for layer, a in calls:
        ms = best_ms(lambda layer=layer, a=a: layer(a), args.repeat)
        total += ms
        if isinstance(layer, intnet.IntIGDN):
            work = a.numel() * a.shape[1]
            name = f"IGDN {tuple(a.shape[1:])}"
            plan, alt = "", ("", "")
        else:
            g = layer.geometry
            work = a.numel() // a.shape[1] * layer.cin * layer.cout * g.kernel**2
            work //= 1 if g.transposed else g.stride**2
            name = f"{'T' if g.transposed else 'C'}{g.kernel} {layer.cin}->{layer.cout} {tuple(a.shape[2:])}"
            plan = (
                "int16"
                if layer.int16_preferred(a)
                else "int8"
                if layer.int8_preferred(a)
                else ("small" if layer.small_preferred(a) else "float")
            )
            f64 = best_ms(lambda layer=layer, a=a: layer(a, path="float64"), args.repeat)
            i8 = (
                f"{best_ms(lambda layer=layer, a=a: layer(a, path='int8'), args.repeat):7.1f}"
                if intconv.int8_matmul_available()
                else "      -"
            )
            alt = (f"{f64:8.1f}", i8)
        if work < args.min_work:
            small_ms += ms
            small_n += 1
            continue
        print(f"{name:44s} {plan:>8s} {ms:7.1f} {alt[0]:>8s} {alt[1]:>7s}")
    print(f"{small_n} smaller layers together: {small_ms:.1f} ms; all layers alone: {total:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

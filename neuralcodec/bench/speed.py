"""``codec bench speed``: encode/decode time of our learned codecs vs CompressAI's, same input.

Both sides get the same Kodak image (padded to a multiple of 64 for CompressAI, which needs it;
ours pads internally) and run in the same process with the same torch thread count. Each of our
codecs is timed next to CompressAI's model of the same family: ``mbt-mean`` and ``mbt-mean-int``
next to ``mbt2018_mean(quality=q, pretrained=False)``, ``elic`` and ``elic-int`` next to
``Elic2022Official()`` (the paper's N=192, M=320 configuration, larger than ours), with the ratios printed. CompressAI models are prepared with
``update()``; their weights are random, which does not change the amount of work their
transforms do. Times are the best of ``--repeat`` runs, in seconds, from array in to streams out
(encode) and back (decode). Both run under the allocator settings of ``runtime.tune_allocator``
(large freed buffers kept for reuse; ``NEURALCODEC_MALLOC=system`` for glibc's defaults), which
the header line and the JSON name.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..codecs.base import CodecError, get_codec
from ..datasets.paths import kodak_dir
from ..runtime import allocator_tuned, tune_allocator


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", type=Path, default=None, help="default: kodak/kodim23.png")
    p.add_argument(
        "--codecs",
        "--codec",
        default="mbt-mean",
        help="comma-separated codecs to time (each with its CompressAI counterpart, if any)",
    )
    p.add_argument("--quality", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    p.add_argument(
        "--no-compressai", action="store_true", help="time ours only (no CompressAI counterparts)"
    )


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def time_ours(name: str, img: np.ndarray, quality: int, repeat: int) -> dict:
    codec = get_codec(name)
    if not codec.writes_ncf:
        raise CodecError(f"codec {name} is for benchmarks only; time a codec that writes .ncf")
    codec.encode(img, quality)  # load weights and tables outside the timing
    t_enc, enc = _best(lambda: codec.encode(img, quality), repeat)
    t_dec, rec = _best(lambda: codec.decode(enc), repeat)
    assert rec.shape == img.shape
    return {"enc_s": t_enc, "dec_s": t_dec, "bytes": enc.payload_bytes}


def _compressai_mbt2018_mean(quality: int):
    from compressai.zoo import mbt2018_mean

    return mbt2018_mean(quality=quality, pretrained=False)


def _compressai_elic(quality: int):
    from compressai.models import Elic2022Official

    return Elic2022Official()


# our codec -> (row label, constructor of CompressAI's model of the same family)
COMPRESSAI_COUNTERPARTS = {
    "mbt-mean": ("compressai mbt2018_mean", _compressai_mbt2018_mean),
    "mbt-mean-int": ("compressai mbt2018_mean", _compressai_mbt2018_mean),
    "elic": ("compressai Elic2022Official (N=192, M=320)", _compressai_elic),
    "elic-int": ("compressai Elic2022Official (N=192, M=320)", _compressai_elic),
    "elic-int4": ("compressai Elic2022Official (N=192, M=320)", _compressai_elic),
}


def time_compressai(img: np.ndarray, quality: int, repeat: int, make=_compressai_mbt2018_mean):
    net = make(quality).eval()
    net.update(force=True)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % 64, 0, -h % 64))
    with torch.no_grad():
        t_enc, out = _best(lambda: net.compress(x), repeat)
        t_dec, _ = _best(lambda: net.decompress(out["strings"], out["shape"]), repeat)
    nbytes = sum(len(s[0]) for s in out["strings"])
    return {"enc_s": t_enc, "dec_s": t_dec, "bytes": nbytes}


def run(args: argparse.Namespace) -> int:
    from ..modalities.image import ImageAdapter

    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()  # both sides of every ratio run under the same allocator settings
    allocator = "reuse" if allocator_tuned() else "system"
    path = args.image or kodak_dir() / "kodim23.png"
    images = ImageAdapter()
    img = images.prepare(images.read(path)).coded  # what an image codec codes: HxWx3 uint8
    rows, ratios = {}, {}
    for name in [c.strip() for c in args.codecs.split(",") if c.strip()]:
        ours = rows[f"ours ({name})"] = time_ours(name, img, args.quality, args.repeat)
        if name in COMPRESSAI_COUNTERPARTS and not args.no_compressai:
            label, make = COMPRESSAI_COUNTERPARTS[name]
            if label not in rows:  # one CompressAI model may stand next to several of ours
                rows[label] = time_compressai(img, args.quality, args.repeat, make)
            ratios[name] = {
                "against": label,
                "encode": ours["enc_s"] / rows[label]["enc_s"],
                "decode": ours["dec_s"] / rows[label]["dec_s"],
            }
    print(
        f"{path.name} {img.shape[1]}x{img.shape[0]}, quality {args.quality}, "
        f"{torch.get_num_threads()} threads, best of {args.repeat}, allocator {allocator}"
    )
    print(f"{'coder':28s} {'encode s':>9s} {'decode s':>9s} {'bytes':>8s}")
    for name, r in rows.items():
        print(f"{name:28s} {r['enc_s']:9.3f} {r['dec_s']:9.3f} {r['bytes']:8d}")
    for name, r in ratios.items():
        print(
            f"{name}: encode {r['encode']:.2f}x, decode {r['decode']:.2f}x the time of {r['against']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "image": str(path.name),
            "quality": args.quality,
            "threads": torch.get_num_threads(),
            "allocator": allocator,
            "results": rows,
            "ratios": ratios,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codec bench speed", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

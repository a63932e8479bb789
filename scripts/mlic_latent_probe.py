"""How much could adaptive context coding save on ``mlic``'s latent?  Ideal code lengths only.

``mlic`` codes ``v = round(y - mean)`` with frozen Gaussian tables chosen by the exact integer
scale (64 log-spaced scales). This probe records every symbol it codes (scale index, exact scale,
v, slice, checkerboard pass) on validation crops of the training photos and compares:

* ``static``        the frozen tables (what the files cost, up to the coder's few bytes);
* ``exact-scale``   a Gaussian at the exact (unbinned) scale: the cost of the 64 scale bins;
* ``adaptive C``    the shared adaptive binary models (``entropy/adaptive.py``, ``ints``
                    binarisation, flat start) with contexts scale index [x neighbour size];
* ``Dirichlet S``   the best any *stationary* adaptive model with those contexts can do: unary
                    binarisation of |v|, each node a Beta prior from the frozen table with S
                    pseudo-observations, updated by counting (an exact sequential code length,
                    order independent, so it needs no loop);
* ``pooled H``      the empirical conditional entropy over all crops of a quality (in-sample,
                    optimistic): what a table fitted to these very symbols would cost.

Neighbour size of a non-anchor: |v| of its 4 anchor neighbours in the same channel (decoded in
the anchor pass); anchors get 4 x the mean |v| of the previous slice at the same position (a
pass codes all channels of a slice in one call, so nothing of its own slice is known yet). Crops: 512-px centre crops of the validation photos of
``scripts/train_mlic.py`` (every 12th photo, never the held-out benchmark photos), at most one
folder after another; never Kodak.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/mlic_latent_probe.py --crops 6 --qualities 1,4,8

``--codec elic-int`` probes ``elic-int`` (the same slices, passes and tables, without the global
contexts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.special import betaln

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from neuralcodec.codecs.base import get_codec  # noqa: E402
from neuralcodec.codecs.latent import LatentContext  # noqa: E402
from neuralcodec.codecs.latent.sinks import CounterSinks, _CountSink  # noqa: E402
from neuralcodec.entropy import adaptive  # noqa: E402
from neuralcodec.entropy.cdf import information_bits  # noqa: E402
from neuralcodec.entropy.models import SCALE_MIN  # noqa: E402
from neuralcodec.entropy.tables import CodingTables  # noqa: E402
from neuralcodec.models.elic import checkerboard_masks  # noqa: E402

NB_BOUNDS = (2, 3, 4, 7, 11, 16, 26)  # neighbour-size bins (as codecs/latent/spatial.py)
UNARY = 160  # unary nodes of |v| (larger values: static cost)


# ----------------------------------------------------------------------------- models
def nb_bins(a: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(NB_BOUNDS), a + 1, side="right")


def unary_priors(tables: CodingTables, nodes: int = UNARY) -> np.ndarray:
    """[tables, nodes]: P(|v| > i | |v| >= i) under each frozen table (escape mass dropped)."""
    n = tables.num_tables
    pabs = np.zeros((n, nodes + 1))
    for t in range(n):
        length = int(tables.cdf_lengths[t])
        c = tables.cdfs[t, :length].astype(np.float64) / (1 << tables.precision)
        pm = np.diff(c)[:-1]  # the values' masses (the escape symbol is the last)
        a = np.abs(tables.offsets[t] + np.arange(length - 2))
        keep = a <= nodes
        np.add.at(pabs[t], a[keep], pm[keep])
    pabs /= pabs.sum(1, keepdims=True)
    tail = np.cumsum(pabs[:, ::-1], 1)[:, ::-1]  # P(|v| >= i)
    return np.clip(tail[:, 1:] / np.maximum(tail[:, :-1], 1e-300), 1e-9, 1 - 1e-9)


def dirichlet_bits(
    ctx: np.ndarray, idx: np.ndarray, v: np.ndarray, priors: np.ndarray, strength: float | None
) -> float:
    """Code length of |v| (unary nodes, escapes beyond the last node not counted) under counting
    binary models per (context, node) with a Beta(S (1 - p), S p) prior, p = ``priors[idx,
    node]`` (the context must determine idx); ``strength`` None: the priors alone (static). Sign
    bits are not included."""
    nodes = priors.shape[1]
    a = np.abs(np.asarray(v, np.int64))
    reps = np.minimum(a + 1, nodes)
    sym = np.repeat(np.arange(a.size), reps)
    node = np.arange(sym.size) - np.repeat(np.cumsum(reps) - reps, reps)
    bit = (a[sym] > node).astype(np.float64)
    key = np.asarray(ctx, np.int64)[sym] * nodes + node
    uk, inv = np.unique(key, return_inverse=True)
    n1 = np.bincount(inv, weights=bit, minlength=uk.size)
    n0 = np.bincount(inv, minlength=uk.size) - n1
    first = np.full(uk.size, sym.size, np.int64)
    np.minimum.at(first, inv, np.arange(sym.size))
    p = priors[np.asarray(idx, np.int64)[sym[first]], node[first]]
    if strength is None:
        return float(-(n1 * np.log2(p) + n0 * np.log2(1 - p)).sum())
    a1, a0 = strength * p, strength * (1 - p)
    return float((betaln(a0, a1) - betaln(a0 + n0, a1 + n1)).sum() / np.log(2))


def empirical_bits(ctx: np.ndarray, v: np.ndarray) -> float:
    """sum -log2 (count(ctx, v) / count(ctx)): in-sample conditional entropy."""
    pair = np.asarray(ctx, np.int64) * (1 << 20) + (np.asarray(v, np.int64) + (1 << 19))
    _, ip, cp = np.unique(pair, return_inverse=True, return_counts=True)
    _, ic, cc = np.unique(ctx, return_inverse=True, return_counts=True)
    return float(-np.log2(cp[ip] / cc[ic]).sum())


# ----------------------------------------------------------------------------- recording
class _RecordSink(_CountSink):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def code(self, indexes, tables, values=None):
        v = super().code(indexes, tables, values)
        self.calls.append((np.asarray(indexes).reshape(-1).astype(np.int64), v.astype(np.int64)))
        return v


class _RecordSinks(CounterSinks):
    def _make(self, name: str):
        return _RecordSink()


def record(codec, image: np.ndarray, quality: int) -> dict:
    """Every y symbol of ``mlic`` (or ``elic-int``) on ``image``: arrays in coding order + per-symbol features."""
    frozen, _ = codec.frozen()
    y, qi = codec._analyse(frozen, image, quality)
    cond = frozen.model.y_conditional
    scales: list[np.ndarray] = []
    original = cond.scale_indexes_fixed

    def spy(s, bits):
        scales.append(np.asarray(s, np.float64).reshape(-1) * 2.0**-bits)
        return original(s, bits)

    sinks = _RecordSinks()
    cond.scale_indexes_fixed = spy
    try:
        with torch.no_grad():
            codec.latent_codec(frozen).code(sinks, y, LatentContext(tuple(y.shape), qi))
    finally:
        del cond.scale_indexes_fixed
    calls = sinks["y"].calls
    m, h, w = y.shape[1:]
    masks = [mk.bool()[0, 0].numpy() for mk in checkerboard_masks(h, w)]
    values = np.zeros((m, h, w), np.int64)
    meta = []
    for k, (s0, s1) in enumerate(frozen.config.group_slices()):
        for p, mask in enumerate(masks):
            idx, v = calls[2 * k + p]
            sel = np.broadcast_to(mask, (s1 - s0, h, w))
            values[s0:s1][sel] = v
            meta.append((k, p, s0, s1, sel))
    a = np.pad(np.abs(values), ((0, 0), (1, 1), (1, 1)))
    nb4 = a[:, :-2, 1:-1] + a[:, 2:, 1:-1] + a[:, 1:-1, :-2] + a[:, 1:-1, 2:]
    prev = np.zeros((m, h, w), np.int64)  # 4 x mean |v| of the previous slice, co-located
    for s0, s1 in frozen.config.group_slices()[1:]:
        lo = next(a for a, b in frozen.config.group_slices() if b == s0)
        prev[s0:s1] = 4 * np.abs(values[lo:s0]).sum(0) // (s0 - lo)
    out: dict[str, list] = {k: [] for k in ("idx", "v", "scale", "nb", "slice", "pass", "call")}
    for n, ((idx, v), (k, p, s0, s1, sel)) in enumerate(zip(calls, meta, strict=True)):
        out["idx"].append(idx)
        out["v"].append(v)
        out["scale"].append(scales[n])
        out["nb"].append(nb4[s0:s1][sel] if p else prev[s0:s1][sel])
        out["slice"].append(np.full(v.size, k))
        out["pass"].append(np.full(v.size, p))
        out["call"].append(np.full(v.size, n))
    return {key: np.concatenate(val) for key, val in out.items()}


def measure(sym: dict, tables: CodingTables, priors: np.ndarray) -> dict[str, float]:
    """Bits of one crop's y under every model (see the module docstring)."""
    v, idx = sym["v"], sym["idx"]
    nbb = nb_bins(sym["nb"])
    signs = float((v != 0).sum())
    res = {"static": information_bits(v.astype(np.int32), idx.astype(np.int32), tables)}
    s = torch.from_numpy(sym["scale"]).clamp_min(SCALE_MIN)
    t = torch.from_numpy(v.astype(np.float64))
    g = torch.distributions.Normal(0.0, s)
    res["exact-scale"] = float(
        -torch.log2((g.cdf(t + 0.5) - g.cdf(t - 0.5)).clamp_min(1e-12)).sum()
    )
    for name, sets in (("adaptive C, scale", idx), ("adaptive C, scale x nb", idx * 9 + nbb)):
        st = adaptive.states((int(sets.max()) + 1) * adaptive.INT_CONTEXTS)
        bits = 0.0
        for n in range(int(sym["call"].max()) + 1):  # one call per (slice, pass), as a codec would
            sel = sym["call"] == n
            bits += adaptive.ideal_int_bits(v[sel], sets[sel], st)
        res[name] = bits
    for strength in (16.0, 64.0):
        res[f"Dirichlet S={strength:g}, scale"] = (
            dirichlet_bits(idx, idx, v, priors, strength) + signs
        )
        res[f"Dirichlet S={strength:g}, scale x nb"] = (
            dirichlet_bits(idx * 9 + nbb, idx, v, priors, strength) + signs
        )
    res["binarised static"] = dirichlet_bits(idx, idx, v, priors, None) + signs
    return res


def validation_crops(count: int, size: int = 512) -> list[tuple[str, np.ndarray]]:
    from PIL import Image
    from train_mlic import split

    from neuralcodec.datasets.paths import data_root
    from neuralcodec.datasets.training import _image_files

    root = data_root()
    _, val, _ = split(_image_files(root / "train"))
    big = [p for p in val if min(Image.open(p).size) >= size]
    folders: dict[str, list[Path]] = {}
    for p in big:
        folders.setdefault(p.relative_to(root / "train").parts[0], []).append(p)
    picked = []
    while len(picked) < count and any(folders.values()):
        for files in folders.values():  # one per folder in turn
            if files and len(picked) < count:
                picked.append(files.pop(0))
    crops = []
    for p in picked:
        a = np.asarray(Image.open(p).convert("RGB"))
        y0, x0 = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
        crops.append(
            (str(p.relative_to(root)), np.ascontiguousarray(a[y0 : y0 + size, x0 : x0 + size]))
        )
    return crops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crops", type=int, default=6)
    ap.add_argument("--qualities", default="1,4,8")
    ap.add_argument("--codec", default="mlic", help="mlic or elic-int (same latent coding)")
    ap.add_argument("--json", type=Path, help="write the per-quality totals here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    codec = get_codec(args.codec)
    frozen, _ = codec.frozen()
    tables = frozen.y_tables
    priors = unary_priors(tables)
    crops = validation_crops(args.crops)
    print("crops:", ", ".join(name for name, _ in crops))
    report: dict[str, dict] = {}
    for q in (int(x) for x in args.qualities.split(",")):
        totals: dict[str, float] = {}
        pooled: dict[str, list] = {"idx": [], "v": [], "nb": []}
        for _, image in crops:
            sym = record(codec, image, q)
            for k, b in measure(sym, tables, priors).items():
                totals[k] = totals.get(k, 0.0) + b
            for k in pooled:
                pooled[k].append(sym[k] if k != "nb" else nb_bins(sym["nb"]))
        idx, v, nbb = (np.concatenate(pooled[k]) for k in ("idx", "v", "nb"))
        totals["pooled H(v | scale), in-sample"] = empirical_bits(idx, v)
        totals["pooled H(v | scale, nb), in-sample"] = empirical_bits(idx * 9 + nbb, v)
        base = totals["static"]
        print(f"quality {q}: static {base / 8e3:.1f} kB of y over {len(crops)} crops")
        for k, b in totals.items():
            if k != "static":
                print(f"  {k:38s} {100 * (b / base - 1):+6.2f}%")
        report[str(q)] = {k: round(b, 1) for k, b in totals.items()}
    if args.json:
        args.json.write_text(json.dumps({"crops": [n for n, _ in crops], "bits": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

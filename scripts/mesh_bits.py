"""Where the bits of ``meshtrav`` go, per mesh and bit depth, next to Draco's file size.

    python scripts/mesh_bits.py [--qualities 1,5,9] [FILES...]

Per (mesh, bits): the .ncf file size, Draco's (compression level 7, same bits), their ratio, the
ideal code length of the connectivity (traversal and mode values), of the palettes and of the
positions, the rest of the file (container, geometry header), the encoder's choices (context
layout: >= 4 valence layouts; normal axis; unreferenced vertices near used ones; parallelogram
selection; vertices predicted by a mirror image; palette axes; lattice palettes; classes of the
prediction fractions, format 9; mantissa contexts, format 10; recency inputs of the mix, format
11), and counts of unreferenced vertices and of vertices whose quantised
position repeats an earlier one. Default files: the shared meshes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from neuralcodec import api
from neuralcodec.codecs import geometry as g
from neuralcodec.codecs import mesh_traversal as mt
from neuralcodec.codecs.base import get_codec
from neuralcodec.datasets.mesh import Mesh, read_mesh

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "3d" / "meshes"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--qualities", default="1,5,9")
    args = p.parse_args()
    files = args.files or sorted(
        f for f in DEFAULT.rglob("*") if f.suffix in (".obj", ".ply") and f.is_file()
    )
    qualities = [int(q) for q in args.qualities.split(",")]
    draco = get_codec("draco-mesh")
    ratios = []
    for f in files:
        m = read_mesh(f)
        m = Mesh(np.asarray(m.vertices), np.asarray(m.faces))  # geometry only, as the bench
        used = np.zeros(len(m.vertices), bool)
        used[np.asarray(m.faces).reshape(-1)] = True
        for q in qualities:
            bits = g.quality_to_bits(q)
            qv, _, _ = mt.quantise(m.vertices, bits)
            *_, parts = mt._encode_geometry(np.asarray(m.faces, np.int64), qv, (1 << bits) - 1)
            size = len(api.encode_array(m, "meshtrav", q))
            dsize = len(draco.compress(m, q)) if not draco.unavailable_reason() else 0
            ratio = size / dsize if dsize else float("nan")
            ratios.append(ratio)
            conn, pos = parts["connectivity"] / 8, parts["positions"] / 8
            pal = parts["palette_bits"] / 8
            modes = (
                f"layout {parts['layout']} normal {parts['normal']} near {parts['near']} "
                f"select {parts['select']} mirrored {parts['mirror']} palettes "
                f"{parts['palettes']} lattice {parts['lattice']} fractions {parts['frac']} "
                f"mantissa {parts['mant']} recency {parts['recency']}"
            )
            print(
                f"{f.name:22s} {bits:2d} bits: ours {size:7d} B, draco {dsize:7d} B, "
                f"ratio {ratio:.3f} | connectivity {conn - pal:7.0f} palettes {pal:6.0f} "
                f"positions {pos:7.0f} rest {size - conn - pos:4.0f} | {modes} | vertices "
                f"{len(qv)} unreferenced {int((~used).sum())} repeated positions "
                f"{len(qv) - len(np.unique(qv, axis=0))}",
                flush=True,
            )
    print(f"mean ratio {np.nanmean(ratios):.4f} over {len(ratios)} (mesh, bits) pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

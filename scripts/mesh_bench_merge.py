"""Merge the mesh rows of a meshes-only ``codec bench 3d`` run into the full 3D results.

    codec bench 3d --dataset ../shared/data/3d/meshes --codecs meshtrav,draco \\
        --qualities 1,3,5,7,9 --out /tmp/bench_mesh
    python scripts/mesh_bench_merge.py /tmp/bench_mesh [--into results/bench3d]

Replaces, in ``results.json``, the entries of the meshes (file names get the ``meshes/`` prefix
of the full run) and the ``mesh:meshtrav`` summary; in ``bdrate.md`` the mesh rows and the
``mesh:meshtrav`` line; copies the meshes' ``rd_*.png``. Point cloud rows stay as they are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from neuralcodec.bench.rd import write_atomic

PREFIX = "meshes/"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="output folder of the meshes-only bench")
    p.add_argument("--into", type=Path, default=Path("results/bench3d"))
    args = p.parse_args()
    merge(args.run, args.into, "mesh", PREFIX)
    return 0


def merge(run: Path, into: Path, modality: str, prefix: str) -> None:
    """Replace the ``modality`` entries (files under ``prefix``) and summaries of ``into`` by
    those of the single-modality run ``run``."""
    new = json.loads((run / "results.json").read_text())
    doc = json.loads((into / "results.json").read_text())
    tag = modality + ":"
    entries = {
        prefix + item["file"]: {**item, "file": prefix + item["file"]} for item in new["files"]
    }
    files = [entries.pop(item["file"], item) for item in doc["files"]]
    doc["files"] = files + list(entries.values())
    for key, value in new["summary"].items():
        if key.startswith(tag):
            doc["summary"][key] = value
    write_atomic(into / "results.json", json.dumps(doc, indent=1))
    lines = {}
    for line in (run / "bdrate.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[1] == modality:
            lines[prefix + cells[0]] = line.replace(f"| {cells[0]} |", f"| {prefix}{cells[0]} |", 1)
        elif len(cells) == 3 and cells[0].startswith(tag):
            lines[cells[0]] = line
    out = []
    for line in (into / "bdrate.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = cells[0] if cells else ""
        out.append(lines.get(key, line) if key.startswith((prefix, tag)) else line)
    write_atomic(into / "bdrate.md", "\n".join(out) + "\n")
    for png in run.glob("rd_*.png"):
        shutil.copyfile(png, into / png.name)
    print(f"merged {len(new['files'])} {modality} files into {into}")


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the README's results section from a ``codec bench rd`` output folder.

    results/kodak/results.json  --(per-codec mean points + BD-rate summary)-->  markdown table
    results/kodak/bdrate.md, rd_psnr.png, rd_msssim.png  --(linked)-->  same section

Only the text between ``<!-- results:start -->`` and ``<!-- results:end -->`` is replaced;
everything else in the README stays byte for byte. No number is typed by hand: each comes from
results.json, which holds the same BD-rates that ``bdrate.md`` tabulates.

Usage: python scripts/update_readme_results.py [--results results/kodak] [--readme README.md]
Exit status 1 with one ``error:`` line when a file or a marker is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

START = "<!-- results:start -->"
END = "<!-- results:end -->"


class ReadmeError(Exception):
    pass


def _curve_rows(doc: dict, images: list[str]) -> list[tuple[str, list[dict]]]:
    """(codec, mean points sorted by bpp) for each codec measured on every summary image."""
    rows = []
    for name, codec in sorted(doc.get("codecs", {}).items()):
        points = [
            p["mean"]
            for p in codec.get("points", {}).values()
            if p.get("mean") and p["mean"].get("n_images") == len(images)
        ]
        if points:
            rows.append((name, sorted(points, key=lambda m: m["bpp"])))
    return rows


# A curve of fewer qualities is interpolated over 1-3 segments and bends unlike an anchor's
# fuller curve: its BD-rate against that anchor then measures the interpolation, not the codec
# (scripts/matched_bd.py compares such a codec on the qualities both measured).
MIN_BD_POINTS = 4


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def results_table(doc: dict) -> str:
    """The markdown table: codec, points, bpp range, PSNR range, BD-rate vs each anchor."""
    summary = doc.get("summary")
    if not summary:
        raise ReadmeError("results.json has no summary; rerun `codec bench rd`")
    images, anchors, bd = summary["images"], summary["anchors"], summary["bd"]
    head = ["codec", "points", "bpp range", "PSNR range (dB)"] + [
        f"BD-rate vs {a['label']}" for a in anchors
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|" + "---:|" * len(anchors)]
    rows = _curve_rows(doc, images)
    counts = {name: len(points) for name, points in rows}
    for name, points in rows:
        cells = [
            f"`{name}`",
            str(len(points)),
            f"{points[0]['bpp']:.3f}–{points[-1]['bpp']:.3f}",
            f"{points[0]['psnr']:.2f}–{points[-1]['psnr']:.2f}",
        ]
        for a in anchors:  # published anchors have full curves
            sparse = len(points) < MIN_BD_POINTS <= counts.get(a["key"], MIN_BD_POINTS)
            value = bd.get(name, {}).get(a["key"], {}).get("bd_rate")
            cells.append(f"n/a ({len(points)} points)" if sparse else _pct(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def learned_tables(doc: dict) -> list[str]:
    """Per-quality means of every codec that reports its model's rate estimate (est_bpp)."""
    images = doc.get("summary", {}).get("images", [])
    out: list[str] = []
    for name, codec in sorted(doc.get("codecs", {}).items()):
        rows = []
        for q, p in sorted(codec.get("points", {}).items(), key=lambda kv: int(kv[0])):
            m = p.get("mean")
            if m and m.get("n_images") == len(images) and m.get("est_bpp") is not None:
                rows.append((int(q), m))
        if not rows:
            continue
        out += [
            "",
            f"`{name}` per quality level (means over the {len(images)} images; bpp = real `.ncf` "
            "file size; model bpp = the rate the network's likelihoods predict; times as the "
            "benchmark's workers measured them, see the speed table for isolated timings):",
            "",
            "| quality | bpp | model bpp | file / model | PSNR (dB) | MS-SSIM | encode s | decode s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for q, m in rows:
            ms = "n/a" if m.get("ms_ssim") is None else f"{m['ms_ssim']:.4f}"
            out.append(
                f"| {q} | {m['bpp']:.3f} | {m['est_bpp']:.3f} | {m['bpp'] / m['est_bpp']:.3f} "
                f"| {m['psnr']:.2f} | {ms} | {m['enc_s']:.2f} | {m['dec_s']:.2f} |"
            )
    return out


def section(results_dir: Path, readme_dir: Path) -> str:
    """The generated section body, with links relative to the README."""
    path = results_dir / "results.json"
    if not (results_dir / "bdrate.md").is_file():
        raise ReadmeError(f"{results_dir / 'bdrate.md'} is missing; rerun `codec bench rd`")
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReadmeError(f"cannot read {path}: {exc}") from None
    rel = Path(os.path.relpath(results_dir.resolve(), readme_dir.resolve())).as_posix()
    n = len(doc.get("summary", {}).get("images", []))
    return "\n".join(
        [
            f"Rate-distortion on {Path(doc.get('dataset', '?')).name} ({n} images), "
            "generated by `scripts/update_readme_results.py` from "
            f"[`{rel}/results.json`]({rel}/results.json). BD-rate: Bjøntegaard delta rate "
            "on PSNR-RGB (PCHIP), negative = fewer bits than the anchor for the same PSNR. "
            f"All tables: [`{rel}/bdrate.md`]({rel}/bdrate.md).",
            "",
            results_table(doc),
            "",
            f"![RD curves, PSNR]({rel}/rd_psnr.png)",
            *learned_tables(doc),
            *extra_tables(results_dir.parent),
        ]
    )


ENTROPY_CODERS = (
    ("ours", "ours (C range coder, 4 lanes)"),
    ("compressai_rans", "CompressAI rANS"),
    ("constriction_range", "constriction range coder"),
    ("constriction_ans", "constriction ANS"),
)


def entropy_table(doc: dict) -> list[str]:
    """``codec bench entropy --json`` output as a markdown table."""
    lines = [
        "",
        f"Entropy coders, {doc['n']:,} symbols from 64 discretised Gaussians, 16-bit tables, one "
        "thread (`codec bench entropy --json results/entropy.json`):",
        "",
        "| coder | encode Msym/s | decode Msym/s | bytes | overhead vs ideal |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in ENTROPY_CODERS:
        r = doc.get(key)
        if r and "enc_msym_s" in r:
            lines.append(
                f"| {label} | {r['enc_msym_s']:.1f} | {r['dec_msym_s']:.1f} | {r['bytes']:,} "
                f"| {r['overhead_pct']:+.3f}% |"
            )
    return lines


def speed_table(doc: dict) -> list[str]:
    """``codec bench speed --json`` output as a markdown table."""
    lines = [
        "",
        f"Learned codec speed on {doc['image']} at quality {doc['quality']}, "
        f"{doc['threads']} threads, best of several runs "
        "(`codec bench speed --json results/speed.json`). CompressAI runs with random weights "
        "(`pretrained=False`, as no weights can be downloaded here), which leaves its amount of "
        "work unchanged but makes its byte count meaningless:",
        "",
        "| implementation | encode s | decode s | bytes |",
        "|---|---:|---:|---:|",
    ]
    for name, r in doc["results"].items():
        lines.append(f"| {name} | {r['enc_s']:.3f} | {r['dec_s']:.3f} | {r['bytes']:,} |")
    ratios = doc.get("ratios", {})
    if ratios:
        lines.append("")
        for name, r in ratios.items():
            lines.append(
                f"- `{name}`: encode {r['encode']:.2f}x, decode {r['decode']:.2f}x the time of "
                f"{r['against']}"
            )
    return lines


def extra_tables(results_root: Path) -> list[str]:
    """Tables of the other benchmarks whose JSON output sits in ``results/``, if present."""
    out: list[str] = []
    for name, render in (("entropy.json", entropy_table), ("speed.json", speed_table)):
        path = results_root / name
        if path.is_file():
            try:
                out += render(json.loads(path.read_text()))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ReadmeError(f"cannot read {path}: {exc}") from None
    return out


def replace_section(text: str, body: str) -> str:
    """``text`` with the part between the markers replaced by ``body``."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ReadmeError(f"the README needs exactly one {START} and one {END} marker")
    if text.index(END) < text.index(START):
        raise ReadmeError(f"{END} comes before {START}")
    head, rest = text.split(START)
    tail = rest.split(END)[1]
    return f"{head}{START}\n{body}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results/kodak"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        updated = replace_section(text, section(args.results, args.readme.parent))
    except (OSError, ReadmeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if updated != text:
        args.readme.write_text(updated)
    print(f"{args.readme}: results section {'updated' if updated != text else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

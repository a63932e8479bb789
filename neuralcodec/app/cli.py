"""``codec``: the command line, a thin layer over ``neuralcodec.api``.

::

    codec encode INPUT OUTPUT [--codec NAME] [--quality Q] [--preset P] [--force]
    codec decode INPUT OUTPUT [--force]
    codec info FILE [--json]
    codec list [--json]
    codec demo-report IMAGE [--codec NAME] [--quality Q] [--json]
    codec bench entropy|rd|speed|3d|video ... / codec train ... / codec demo ...   (loaded on demand)

``encode``/``decode``/``info`` work for every modality with a registered adapter
(``neuralcodec.modalities``): the input is read and the output written in that modality's
formats (images: PNG, JPEG, WebP, ... in, PNG out).

Exit status: 0 on success, 1 on any error (one ``error: ...`` line on stderr; ``--debug`` adds the
traceback), 2 on usage errors, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ..runtime import tune_allocator

# Sub-commands implemented elsewhere: (words, module). The module provides
# add_arguments(parser) and run(args) -> int | None and is imported only when used.
DELEGATED = (
    (("bench", "entropy"), "neuralcodec.bench.entropy"),
    (("bench", "rd"), "neuralcodec.bench.rd"),
    (("bench", "speed"), "neuralcodec.bench.speed"),
    (("bench", "3d"), "neuralcodec.bench.geometry3d"),
    (("bench", "video"), "neuralcodec.bench.video"),
    (("bench", "splat"), "neuralcodec.bench.splat"),
    (("train",), "neuralcodec.train"),
    (("demo",), "neuralcodec.app.demo"),
)


def _debug_flag(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks on errors"
    )


def _add_encode(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("encode", parents=[common], help="file (e.g. an image) -> .ncf")
    p.add_argument("input", help="file to encode (images: png, jpg, webp, bmp, tiff, ppm)")
    p.add_argument("output", help=".ncf file to write")
    p.add_argument(
        "--codec",
        help="codec name (default: the best codec with weights for the input's kind of data)",
    )
    p.add_argument(
        "--quality", "-q", type=int, help="quality level (default: middle of the codec's range)"
    )
    p.add_argument("--preset", help="encoder effort preset, for codecs that take one")
    p.add_argument("--frames", type=int, help="video: code the first N frames only")
    p.add_argument(
        "--layout",
        help="point clouds: the columns of a raw float32 .bin or .xyz file (xyz, xyzi = KITTI, "
        "xyzrgb, xyzirgb, xyzit, or comma-separated names such as x,y,z,intensity,ring)",
    )
    p.add_argument("--gop", type=int, help="video: intra period (frames per group of pictures)")
    p.add_argument(
        "--bframes",
        type=int,
        help="video: anchor spacing, B frames between anchors (1: none; 0, the default: chosen per clip)",
    )
    p.add_argument(
        "--no-scenecut",
        action="store_true",
        help="video: I frames every --gop frames only, not also where a scene cuts",
    )
    p.add_argument("--force", "-f", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_encode)


def _add_decode(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("decode", parents=[common], help=".ncf -> file (images: PNG)")
    p.add_argument("input", help=".ncf file")
    p.add_argument("output", help="file to write, in the data's own format (images: .png)")
    p.add_argument("--force", "-f", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_decode)


def _add_simple(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("info", parents=[common], help="show the header of an .ncf file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("list", parents=[common], help="list codecs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser(
        "demo-report", parents=[common], help="encode/decode one image and compare with JPEG"
    )
    p.add_argument("image")
    p.add_argument("--codec", help="codec name (default: the best image codec with weights)")
    p.add_argument("--quality", "-q", type=int)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_demo_report)


def _add_delegated(sub: Any, common: argparse.ArgumentParser) -> None:
    groups: dict[str, Any] = {}
    for words, module in DELEGATED:
        parent = sub
        if len(words) == 2:
            if words[0] not in groups:
                g = sub.add_parser(words[0], parents=[common], help=f"{words[0]} tools")
                groups[words[0]] = g.add_subparsers(dest="tool", metavar="TOOL", required=True)
            parent = groups[words[0]]
        p = parent.add_parser(
            words[-1], add_help=False, help=f"see: codec {' '.join(words)} --help"
        )
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_delegate(words, module))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codec", description="Learned compression: .ncf files, codecs, benchmarks."
    )
    _debug_flag(parser, False)
    common = argparse.ArgumentParser(add_help=False)
    _debug_flag(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_encode(sub, common)
    _add_decode(sub, common)
    _add_simple(sub, common)
    _add_delegated(sub, common)
    return parser


# ----------------------------------------------------------------------------- commands


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _stage_bar(desc: str, total: int) -> Any:
    """A tqdm bar on a terminal, a no-op elsewhere."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False, file=sys.stderr
    )


def _follow(bar: Any) -> Any:
    """A progress listener moving ``bar`` through the stages a codec reports (INR fitting)."""

    def listener(stage: str, done: int, total: int) -> None:
        if bar.total != total or stage not in getattr(bar, "desc", ""):  # disabled bars have none
            bar.reset(total=total)
            bar.set_description(f"encode: {stage}", refresh=False)
        bar.update(done - bar.n)

    return listener


def _dims(report: Any) -> str:
    """``W x H colour space`` for data measured per pixel, else the shape."""
    if report.rate_unit == "bpp" and report.modality == "video":
        frames, h, w = report.shape[:3]
        return f"{frames} frames {w}x{h} {report.colorspace}"
    if report.rate_unit == "bpp":
        h, w = report.shape[:2]
        return f"{w}x{h} {report.colorspace}"
    return f"{report.modality} {'x'.join(map(str, report.shape))}"


def cmd_encode(args: argparse.Namespace) -> int:
    from neuralcodec import api, progress

    with _stage_bar("encode", 1) as bar, progress.listening(_follow(bar)):
        options = {"preset": args.preset} if args.preset else {}
        if args.gop is not None:
            options["gop"] = args.gop
        if args.bframes is not None:
            options["bframes"] = args.bframes
        if args.no_scenecut:
            options["scenecut"] = False
        read_options = {"max_frames": args.frames} if args.frames is not None else {}
        if args.layout is not None:
            read_options["layout"] = args.layout
        report = api.encode_file(
            args.input,
            args.output,
            args.codec,
            args.quality,
            force=args.force,
            options=options or None,
            read_options=read_options or None,
        )
        bar.update(bar.total - bar.n)
    if args.json:
        _print_json(report.to_dict())
        return 0
    print(
        f"{report.dst}: {report.codec} q={report.quality}, {_dims(report)}, "
        f"{report.bytes} bytes{_rate_text(report.rate, report.rate_unit)}, {report.seconds:.2f} s"
    )
    for note in report.notes:
        print(f"  {note}", file=sys.stderr if note.startswith("warning") else sys.stdout)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from neuralcodec import api

    with _stage_bar("decode", 1) as bar:
        report = api.decode_file(args.input, args.output, force=args.force)
        bar.update(1)
    if args.json:
        _print_json(report.to_dict())
        return 0
    dims = "x".join(map(str, report.shape))
    print(f"{report.dst}: {dims} from {report.codec} q={report.quality}, {report.seconds:.2f} s")
    return 0


def _rate_text(rate: float | None, unit: str | None) -> str:
    return "" if rate is None else f", {rate:.4f} {unit}"


def format_info(info: dict[str, Any]) -> str:
    """The text ``codec info`` prints: one aligned row per header field, then the streams."""
    from neuralcodec.container import describe

    rate = _rate_text(info["rate"], info["rate_unit"])
    rows = [
        ("format version", str(info["format_version"])),
        ("file size", f"{info['file_bytes']} bytes{rate}"),
    ]
    rows += describe(info)
    rows += [(f"stream {s['name']}", f"{s['bytes']} bytes") for s in info["streams"]]
    rows.append(
        (
            "decodable here",
            "yes"
            if info["codec_known"] and info["weights"] in ("ok", "not needed")
            else f"no ({info['weights']})",
        )
    )
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {text}" for label, text in rows)


def cmd_info(args: argparse.Namespace) -> int:
    from neuralcodec import api

    info = api.file_info(args.file)
    if args.json:
        _print_json(info)
    else:
        print(format_info(info))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from neuralcodec import api

    rows = api.list_codecs()
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'name':<18} {'id':>4}  {'modality':<10} {'quality':<8} {'kind':<6} weights")
    for r in rows:
        kind = "ncf" if r["writes_ncf"] else "bench"
        q = "{}..{}".format(*r["qualities"])
        weights = "yes" if r["weights_available"] else "no"
        print(f"{r['name']:<18} {r['codec_id']:>4}  {r['modality']:<10} {q:<8} {kind:<6} {weights}")
    return 0


def cmd_demo_report(args: argparse.Namespace) -> int:
    from neuralcodec.app import report

    result = report.demo_report(args.image, args.codec, args.quality)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(report.format_demo_report(result))
    return 0


def _delegate(words: tuple[str, ...], module_name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        prog = "codec " + " ".join(words)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise RuntimeError(
                    f"{prog} is not available in this installation ({module_name} is missing)"
                ) from None
            raise
        parser = argparse.ArgumentParser(prog=prog)
        module.add_arguments(parser)
        sub_args = parser.parse_args(args.rest)
        return int(module.run(sub_args) or 0)

    return run


# ----------------------------------------------------------------------------- entry point


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return " ".join(text.split())


def _split_delegated(argv: list[str]) -> argparse.Namespace | None:
    """``codec [--debug] bench rd ARGS`` -> a namespace that runs the delegated module on ARGS."""
    debug = False
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    for words, module in DELEGATED:
        if tuple(argv[: len(words)]) == words:
            rest = argv[len(words) :]
            return argparse.Namespace(debug=debug, rest=rest, func=_delegate(words, module))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _split_delegated(argv) or build_parser().parse_args(argv)
    tune_allocator()  # large decode buffers reused, not faulted in again (runtime.py)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # every failure becomes one line; --debug shows where
        if args.debug:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

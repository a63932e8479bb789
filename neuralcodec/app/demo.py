"""``codec demo``: a Gradio web page over the library (``demo_core`` does the work).

::

    browser --HTTP (127.0.0.1:7860 unless --host/--port)--> Gradio Blocks
      Compress    image --demo_core.compress--> .ncf download, reconstruction, metrics, comparison
      Decompress  .ncf  --demo_core.decompress--> PNG download + header JSON
      Benchmarks  results/<dataset>/ --demo_core.load_benchmarks--> RD plots + BD-rate table

The page works offline: no share link, no analytics, fonts and scripts served by the local server.
Bad uploads (too big, not an image, corrupted ``.ncf``) end as a message in the page.
"""

import argparse
import contextlib
import json
import logging
import os
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralcodec import api
from neuralcodec.app import demo_core as core
from neuralcodec.app import demo_media as media
from neuralcodec.codecs.base import codec_class
from neuralcodec.datasets.images import encode_png

LOG = logging.getLogger("neuralcodec.demo")
RESULTS_DIR = Path("results")  # relative to the working directory, as `codec bench rd --out`
QUALITY, TARGET = "quality level", "target bpp"
CROP_SLOTS = ("original", "ours", *core.ANCHOR_CODECS)
TITLE = "neuralcodec — learned compression"
INTRO = (
    "Compress an image with a learned codec into an `.ncf` file, see what it costs and what it "
    "looks like next to JPEG, WebP and AVIF **at the same file size**; decode `.ncf` files; "
    "code short video clips (next to x265), point clouds, meshes and Gaussian splat scenes; "
    "browse the latest Kodak rate-distortion benchmarks. Everything runs on this machine."
)
CSS = """
.gradio-container {max-width: 1400px !important; margin: auto;}
#summary h3 {margin-top: 0;}
.crop img {image-rendering: pixelated;}
"""


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo finds benchmark results, what it accepts, where it writes downloads."""

    results_dir: Path = RESULTS_DIR
    limits: core.DemoLimits = field(default_factory=core.DemoLimits)
    work_dir: Path | None = None  # None: the system temporary folder


def _gradio() -> Any:
    """Import gradio with its telemetry off (the variable is read when gradio reports)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio

    return gradio


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a failure into a message in the page and one line in the server log."""
    gr = _gradio()
    try:
        yield
    except gr.Error:
        raise
    except (ValueError, OSError, RuntimeError, NotImplementedError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        LOG.warning("request refused: %s", text)
        LOG.debug("details", exc_info=True)
        raise gr.Error(text, print_exception=False) from None


def _new_dir(config: DemoConfig) -> Path:
    return Path(tempfile.mkdtemp(prefix="ncf-demo-", dir=config.work_dir))


# ----------------------------------------------------------------------------- Compress tab


def _quality_slider(codec: str | None) -> Any:
    gr = _gradio()
    if not codec:
        return gr.Slider()
    lo, hi = core.quality_range(codec)
    return gr.Slider(
        minimum=lo, maximum=hi, value=api.default_quality(codec_class(codec)), interactive=True
    )


def _rate_inputs(mode: str) -> tuple[Any, Any]:
    gr = _gradio()
    return gr.Slider(visible=mode == QUALITY), gr.Number(visible=mode == TARGET)


def _crop_views(state: dict | None, cx: float, cy: float, size: int) -> list[Any]:
    """The crop-position image, then one zoomed crop per slot (same place in every image)."""
    gr = _gradio()
    if not state:
        return [gr.Image(value=None)] + [gr.Image(value=None) for _ in CROP_SLOTS]
    original = state["original"]
    box = core.crop_box(original.shape, cx / 100.0, cy / 100.0, int(size))
    views = [gr.Image(value=core.outline(original, box))]
    for label, image in state["slots"]:
        value = None if image is None else core.zoomed_crop(image, box)
        views.append(gr.Image(value=value, label=label))
    return views


def _slots(result: core.CompressResult) -> list[tuple[str, np.ndarray | None]]:
    o = result.ours
    slots = [
        ("original", result.original),
        (f"{o.codec} · {o.bpp:.3f} bpp", o.image),
    ]
    coded = {a.codec: a for a in result.anchors}
    for name in core.ANCHOR_CODECS:
        a = coded.get(name)
        label = f"{name}: unavailable" if a is None else f"{name} · {a.bpp:.3f} bpp"
        slots.append((label, None if a is None else a.image))
    return slots


def _show_upload(path: str | None, config: DemoConfig) -> tuple[Any, str]:
    """Preview an upload at once, so a bad file is reported before anything is coded."""
    gr = _gradio()
    if path is None:
        return gr.Image(value=None), ""
    with _user_errors():
        array = core.load_image(path, config.limits)
    h, w, c = array.shape
    kind = {1: "gray", 2: "gray + alpha", 3: "RGB", 4: "RGBA"}[c]
    bits = 8 * array.dtype.itemsize
    return gr.Image(value=core.rgb8(array)), f"{Path(path).name}: {w}×{h} {kind}, {bits}-bit"


def _compress(
    config: DemoConfig,
    path: str | None,
    codec: str | None,
    mode: str,
    quality: float,
    target: float | None,
    cx: float,
    cy: float,
    size: int,
    progress: Any,
) -> list[Any]:
    with _user_errors():
        if not codec:
            raise ValueError("no .ncf image codec with weights is installed here")
        progress(0.0, desc="reading the image")
        array = core.load_image(path, config.limits)
        result = core.compress(
            array,
            codec,
            quality=int(quality) if mode == QUALITY else None,
            target_bpp=float(target) if mode == TARGET and target is not None else None,
            progress=lambda f, msg: progress(f, desc=msg),
        )
        out = _new_dir(config) / f"{Path(path).stem}.{codec}.q{result.ours.quality}.ncf"
        out.write_bytes(result.ncf)
    state = {"original": result.original, "slots": _slots(result)}
    table = {"headers": core.TABLE_HEADERS, "data": core.table_rows(result)}
    return [
        (result.original, result.ours.image),
        core.summary_markdown(result),
        table,
        str(out),
        state,
        *_crop_views(state, cx, cy, size),
    ]


def _pick_crop(state: dict | None, size: int, evt: Any) -> list[Any]:
    """A click on the position image moves every crop there."""
    if not state:
        return [50, 50, *_crop_views(None, 50, 50, size)]
    h, w = state["original"].shape[:2]
    x, y = evt.index[0], evt.index[1]
    cx, cy = round(100.0 * x / w, 1), round(100.0 * y / h, 1)
    return [cx, cy, *_crop_views(state, cx, cy, size)]


def _compress_tab(gr: Any, config: DemoConfig) -> tuple[Any, Any]:
    """Lay out the tab and wire its events; returns (page-load function, its output)."""
    codecs = core.ncf_codecs()
    first = codecs[0] if codecs else None
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(
                label="Image (PNG, JPEG, WebP, BMP, TIFF, PPM)",
                file_types=["image"],
                elem_id="image-upload",
            )
            upload_note = gr.Markdown()
            codec = gr.Dropdown(
                choices=[(core.codec_label(n), n) for n in codecs],
                value=first,
                label="Codec (.ncf)",
                info=None if codecs else "no learned codec has weights here yet",
            )
            mode = gr.Radio([QUALITY, TARGET], value=QUALITY, label="Rate control")
            # API calls are checked against the range of every codec (each page narrows it to
            # the chosen codec's range on load); demo_core checks the codec's own range.
            ranges = [core.quality_range(n) for n in codecs] or [(1, 8)]
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
            quality = gr.Slider(
                lo, hi, value=(lo + hi) // 2, step=1, label="Quality (higher = better, bigger)"
            )
            target = gr.Number(
                value=0.5,
                minimum=0.01,
                maximum=24,
                step=0.05,
                label="Target bpp (closest quality is searched)",
                visible=False,
            )
            run = gr.Button("Compress", variant="primary", elem_id="compress-button")
            gr.Markdown(
                f"Limits: {config.limits.max_upload_mb} MB per upload, "
                f"{config.limits.max_pixels / 1e6:.0f} megapixels per image."
            )
            where = gr.Image(
                label="Crop position (click to move)",
                interactive=False,
                format="png",
                height=240,
                buttons=[],
                elem_id="crop-position",
            )
        with gr.Column(scale=2):
            slider = gr.ImageSlider(
                label="Original | reconstruction (drag the handle)",
                format="png",
                interactive=False,
                max_height=560,
            )
            summary = gr.Markdown("Upload an image and press **Compress**.", elem_id="summary")
            table = gr.Dataframe(
                headers=core.TABLE_HEADERS,
                label="Same image, closest file size",
                interactive=False,
                elem_id="comparison",
            )
            ncf_file = gr.File(label="Download the .ncf file", interactive=False)
    gr.Markdown("#### Zoomed crops, same place in every image")
    with gr.Row():
        cx = gr.Slider(0, 100, value=50, step=0.5, label="Crop centre x (%)")
        cy = gr.Slider(0, 100, value=50, step=0.5, label="Crop centre y (%)")
        size = gr.Slider(16, 256, value=96, step=8, label="Crop size (px)")
    with gr.Row():
        crops = [
            gr.Image(
                label=s,
                interactive=False,
                format="png",
                elem_classes=["crop"],
                height=300,
                buttons=["fullscreen"],
            )
            for s in CROP_SLOTS
        ]
    state = gr.State()

    codec.change(_quality_slider, codec, quality, api_visibility="private")
    mode.change(_rate_inputs, mode, [quality, target], api_visibility="private")
    upload.upload(
        lambda p: _show_upload(p, config), upload, [where, upload_note], api_visibility="private"
    )

    def compress(path, codec, mode, quality, target, cx, cy, size, progress=gr.Progress()):  # noqa: B008 (gradio injects it)
        return _compress(config, path, codec, mode, quality, target, cx, cy, size, progress)

    run.click(
        compress,
        [upload, codec, mode, quality, target, cx, cy, size],
        [slider, summary, table, ncf_file, state, where, *crops],
        api_name="compress",
        show_progress_on=[slider],
    )
    for s in (cx, cy, size):
        s.release(_crop_views, [state, cx, cy, size], [where, *crops], api_visibility="private")

    def pick(state, size, evt: gr.SelectData):
        return _pick_crop(state, size, evt)

    where.select(pick, [state, size], [cx, cy, where, *crops], api_visibility="private")
    return (lambda: _quality_slider(first)), quality


# ----------------------------------------------------------------------------- Decompress tab


def _decompress(config: DemoConfig, path: str | None, progress: Any) -> list[Any]:
    with _user_errors():
        progress(0.1, desc="checking the file")
        array, info = core.decompress(path, config.limits)
        progress(0.8, desc="writing the PNG")
        out = _new_dir(config) / f"{Path(path).stem}.png"
        out.write_bytes(encode_png(array))
    h, w = array.shape[:2]
    status = (
        f"Decoded **{w}×{h}** ({info['colorspace']}, {info['bit_depth']}-bit) with "
        f"**{info['codec_name']}** q={info['quality']}: {info['file_bytes']:,} bytes, "
        f"{info['bpp']:.4f} bpp."
    )
    header = json.loads(json.dumps(info, default=str))
    return [core.rgb8(array), str(out), header, status]


def _decompress_tab(gr: Any, config: DemoConfig) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(label=".ncf file", file_types=[".ncf"], elem_id="ncf-upload")
            run = gr.Button("Decompress", variant="primary", elem_id="decompress-button")
            status = gr.Markdown(
                "Upload an `.ncf` file made by `codec encode` or the Compress tab."
            )
            png = gr.File(
                label="Download the PNG (original size, channels and bit depth)", interactive=False
            )
        with gr.Column(scale=2):
            image = gr.Image(label="Decoded image", format="png", interactive=False)
            header = gr.JSON(label="Header (codec info)")

    def decompress(path, progress=gr.Progress()):  # noqa: B008 (gradio injects it)
        return _decompress(config, path, progress)

    run.click(
        decompress,
        upload,
        [image, png, header, status],
        api_name="decompress",
        show_progress_on=[image],
    )


# ----------------------------------------------------------------------------- Benchmarks tab


def _read_png(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _benchmarks(config: DemoConfig) -> list[Any]:
    with _user_errors():
        view = core.load_benchmarks(config.results_dir)
    if view.folder is None:
        note = (
            f"**No benchmark results yet** in `{config.results_dir}`. Run "
            "`codec bench rd --out results/kodak` to produce RD plots and the BD-rate table."
        )
        return [None, None, "", note]
    stamp = max(p.stat().st_mtime for p in view.folder.iterdir() if p.is_file())
    from datetime import datetime

    when = datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")
    note = f"Results from `{view.folder}` (updated {when})."
    table = view.bdrate or "*No BD-rate table (`bdrate.md`) in this folder.*"
    return [_read_png(view.psnr_plot), _read_png(view.msssim_plot), table, note]


def _benchmarks_tab(gr: Any, config: DemoConfig) -> Any:
    with gr.Row():
        source = gr.Markdown(elem_id="bench-source")
        reload = gr.Button("Reload", size="sm", scale=0)
    with gr.Row():
        psnr = gr.Image(label="Rate-distortion, PSNR", format="png", interactive=False)
        msssim = gr.Image(label="Rate-distortion, MS-SSIM", format="png", interactive=False)
    gr.Markdown("#### BD-rate (negative = fewer bits than the anchor for the same quality)")
    bdrate = gr.Markdown(elem_id="bdrate")
    outputs = [psnr, msssim, bdrate, source]
    reload.click(lambda: _benchmarks(config), None, outputs, api_name="benchmarks")
    return lambda: _benchmarks(config), outputs


# ----------------------------------------------------------------------------- app


def build_app(config: DemoConfig | None = None) -> Any:
    """The Gradio Blocks of the demo (not launched)."""
    gr = _gradio()
    config = config or DemoConfig()
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(1800, 3600)) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Tabs():
            with gr.Tab("Compress", id="compress"):
                load_quality, quality = _compress_tab(gr, config)
            with gr.Tab("Decompress", id="decompress"):
                _decompress_tab(gr, config)
            with gr.Tab("Video", id="video"):
                media.video_tab(gr, lambda: _new_dir(config), _user_errors)
            with gr.Tab("3D", id="3d"):
                media.three_d_tab(gr, lambda: _new_dir(config), _user_errors)
            with gr.Tab("Benchmarks", id="benchmarks"):
                load, outputs = _benchmarks_tab(gr, config)
        app.load(load, None, outputs, api_visibility="private")
        app.load(load_quality, None, quality, api_visibility="private")
    app.queue(default_concurrency_limit=1, max_size=32)
    return app


def launch_options(host: str, port: int, limits: core.DemoLimits) -> dict[str, Any]:
    """Keyword arguments of ``Blocks.launch``: local, private, offline, size-capped."""
    gr = _gradio()
    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "inbrowser": False,
        "ssr_mode": False,
        "mcp_server": False,
        "pwa": False,
        "show_error": False,
        "max_file_size": limits.max_upload_bytes,
        "theme": gr.themes.Soft(primary_hue="indigo", font=["system-ui", "sans-serif"]),
        "css": CSS,
        "footer_links": ["api"],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the web demo (Compress / Decompress / Video / 3D / Benchmarks) on this machine."
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument("--port", type=int, default=7860, help="TCP port (default: 7860)")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        help="benchmark results folder (default: results/ in the working directory)",
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="ncf-demo-") as work:
        config = DemoConfig(results_dir=args.results, work_dir=Path(work))
        app = build_app(config)
        print(f"neuralcodec demo on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
        app.launch(**launch_options(args.host, args.port, config.limits), quiet=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuralcodec.app.demo")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

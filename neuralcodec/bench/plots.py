"""RD plots: bpp on x, PSNR or MS-SSIM (dB) on y, one curve per codec.

Local curves are solid with round markers; published curves are dashed, thinner, and labelled
"(published)". The legend sits outside the axes so it never hides a curve. The x range covers
the local curves (at least 0..2 bpp) and the y range is fitted to what is visible there.
Uses matplotlib's object API with the Agg canvas (no pyplot global state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neuralcodec.bench.metrics import ms_ssim_db
from neuralcodec.bench.reference import RDCurve


@dataclass(frozen=True)
class PlotStyle:
    width_in: float = 13.0
    height_in: float = 7.5
    dpi: int = 110
    min_xmax: float = 2.0  # bpp
    local_width: float = 2.0
    published_width: float = 1.2
    font_size: int = 11


METRICS = {
    "psnr": "PSNR-RGB (dB)",
    "ms_ssim": "MS-SSIM-RGB (dB): -10 log10(1 - MS-SSIM)",
}


def _y_values(curve: RDCurve, metric: str) -> tuple[float, ...] | None:
    if metric == "psnr":
        return curve.psnr
    if curve.ms_ssim is None:
        return None
    return tuple(ms_ssim_db(v) for v in curve.ms_ssim)


def _limits(series: list[tuple[RDCurve, tuple[float, ...]]], style: PlotStyle):
    local = [max(c.bpp) for c, _ in series if not c.published]
    xmax = max([style.min_xmax, *local]) * 1.05
    visible = [y for c, ys in series for b, y in zip(c.bpp, ys, strict=True) if b <= xmax]
    if not visible:
        return (0.0, xmax), None
    lo, hi = min(visible), max(visible)
    pad = 0.04 * (hi - lo or 1.0)
    return (0.0, xmax), (lo - pad, hi + pad)


def plot_rd(
    curves: list[RDCurve],
    metric: str,
    path: Path,
    title: str,
    style: PlotStyle | None = None,
    ylabel: str | None = None,
) -> None:
    """Write one RD plot (PNG) of ``curves`` for ``metric`` ("psnr" or "ms_ssim") to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    style = style or PlotStyle()
    series = [(c, ys) for c in curves if (ys := _y_values(c, metric)) is not None]
    fig = Figure(figsize=(style.width_in, style.height_in), dpi=style.dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.06, 0.09, 0.64, 0.84))
    _draw(ax, series, style, _appearance(curves))
    xlim, ylim = _limits(series, style)
    ax.set_xlim(*xlim)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("bits per pixel (bpp)", fontsize=style.font_size)
    ax.set_ylabel((ylabel or METRICS[metric]), fontsize=style.font_size)
    ax.set_title(title, fontsize=style.font_size + 1)
    ax.grid(True, which="major", alpha=0.35)
    ax.minorticks_on()
    ax.grid(True, which="minor", alpha=0.12)
    if series:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            fontsize=style.font_size - 2,
            frameon=False,
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


# Colours for published curves without a local counterpart, apart from the tab10 colours of local ones.
PUBLISHED_COLORS = (
    "#000000",  # black
    "#7f7f7f",  # grey
    "#bcbd22",  # olive
    "#17becf",  # cyan
    "#000080",  # navy
    "#b8860b",  # dark goldenrod
    "#006d5b",  # dark teal
    "#800000",  # maroon
    "#9acd32",  # yellow green
    "#5f4b8b",  # slate violet
    "#ff7f50",  # coral
    "#4a4a00",  # dark olive
    "#00bfff",  # sky
    "#8b008b",  # dark magenta
)
PUBLISHED_MARKERS = ("^", "v", "s", "D", "x", "+", "<", ">", "p", "*")


def _base_name(curve: RDCurve) -> str:
    """Lower-case codec name shared by a local curve and its published counterpart."""
    return curve.label.removesuffix(" (published)").strip().lower()


def _appearance(curves: list[RDCurve]) -> dict[str, tuple[str, str]]:
    """``key -> (colour, marker)``: tab10 and "o" for local curves; published curves dark
    colours and varied markers, except that a published curve of a codec also run locally
    (e.g. JPEG) shares that codec's colour."""
    import matplotlib

    local_palette = matplotlib.colormaps["tab10"].colors
    out, by_name = {}, {}
    for i, c in enumerate(c for c in curves if not c.published):
        by_name[_base_name(c)] = local_palette[i % len(local_palette)]
        out[c.key] = (by_name[_base_name(c)], "o")
    for i, c in enumerate(c for c in curves if c.published):
        color = by_name.get(_base_name(c)) or PUBLISHED_COLORS[i % len(PUBLISHED_COLORS)]
        out[c.key] = (color, PUBLISHED_MARKERS[i % len(PUBLISHED_MARKERS)])
    return out


def _draw(ax, series: list[tuple[RDCurve, tuple[float, ...]]], style: PlotStyle, looks) -> None:
    for curve, ys in series:
        color, marker = looks[curve.key]
        if curve.published:
            ax.plot(
                curve.bpp,
                ys,
                linestyle=(0, (5, 3)),
                marker=marker,
                markersize=3.5,
                color=color,
                linewidth=style.published_width,
                alpha=0.9,
                label=curve.label,
            )
        else:
            ax.plot(
                curve.bpp,
                ys,
                linestyle="-",
                marker=marker,
                markersize=5,
                color=color,
                linewidth=style.local_width,
                label=curve.label,
                zorder=3,
            )

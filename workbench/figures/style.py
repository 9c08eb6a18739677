"""One look for every figure: colours per method, run, module and memory category, paper sizes,
matplotlib settings, how many tick labels fit.

The same colour means the same thing in the app (plotly) and in exported paper figures (matplotlib):
a method keeps its colour in every figure, and so does each of its runs (several runs of one method
differ in line style, marker or bar pattern, never in colour); a projection (q_proj, v_proj ...) and a
memory category keep their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # green
    "#D55E00",  # vermillion
    "#CC79A7",  # purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
    "#999999",  # grey
)

# More colours once the palette is used up (many module kinds, many runs): matplotlib's tab20 hues.
EXTRA = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
)


def method_colors() -> dict[str, str]:
    """{method: colour} of every registered method, in registry order (each method class's `color`)."""
    from workbench.methods import METHODS  # discovery imports the method packages: only when drawing

    return {name: cls.color for name, cls in METHODS.items()}


# Marker shapes of a scatter's second grouping (ScatterSpec.symbol), the same in both backends:
# (plotly symbol, matplotlib marker).
SYMBOLS = (("circle", "o"), ("diamond", "D"), ("square", "s"), ("triangle-up", "^"), ("cross", "P"))


# Projections in model order; attention first, as the SMT paper plots them.
MODULE_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Memory categories from the bottom of a stack to the top.
CATEGORY_ORDER = (
    "params_frozen",
    "params_trainable",
    "gradients",
    "optimizer_state",
    "saved_activations",
)

# One colour per memory category, the same in every memory figure (stacked steps, phases, sweeps):
# the logical categories, the live saved peak, their total, and the measured peaks.
CATEGORY_COLORS = {
    "params_frozen": "#BBBBBB",
    "params_trainable": "#0072B2",
    "gradients": "#E69F00",
    "optimizer_state": "#009E73",
    "saved_activations": "#D55E00",
    "saved_peak": "#CC79A7",
    "total_logical": "#000000",
    "total": "#000000",
    "max_allocated": "#56B4E9",
    "max_reserved": "#8c564b",
    "nvml_used": "#9467bd",
    "rss_window_peak": "#7f7f7f",
}

CATEGORY_LABELS = {
    "params_frozen": "parameters, frozen",
    "params_trainable": "parameters, trainable",
    "gradients": "gradients",
    "optimizer_state": "optimizer state",
    "saved_activations": "saved activations",
}

# Paper sizes in inches (width, height of one row of panels): one column of a two-column paper
# (ACL/ICML about 3.3 in) and the full text width (about 7 in).
SIZES: dict[str, tuple[float, float]] = {"one": (3.4, 2.3), "two": (7.0, 2.6)}
LEGEND_COLUMNS = 4  # entries per row of the legend above the panels
LEGEND_ROW_INCHES = 0.17  # one more legend row at the paper legend font size
DPI = 300  # PNG export resolution; a PNG is round(width * DPI) x round(height * DPI) pixels

# Applied around every matplotlib figure we make and save (never globally): TrueType fonts embedded
# in PDF (fonttype 42, editable text, accepted by publishers), SVG text kept as <text>.
PAPER_RC: dict[str, object] = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "figure.dpi": 100,
    "savefig.dpi": DPI,
}

PLOTLY_TEMPLATE = "plotly_white"
MARK_COLOR = "#FF3B30"  # chosen tokens / rows marked on heatmaps: visible on every viridis shade


def ordered(values: Iterable[object], order: Iterable[object] = ()) -> list:
    """Unique `values`, those in `order` first (in that order), the rest sorted as strings."""
    seen = list(dict.fromkeys(v for v in values if v is not None))
    known = [v for v in order if v in seen]
    return known + sorted((v for v in seen if v not in known), key=str)


def color_map(values: Iterable[object], fixed: dict[str, str] | None = None) -> dict[object, str]:
    """A colour per value: `fixed` colours first (e.g. method_colors()), the palette for the others."""
    fixed = fixed or {}
    out: dict[object, str] = {}
    free = [c for c in PALETTE + EXTRA if c not in fixed.values()]
    i = 0
    for value in values:
        if value in fixed:
            out[value] = fixed[value]
        else:
            out[value] = free[i % len(free)]
            i += 1
    return out


def group_colors(column: str, values: Iterable[object]) -> dict[object, str]:
    """Colours for the groups of `column`: methods keep their registered colours, projections one order,
    memory categories CATEGORY_COLORS."""
    values = list(values)
    if column == "method":
        return color_map(values, method_colors())
    if column == "module":
        fixed = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(MODULE_ORDER)}
        return color_map(values, fixed)
    if column == "category":
        return color_map(values, CATEGORY_COLORS)
    return color_map(values)


# The k-th run of one method (variant k) in each backend: a line style, a marker, a bar pattern.
PLOTLY_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
MPL_DASHES: tuple[Any, ...] = ("-", "--", ":", "-.", (0, (5, 1)))
PLOTLY_PATTERNS = ("", "/", "x", ".", "\\")
MPL_HATCHES = ("", "////", "xxxx", "....", "\\\\\\\\")


def run_styles(runs: pd.DataFrame, run: str = "run", method: str = "method") -> tuple[dict, dict]:
    """({run: colour}, {run: variant}) of the runs of a table with `run` and `method` columns: every run
    has its method's registered colour (the colour of that method on the trade-off plots); the k-th run
    of a method (in table order) is variant k, drawn with the k-th line style / marker / bar pattern.
    Without a `method` column each run gets a palette colour in table order (variant 0)."""
    if run not in runs or runs.empty:
        return {}, {}
    labels = list(dict.fromkeys(runs[run].dropna()))
    if method not in runs:
        return color_map(labels), dict.fromkeys(labels, 0)
    of = runs.dropna(subset=[run]).groupby(run, sort=False)[method].first()
    fixed = method_colors()
    free = color_map([m for m in dict.fromkeys(of) if m not in fixed])  # unregistered methods
    colors, variants, seen = {}, {}, {}
    for label in labels:
        m = of.get(label)
        colors[label] = fixed.get(m) or free.get(m) or PALETTE[-1]
        variants[label] = seen.get(m, 0)
        seen[m] = variants[label] + 1
    return colors, variants


def run_order(runs: pd.DataFrame, run: str = "run") -> tuple[Any, ...]:
    """The run labels of a table in the order they appear (the caller's order of the runs)."""
    return tuple(dict.fromkeys(runs[run].dropna())) if run in runs else ()


def few_recorded(values: Iterable[object], max_categories: int = 40) -> bool:
    """True when `values` (steps) are a few recorded points with gaps between them (gradients at 1, 10,
    20, 30): drawn as categories, only the recorded steps, rather than mostly empty number lines."""
    u = np.unique(np.asarray([v for v in values if v is not None], dtype=float))
    u = u[np.isfinite(u)]
    if len(u) < 2 or len(u) > max_categories:
        return False
    return (len(u) - 1) < 0.5 * (u[-1] - u[0])


def label_step(n: int, room: float, label_size: float) -> int:
    """Show every k-th of `n` tick labels so they never overlap: `room` is the axis length and
    `label_size` what one label needs along it (same unit, px or pt)."""
    if n <= 1 or room <= 0:
        return 1
    fits = max(1, int(room // max(label_size, 1e-9)))
    return max(1, math.ceil(n / fits))


def thinned(n: int, k: int) -> list[int]:
    """Indices of every k-th of `n` labels, the last label kept in place of the last k-th (the "other"
    block, the final step): gaps stay between k and 2k - 1, so kept labels never overlap."""
    picks = list(range(0, n, max(k, 1)))
    if len(picks) > 1:
        picks[-1] = n - 1
    return picks


def wrap_title(text: object, room: float, font: float) -> str:
    """`text` broken into lines that fit `room` (same unit as `font`), joined with newlines."""
    import textwrap

    chars = max(8, int(room // (0.62 * font)))
    return "\n".join(textwrap.wrap(str(text), chars, break_on_hyphens=True)) or str(text)


def text_width(text: object, font: float) -> float:
    """Rough width of `text` at font size `font` (same unit out): 0.62 em per character."""
    return 0.62 * font * len(str(text))


def legend_columns(labels: Iterable[object], width_in: float, font_pt: float = 6.0) -> int:
    """Columns of a paper legend above the panels so that it fits `width_in` (never cut off at an
    edge): as many of the widest entry (handle, gap, text) as fit, at most LEGEND_COLUMNS."""
    labels = list(labels)
    if not labels:
        return 1
    entry = max(text_width(label, font_pt) for label in labels) + 3.6 * font_pt  # handle, pads, spacing
    fits = int((0.94 * width_in * 72) // entry)
    return max(1, min(len(labels), LEGEND_COLUMNS, fits))


def short_module(name: object) -> str:
    """The module label from its projection on: "self_attn.q_proj" -> "q_proj", "q_proj.lora_A" stays
    (what trains inside a projection); other dotted names keep their last part."""
    parts = str(name).split(".")
    for i, part in enumerate(parts):
        if part in MODULE_ORDER:
            return ".".join(parts[i:])
    return parts[-1]


def projection(name: object) -> str:
    """The projection a module label belongs to: "q_proj.lora_A" -> "q_proj", "norm" -> "norm"."""
    return short_module(name).split(".", 1)[0]

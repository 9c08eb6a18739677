"""One look for every figure: colours per method and module, paper sizes, matplotlib settings.

The same colour means the same thing in the app (plotly) and in exported paper figures (matplotlib):
a method keeps its colour in every figure, a projection (q_proj, v_proj ...) keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    """Colours for the groups of `column`: methods keep their registered colours, projections one order."""
    values = list(values)
    if column == "method":
        return color_map(values, method_colors())
    if column == "module":
        fixed = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(MODULE_ORDER)}
        return color_map(values, fixed)
    return color_map(values)


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

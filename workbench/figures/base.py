"""`Figure`: the tidy data of one figure plus how to draw it, in plotly (app, HTML) and matplotlib (paper).

Every figure function (workbench.figures.tradeoff, saliency_heatmap, ...) prepares a tidy DataFrame
from store tables and returns a Figure naming one of a few chart shapes:

    lines    x, y per colour group (optional dash group), facets, OOM-style flagged points
    bars     x, y per colour group, stacked or grouped, optional error bars, facets
    heatmap  long (x, y, z) cells per facet, optional marked cells, token text or group ticks on x
    scatter  points per colour group with a frontier line (trade-off plots), run ids for selection
    box      precomputed quartiles per x and colour group (distributions of many values)

The shape's drawing code lives once per backend (draw_plotly, draw_matplotlib), so a figure looks the
same in the app and in a paper, and `data` is exactly what the figure shows (the CSV export).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.figures.style import LEGEND_COLUMNS, LEGEND_ROW_INCHES, SIZES, ordered

if TYPE_CHECKING:
    import matplotlib.figure
    import plotly.graph_objects as go

SHAPES = ("lines", "bars", "heatmap", "scatter", "box")


@dataclass
class Figure:
    """One figure: `data` (tidy, what it draws), a chart `shape` and its `params` (column names, labels).

    `fig.plotly()` for the app or HTML, `fig.matplotlib("one" | "two")` for a paper column or the
    full text width; `workbench.figures.export` writes files. `note` says what a reader should know
    (e.g. that a long series was downsampled).
    """

    kind: str
    title: str
    data: pd.DataFrame
    shape: str
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown figure shape {self.shape!r}; shapes: {', '.join(SHAPES)}")

    @property
    def empty(self) -> bool:
        return self.data.empty

    def facets(self) -> list[Any]:
        """The panel values in drawing order ([None] for a single panel)."""
        facet = self.params.get("facet")
        if not facet or facet not in self.data or self.data.empty:
            return [None]
        return ordered(self.data[facet], self.params.get("facet_order", ()))

    def grid(self, size: str = "two") -> tuple[int, int]:
        """(rows, cols) of panels; a one-column figure wraps facets after two panels."""
        n = len(self.facets())
        if self.params.get("facet_dir") == "row":
            return n, 1
        wrap = int(self.params.get("wrap", 3))
        if size == "one":
            wrap = min(wrap, 2)
        cols = max(1, min(n, wrap))
        return math.ceil(n / cols), cols

    def size_inches(self, size: str = "one") -> tuple[float, float]:
        """(width, height) of the matplotlib figure for a paper `size` ("one" or "two" columns)."""
        if size not in SIZES:
            raise ValueError(f"unknown figure size {size!r}; sizes: {', '.join(SIZES)}")
        width, row_height = SIZES[size]
        rows, _ = self.grid(size)
        scale = float(self.params.get("row_height", 1.0))
        height = row_height * scale * rows + self._legend_inches()
        return width, round(min(max(height, 1.2), 9.5), 2)

    def _legend_inches(self) -> float:
        """Room above the panels for the legend: one row per LEGEND_COLUMNS colour / dash entries."""
        if not self.params.get("legend", True):
            return 0.0
        entries = sum(
            self.data[self.params[key]].nunique()
            for key in ("color", "dash")
            if self.params.get(key) and self.params[key] in self.data
        )
        rows = max(1, math.ceil(entries / LEGEND_COLUMNS))
        return 0.35 + LEGEND_ROW_INCHES * (rows - 1)

    def plotly(self) -> go.Figure:
        """An interactive plotly figure (the app, HTML export)."""
        from workbench.figures import draw_plotly

        return draw_plotly.draw(self)

    def matplotlib(self, size: str = "one") -> matplotlib.figure.Figure:
        """A matplotlib figure in paper style (vector text, vector heatmap cells) at a paper size."""
        from workbench.figures import draw_matplotlib

        return draw_matplotlib.draw(self, size)


def empty_figure(kind: str, title: str, message: str) -> Figure:
    """A figure with no data (the store has nothing to show); `note` carries `message`."""
    return Figure(kind, title, pd.DataFrame(), "lines", {"x": "x", "y": "y"}, note=message)


def panels(fig: Figure, size: str = "two") -> list[tuple[Any, pd.DataFrame, int, int]]:
    """(facet value, its rows, row, col) of every panel, rows and cols 1-based as in plotly."""
    _, cols = fig.grid(size)
    facet = fig.params.get("facet")
    out = []
    for i, value in enumerate(fig.facets()):
        part = fig.data if value is None else fig.data[fig.data[facet] == value]
        out.append((value, part, i // cols + 1, i % cols + 1))
    return out


def panel_title(fig: Figure, value: Any) -> str:
    """The title of one panel: the facet value, with the facet's label when it is a number."""
    if value is None:
        return ""
    label = fig.params.get("facet_label")
    return f"{label} {value}" if label else str(value)

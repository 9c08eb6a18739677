"""`Figure`: the tidy data of one figure plus how to draw it, in plotly (app, HTML) and matplotlib (paper).

Every figure function (workbench.figures.tradeoff, saliency_heatmap, ...) prepares a tidy DataFrame
from store tables and returns a Figure holding the typed spec of one chart shape (specs.py). The
shape's drawing code lives once per backend (draw_plotly, draw_matplotlib), chosen by the spec's type,
so a figure looks the same in the app and in a paper, and `data` is exactly what the figure shows (the
CSV export); panels.py lays out panels and colour groups the same way for both backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.figures.panels import legend_labels
from workbench.figures.specs import ChartSpec, LinesSpec
from workbench.figures.style import LEGEND_ROW_INCHES, SIZES, legend_columns, ordered

if TYPE_CHECKING:
    import matplotlib.figure
    import plotly.graph_objects as go


@dataclass
class Figure:
    """One figure: `data` (tidy, what it draws) and its chart `spec` (shape, column names, labels).

    `fig.plotly()` for the app or HTML, `fig.matplotlib("one" | "two")` for a paper column or the
    full text width; `workbench.figures.export` writes files. `note` says what a reader should know
    (e.g. that a long series was downsampled).
    """

    kind: str
    title: str
    data: pd.DataFrame
    spec: ChartSpec
    note: str = ""

    @property
    def empty(self) -> bool:
        return self.data.empty

    def facets(self) -> list[Any]:
        """The panel values in drawing order ([None] for a single panel)."""
        facet = self.spec.facet
        if not facet or facet not in self.data or self.data.empty:
            return [None]
        return ordered(self.data[facet], self.spec.facet_order)

    def grid(self, size: str = "two") -> tuple[int, int]:
        """(rows, cols) of panels; a one-column figure wraps facets after two panels."""
        n = len(self.facets())
        wrap = min(self.spec.wrap, 2) if size == "one" else self.spec.wrap
        cols = max(1, min(n, wrap))
        return math.ceil(n / cols), cols

    def size_inches(self, size: str = "one") -> tuple[float, float]:
        """(width, height) of the matplotlib figure for a paper `size` ("one" or "two" columns)."""
        if size not in SIZES:
            raise ValueError(f"unknown figure size {size!r}; sizes: {', '.join(SIZES)}")
        width, row_height = SIZES[size]
        rows, _ = self.grid(size)
        height = row_height * self.spec.row_height * rows + self.legend_inches(size)
        return width, round(min(max(height, 1.2), 9.5), 2)

    def legend_inches(self, size: str = "one") -> float:
        """Room above the panels for the paper legend: its rows at the columns that fit the width."""
        labels = legend_labels(self)
        if not labels:
            return 0.0
        columns = legend_columns(labels, SIZES[size][0])
        return 0.35 + LEGEND_ROW_INCHES * (math.ceil(len(labels) / columns) - 1)

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
    return Figure(kind, title, pd.DataFrame(), LinesSpec(x="x", y="y"), note=message)

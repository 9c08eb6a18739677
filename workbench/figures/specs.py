"""One frozen, typed spec per chart shape: which columns of a figure's tidy data go where, and how.

    LinesSpec    x, y per colour group (optional dash group), facets, OOM-style flagged points, error bars
    BarsSpec     x, y per colour group, stacked or grouped, optional error bars, facets
    HeatmapSpec  long (x, y, z) cells per facet, optional marked cells, token text or group ticks on x
    ScatterSpec  points per colour group with a frontier line (trade-off plots), run ids for selection,
                 error bars (e.g. an accuracy's interval over seeds)
    BoxSpec      precomputed quartiles per x and colour group (distributions of many values)

    spec = LinesSpec(x="step", y="value", color="run", ylabel="loss")

Shared fields live in PanelSpec (every shape) and GroupSpec (shapes with colour groups: `colors` pins a
group's colour, e.g. each run to its method's; `variants` gives runs of one method a line style, marker
or bar pattern of their own). A misspelled or foreign option is a TypeError when the spec is built,
never a silently ignored key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, kw_only=True)
class PanelSpec:
    """What every chart shape has: the x and y columns, axis titles, panels (facets) and legend."""

    x: str  # column on the x axis
    y: str  # column on the y axis (a box's median)
    xlabel: str | None = None  # x axis title; None: the x column's name
    ylabel: str | None = None  # y axis title; None: the y column's name
    facet: str | None = None  # one panel per value of this column
    facet_order: tuple[Any, ...] = ()  # these panel values first, in this order (the rest sorted)
    facet_xlabel: Mapping[Any, str] = field(default_factory=dict)  # x title of particular panels
    wrap: int = 3  # panels per row before wrapping (1: one panel under the other)
    legend: bool = True  # a legend beside the panels (plotly: right of them; paper: above)
    x_categorical: bool = False  # x as categories: only the values present, in order (few recorded steps)
    row_height: float = 1.0  # paper height of a row of panels, relative to the size's default

    def __post_init__(self) -> None:
        if self.wrap < 1 or self.row_height <= 0:
            raise ValueError(f"wrap must be >= 1 and row_height > 0, got {self.wrap} and {self.row_height}")

    @property
    def x_title(self) -> str:
        return self.x if self.xlabel is None else self.xlabel

    @property
    def y_title(self) -> str:
        return self.y if self.ylabel is None else self.ylabel


@dataclass(frozen=True, kw_only=True)
class GroupSpec(PanelSpec):
    """Marks (lines, bars, points, boxes) in colour groups on shared or log axes."""

    color: str | None = None  # one colour and legend entry per value of this column
    color_order: tuple[Any, ...] = ()  # these group values first, in this order (methods keep colours)
    colors: Mapping[Any, str] = field(default_factory=dict)  # fixed colour per group (a run: its method's)
    variants: Mapping[Any, int] = field(default_factory=dict)  # k-th style per group (runs of one method)
    hover: tuple[str, ...] = ()  # columns listed in the plotly hover text
    share_y: bool = True  # panels share the y axis
    log_x: bool = False  # logarithmic x axis
    log_y: bool = False  # logarithmic y axis
    err_low: str | None = None  # column of the y error bar's lower end (with err_high): lines, bars, points
    err_high: str | None = None  # column of the y error bar's upper end (with err_low)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.err_low is None) != (self.err_high is None):
            raise ValueError("error bars need both err_low and err_high")

    def error_bars(self, data: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
        """(minus, plus) lengths of the y error bars of `data`'s rows (0 where an end is missing), or
        None without error bars."""
        if self.err_low is None or self.err_high is None:
            return None
        minus = (data[self.y] - data[self.err_low]).fillna(0.0)
        plus = (data[self.err_high] - data[self.y]).fillna(0.0)
        return minus, plus


@dataclass(frozen=True, kw_only=True)
class LinesSpec(GroupSpec):
    """x, y lines per colour group; `dash` styles a second grouping (runs), `flag` marks failed points."""

    dash: str | None = None  # one line style per value of this column (legend keys colours, styles apart)
    flag: str | None = None  # bool column: points left off the line, marked "OOM" above it
    markers: bool = False  # a marker on every point


@dataclass(frozen=True, kw_only=True)
class BarsSpec(GroupSpec):
    """Bars per x and colour group, stacked or side by side, with optional error bars."""

    stacked: bool = True  # colour groups stacked (else side by side)
    x_order: tuple[Any, ...] = ()  # these x categories first, in this order (with x_categorical)


@dataclass(frozen=True, kw_only=True)
class ScatterSpec(GroupSpec):
    """Points per colour group; the frontier's points ringed and joined by a staircase."""

    front: str | None = None  # bool column: the points on the (Pareto) frontier
    id: str | None = None  # column given to plotly as customdata: a selected point names its run
    label: str | None = None  # column of text written above each point; None: no text
    symbol: str | None = None  # one marker shape per value of this column (legend keys colours, shapes apart)


@dataclass(frozen=True, kw_only=True)
class BoxSpec(GroupSpec):
    """Precomputed boxes per x and colour group: whiskers low-high, box q1-q3, `y` the median."""

    low: str  # column of the lower whisker end
    q1: str  # column of the first quartile
    q3: str  # column of the third quartile
    high: str  # column of the upper whisker end


@dataclass(frozen=True, kw_only=True)
class HeatmapSpec(PanelSpec):
    """Long (x, y, z) rows drawn as cells; one colour range shared by every panel."""

    z: str  # column of the cell values
    zlabel: str | None = None  # colour bar title; None: the z column's name
    colorscale: str = "Viridis"  # plotly colour scale (matplotlib: the colormap of that name)
    discrete: tuple[str, str] | None = None  # two colours (0, 1) instead of a scale; no colour bar
    zmin: float | None = None  # lower end of a fixed colour range; None (both): the data's range
    zmax: float | None = None  # upper end of a fixed colour range
    log_z: bool = False  # colour by log10 of z (cells <= 0 left empty)
    mark: str | None = None  # bool column: cells ringed (chosen tokens)
    mark_label: str = "selected"  # legend entry of the rings
    x_text: str | None = None  # column of text per x (tokens): hover text and x tick labels
    x_group: str | None = None  # column grouping x (layers): one x tick per group at its centre
    hover: tuple[str, ...] = ()  # columns listed in each cell's plotly hover text
    hover_labels: Mapping[str, str] = field(default_factory=dict)  # their names there (default: column)
    cell_px: int = 16  # plotly height of one y row (the panel grows with rows; labels thinned to fit)
    tickangle: int = 0  # plotly x tick label angle
    y_reversed: bool = True  # the first y value at the top

    @property
    def z_title(self) -> str:
        return self.z if self.zlabel is None else self.zlabel


ChartSpec = LinesSpec | BarsSpec | ScatterSpec | BoxSpec | HeatmapSpec  # what a Figure holds

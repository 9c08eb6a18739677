"""Panel layout and colour groups of a Figure, shared by both drawing backends (draw_plotly,
draw_matplotlib), so a figure's panels, legend order and colours are the same in the app and in a paper."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.figures.specs import GroupSpec, HeatmapSpec, LinesSpec, ScatterSpec
from workbench.figures.style import SYMBOLS, color_map, group_colors, ordered

if TYPE_CHECKING:  # the Figure draws itself through the backends, which use these helpers
    from workbench.figures.base import Figure


def panels(fig: Figure, size: str = "two") -> list[tuple[Any, pd.DataFrame, int, int]]:
    """(facet value, its rows, row, col) of every panel, rows and cols 1-based as in plotly."""
    _, cols = fig.grid(size)
    out = []
    for i, value in enumerate(fig.facets()):
        part = fig.data if value is None else fig.data[fig.data[fig.spec.facet] == value]
        out.append((value, part, i // cols + 1, i % cols + 1))
    return out


def panel_xlabel(fig: Figure, value: Any) -> str:
    """The x title of the panel of facet `value` (None: a panel without a facet value)."""
    return fig.spec.facet_xlabel.get(value, fig.spec.x_title)


def groups(
    spec: GroupSpec, data: pd.DataFrame, part: pd.DataFrame, column: str | None
) -> list[tuple[Any, pd.DataFrame]]:
    """(value, rows) of `part` per value of `column`, in legend order ([(None, part)] without a column)."""
    if not column:
        return [(None, part)]
    order = ordered(data[column], spec.color_order)
    return [(g, part[part[column] == g]) for g in order if (part[column] == g).any()]


def symbols(column: str | None, data: pd.DataFrame) -> dict[Any, tuple[str, str]]:
    """(plotly symbol, matplotlib marker) of every value of a scatter's shape column, in legend order
    ({None: the first shape} without one)."""
    values = ordered(data[column]) if column else [None]
    return {value: SYMBOLS[i % len(SYMBOLS)] for i, value in enumerate(values)}


def colors(spec: GroupSpec, data: pd.DataFrame) -> dict[Any, str]:
    """The colour of every value of the spec's colour column ({} without one): `spec.colors` where it
    names one (a run's method colour), else the column's fixed colours or the palette."""
    if not spec.color:
        return {}
    values = ordered(data[spec.color], spec.color_order)
    if spec.colors:
        return color_map(values, {k: v for k, v in spec.colors.items() if k in values})
    return group_colors(spec.color, values)


def variant(spec: GroupSpec, value: Any) -> int:
    """The style index of a colour group (0 unless `spec.variants` gives it another: runs of one method)."""
    return int(spec.variants.get(value, 0)) if value is not None else 0


def x_categories(fig: Figure) -> list[Any]:
    """The x values of a figure drawn as categories, in order (numbers ascending, or x_order first)."""
    values = ordered(fig.data[fig.spec.x], getattr(fig.spec, "x_order", ()))
    if all(isinstance(v, numbers.Real) for v in values):
        values = sorted(values)
    return values


def legend_labels(fig: Figure) -> list[str]:
    """The legend entries of a figure (both backends key colours and line styles / shapes apart)."""
    spec, data = fig.spec, fig.data
    if not spec.legend or data.empty:
        return []
    if isinstance(spec, HeatmapSpec):
        marked = spec.mark and spec.mark in data and data[spec.mark].fillna(False).astype(bool).any()
        return [spec.mark_label] if marked else []
    out = [str(v) for v in ordered(data[spec.color], spec.color_order)] if spec.color in data else []
    second = (
        spec.dash if isinstance(spec, LinesSpec) else spec.symbol if isinstance(spec, ScatterSpec) else None
    )
    if second and second in data:
        out += [str(v) for v in ordered(data[second])]
    if isinstance(spec, ScatterSpec) and spec.front and spec.front in data and data[spec.front].any():
        out.append("Pareto frontier")
    return out

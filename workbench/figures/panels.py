"""Panel layout and colour groups of a Figure, shared by both drawing backends (draw_plotly,
draw_matplotlib), so a figure's panels, legend order and colours are the same in the app and in a paper."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.figures.specs import GroupSpec
from workbench.figures.style import SYMBOLS, group_colors, ordered

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
    """The colour of every value of the spec's colour column ({} without one)."""
    if not spec.color:
        return {}
    return group_colors(spec.color, ordered(data[spec.color], spec.color_order))

"""Draw a `Figure` with plotly: the app's interactive charts and the HTML export.

One function per chart shape (see base.py), chosen by the type of `fig.spec`. The layout is sized for
a chart about FIG_WIDTH_PX wide (the app at 1600 px with its sidebar) with 1 to many runs: the legend
sits right of the panels in a margin made for it (never over a plot or a title), panels grow with their
rows (heatmap rows, legend entries), rows of panels are ROW_GAP_PX apart whatever their number, and
tick labels are thinned to every k-th so they never overlap. Heatmaps carry their colour scale as an
explicit list with zmin / zmax on every trace, so no theme can change which colour a value gets.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.figures.heatgrid import HeatGrid, category_label, fmt, heat_grid, z_range
from workbench.figures.panels import (
    colors,
    groups,
    legend_labels,
    panel_xlabel,
    panels,
    symbols,
    variant,
    x_categories,
)
from workbench.figures.specs import BarsSpec, BoxSpec, GroupSpec, HeatmapSpec, LinesSpec, ScatterSpec
from workbench.figures.style import (
    MARK_COLOR,
    PALETTE,
    PLOTLY_DASHES,
    PLOTLY_PATTERNS,
    PLOTLY_TEMPLATE,
    SYMBOLS,
    label_step,
    ordered,
    text_width,
    thinned,
    wrap_title,
)

if TYPE_CHECKING:  # Figure.plotly() / .matplotlib() call into this module
    from workbench.figures.base import Figure

OOM_COLOR = "#D55E00"
FIG_WIDTH_PX = 1100  # the width tick labels are thinned for (the app's chart area at 1600 px)
FONT_PX = 12  # plotly's default tick and legend font
PANEL_PX = 300  # height of one row of panels (a heatmap's grows with its rows)
MIN_PANEL_PX = 220
MAX_PANEL_PX = 1100
ROW_GAP_PX = 100  # between rows of panels: x tick labels and title above, the panel title below
LEGEND_ENTRY_PX = 22
COLORBAR_PX = 110  # the colour bar with its tick labels and (rotated) title
MAX_LEGEND_PX = 420
MARGIN = dict(l=70, b=60, t=60)
NOTE_CHARS = 150  # a note line's length in the subtitle


def colorscale(s: HeatmapSpec) -> list[list[Any]]:
    """The heatmap's colour scale as explicit [position, "rgb(r, g, b)"] pairs: a name such as "Magma"
    could be remapped by a theme, and Streamlit's frontend replaces the hex colours "#000001" ...
    (placeholders of its own plotly theme) even with `theme=None`, which turned Magma's low end,
    "#000004", lilac in the app; rgb() strings are never replaced."""
    if s.discrete:
        pairs = [(0.0, s.discrete[0]), (1.0, s.discrete[1])]
    else:
        try:
            pairs = plotly.colors.get_colorscale(s.colorscale)
        except Exception:  # an unknown name: plotly's default sequential scale
            pairs = plotly.colors.get_colorscale("Viridis")
    return [[float(p), _rgb(c)] for p, c in pairs]


def _rgb(color: str) -> str:
    """A hex colour as "rgb(r, g, b)"; other spellings unchanged."""
    if isinstance(color, str) and color.startswith("#") and len(color) == 7:
        r, g, b = plotly.colors.hex_to_rgb(color)
        return f"rgb({r}, {g}, {b})"
    return color


def _n_rows(fig: Figure) -> int:
    """The most y rows of a heatmap panel (its height follows)."""
    s = fig.spec
    if not isinstance(s, HeatmapSpec):
        return 0
    most = 1
    for _, part, _, _ in panels(fig):
        y = part[s.y]
        if y.empty:
            continue
        if pd.api.types.is_integer_dtype(y):
            most = max(most, int(y.max() - y.min()) + 1)
        else:
            most = max(most, y.nunique())
    return most


def _panel_px(fig: Figure) -> int:
    rows, _ = fig.grid("two")
    if isinstance(fig.spec, HeatmapSpec):
        return int(min(max(_n_rows(fig) * fig.spec.cell_px + 30, MIN_PANEL_PX), MAX_PANEL_PX))
    return PANEL_PX if rows == 1 else 260


def _note(fig: Figure) -> str:
    return "<br>".join(textwrap.wrap(fig.note, NOTE_CHARS)) if fig.note else ""


def layout_size(fig: Figure) -> dict[str, Any]:
    """Height, margins, spacing and panel sizes (px) of `fig`'s plotly chart: the legend's column right
    of the panels, panels that grow with rows, ROW_GAP_PX between rows of panels."""
    spec = fig.spec
    rows, cols = fig.grid("two")
    titles = any(v is not None for v in fig.facets())
    entries = legend_labels(fig)
    legend_px = 0
    if entries:
        title = getattr(spec, "color", None) or ""
        widest = max(text_width(e, FONT_PX) for e in [*entries, title])
        legend_px = int(min(widest + 60, MAX_LEGEND_PX))
    bar_px = COLORBAR_PX if isinstance(spec, HeatmapSpec) and not spec.discrete else 0
    note_lines = _note(fig).count("<br>") + 1 if fig.note else 0
    margin = dict(MARGIN, r=30 + max(legend_px, bar_px), t=MARGIN["t"] + 30 * titles + 18 * note_lines)
    panel = _panel_px(fig)
    plot = rows * panel + (rows - 1) * ROW_GAP_PX
    legend_height = (len(entries) + 1) * LEGEND_ENTRY_PX if entries else 0  # entries and the title
    plot = max(plot, legend_height + (150 if bar_px and entries else 0))  # a colour bar under the legend
    share_y = isinstance(spec, GroupSpec) and spec.share_y
    hspace = min(0.08, 0.4 / cols) if share_y else min(0.12, 0.6 / cols)
    width = FIG_WIDTH_PX - margin["l"] - margin["r"]
    return {
        "height": int(plot + margin["t"] + margin["b"]),
        "margin": margin,
        "vertical_spacing": ROW_GAP_PX / plot if rows > 1 else 0.0,
        "horizontal_spacing": hspace if cols > 1 else 0.0,
        "panel_width": width * (1 - (cols - 1) * hspace) / cols,
        "panel_height": (plot - (rows - 1) * ROW_GAP_PX) / rows,
        "plot_height": plot,
        "legend_height": legend_height,
    }


def draw(fig: Figure) -> go.Figure:
    """The plotly figure of `fig` (an annotated empty chart when there is no data)."""
    if fig.empty:
        out = go.Figure()
        out.add_annotation(
            text=fig.note or "no data", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
        out.update_layout(title=fig.title, template=PLOTLY_TEMPLATE, xaxis_visible=False, yaxis_visible=False)
        return out
    spec = fig.spec
    rows, cols = fig.grid("two")
    facets = fig.facets()
    titles = ["" if v is None else str(v) for v in facets]
    share_y = isinstance(spec, GroupSpec) and spec.share_y
    size = layout_size(fig)
    out = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles if any(titles) else None,
        shared_yaxes="all" if share_y and rows * cols > 1 else False,
        horizontal_spacing=size["horizontal_spacing"],
        vertical_spacing=size["vertical_spacing"],
    )
    for note in out.layout.annotations:  # panel titles: wrapped to their panel, smaller than the title
        note.update(text=wrap_title(note.text, size["panel_width"], 13).replace("\n", "<br>"), font_size=13)
    DRAWERS[type(spec)](fig, spec, out, size)
    shown = any(t.showlegend for t in out.data)
    title: dict[str, Any] = {"text": fig.title}
    if fig.note:
        title["subtitle"] = {"text": _note(fig)}
    out.update_layout(
        title=title,
        template=PLOTLY_TEMPLATE,
        height=size["height"],
        margin=size["margin"],
        showlegend=bool(spec.legend and shown),
    )
    if spec.legend and shown:
        out.update_layout(
            legend=dict(
                orientation="v",
                x=1.02,
                xanchor="left",
                y=1.0,
                yanchor="top",
                title_text=getattr(spec, "color", None) or "",
                tracegroupgap=0,
            )
        )
    for i in range(rows * cols):
        value = facets[i] if i < len(facets) else None
        out.update_xaxes(title_text=panel_xlabel(fig, value), row=i // cols + 1, col=i % cols + 1)
    out.update_yaxes(title_text=spec.y_title, col=1)
    out.update_xaxes(automargin=True)
    out.update_yaxes(automargin=True)
    _axes(fig, out, size)
    return out


def _axes(fig: Figure, out: go.Figure, size: dict[str, Any]) -> None:
    """Log axes; categories (x_categorical: only the values present); whole-number x (layers, steps)
    with a tick every k-th value so labels never overlap."""
    spec, x = fig.spec, fig.data[fig.spec.x]
    log_x = isinstance(spec, GroupSpec) and spec.log_x
    own_ticks = isinstance(spec, HeatmapSpec) and (spec.x_text or spec.x_group)  # token text, layers
    if isinstance(spec, GroupSpec) and spec.log_y:
        out.update_yaxes(type="log", tickformat=".2~g")
    if log_x:
        out.update_xaxes(type="log")
    if spec.x_categorical and not isinstance(spec, HeatmapSpec):
        order = [category_label(v) for v in x_categories(fig)]
        k = label_step(len(order), size["panel_width"], max(text_width(v, FONT_PX) for v in order) + 12)
        ticks = [order[i] for i in thinned(len(order), k)]
        out.update_xaxes(
            type="category",
            categoryorder="array",
            categoryarray=order,
            tickmode="array",
            tickvals=ticks,
            ticktext=ticks,
        )
        return
    numeric = not (log_x or own_ticks or spec.x_categorical or isinstance(spec, ScatterSpec))
    if numeric and pd.api.types.is_integer_dtype(x) and x.nunique() <= 40:
        widest = max(text_width(v, FONT_PX) for v in (x.min(), x.max())) + 12
        out.update_xaxes(dtick=label_step(int(x.max() - x.min()) + 1, size["panel_width"], widest))


def _hover(part: pd.DataFrame, columns: tuple[str, ...]) -> list[str] | None:
    """Per-row hover text "col: value" for `columns` present in `part`."""
    present = [c for c in columns if c in part]
    if not present:
        return None
    return [
        "<br>".join(f"{c}: {fmt(v)}" for c, v in zip(present, row, strict=True))
        for row in part[present].itertuples(index=False)
    ]


def _error_y(s: GroupSpec, data: pd.DataFrame) -> dict[str, Any] | None:
    """plotly's error_y of `data`'s rows (None without error bars)."""
    bars = s.error_bars(data)
    if bars is None:
        return None
    minus, plus = bars
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, thickness=1, width=3)


def _xs(s: GroupSpec, values: pd.Series) -> Any:
    """x values as drawn: category labels on a categorical axis, else the values."""
    return [category_label(v) for v in values] if s.x_categorical else values


def _lines(fig: Figure, s: LinesSpec, out: go.Figure, size: dict[str, Any]) -> None:
    palette = colors(s, fig.data)
    dash_values = ordered(fig.data[s.dash]) if s.dash else [None]
    # a second grouping (dash) or panels are keyed apart in the legend: n + m entries, never n x m;
    # each line's own name (its hover) says all: colour group, line style, panel
    faceted = s.facet is not None and s.color is not None and len(fig.facets()) > 1
    keyed_apart = bool(s.dash) or faceted
    many = fig.data[s.x].nunique() > 30
    shown: set[str] = set()
    for panel, part, r, c in panels(fig):
        top = part[s.y].max() if part[s.y].notna().any() else 1.0
        for color_value, group in groups(s, fig.data, part, s.color):
            k = variant(s, color_value)
            for dash_value, sub in groups(s, fig.data, group, s.dash):
                parts = (color_value, dash_value, panel if faceted else None)
                name = " / ".join(str(v) for v in parts if v is not None) or s.y
                key = str(color_value) if color_value is not None else name
                dash = dash_values.index(dash_value) if s.dash else k
                marked = s.markers or (s.dash is not None and k > 0)  # runs of one method apart by marker
                ok = sub[~sub[s.flag]] if s.flag else sub
                out.add_trace(
                    go.Scatter(
                        x=_xs(s, ok[s.x]),
                        y=ok[s.y],
                        mode="lines+markers" if marked else "lines",
                        name=key if not keyed_apart else name,
                        legendgroup=key,
                        showlegend=not keyed_apart and key not in shown,
                        line=dict(
                            color=palette.get(color_value), dash=PLOTLY_DASHES[dash % len(PLOTLY_DASHES)]
                        ),
                        marker=dict(
                            symbol=SYMBOLS[k % len(SYMBOLS)][0], size=7, maxdisplayed=12 if many else 0
                        ),
                        error_y=_error_y(s, ok),
                        hovertext=_hover(ok, s.hover),
                    ),
                    row=r,
                    col=c,
                )
                shown.add(key)
                bad = sub[sub[s.flag]] if s.flag else sub.iloc[:0]
                if len(bad):
                    out.add_trace(
                        go.Scatter(
                            x=_xs(s, bad[s.x]),
                            y=[top * 1.08] * len(bad),
                            mode="markers+text",
                            text=["OOM"] * len(bad),
                            textposition="top center",
                            textfont=dict(size=10),
                            name=f"{name} out of memory",
                            legendgroup=key,
                            showlegend=False,
                            marker=dict(symbol="x", size=11, color=palette.get(color_value, OOM_COLOR)),
                            hovertext=[f"{name}: out of memory at {x}" for x in bad[s.x]],
                        ),
                        row=r,
                        col=c,
                    )
    if keyed_apart:  # legend-only entries: one per colour group (toggles its lines), one per line style
        for color_value in ordered(fig.data[s.color], s.color_order) if s.color else []:
            k = variant(s, color_value)
            out.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="lines+markers" if k > 0 or s.markers else "lines",
                    name=str(color_value),
                    legendgroup=str(color_value),
                    line=dict(color=palette.get(color_value)),
                    marker=dict(symbol=SYMBOLS[k % len(SYMBOLS)][0], size=7),
                    showlegend=True,
                    hoverinfo="skip",
                )
            )
        for i, dash_value in enumerate(dash_values if s.dash else []):
            out.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="lines",
                    name=str(dash_value),
                    legendgroup=f"dash: {dash_value}",
                    line=dict(color="#555555", dash=PLOTLY_DASHES[i % len(PLOTLY_DASHES)]),
                    showlegend=True,
                    hoverinfo="skip",
                )
            )


def _bars(fig: Figure, s: BarsSpec, out: go.Figure, size: dict[str, Any]) -> None:
    palette, shown = colors(s, fig.data), set()
    out.update_layout(barmode="stack" if s.stacked else "group")
    for _, part, r, c in panels(fig):
        for color_value, group in groups(s, fig.data, part, s.color):
            name = str(color_value) if color_value is not None else s.y
            error = _error_y(s, group)
            k = variant(s, color_value)
            out.add_trace(
                go.Bar(
                    x=_xs(s, group[s.x]),
                    y=group[s.y],
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown and color_value is not None,
                    marker=dict(
                        color=palette.get(color_value, PALETTE[0]),
                        pattern_shape=PLOTLY_PATTERNS[k % len(PLOTLY_PATTERNS)],
                    ),
                    error_y=error,
                    hovertext=_hover(group, s.hover),
                ),
                row=r,
                col=c,
            )
            shown.add(name)


def _heat_x(g: HeatGrid) -> list[Any]:
    """The x of a heatmap trace: category labels on a categorical axis (recorded steps), else the values."""
    return [category_label(v) for v in g.x_values] if g.x_values is not None else list(g.xs)


def _heatmap(fig: Figure, s: HeatmapSpec, out: go.Figure, size: dict[str, Any]) -> None:
    zmin, zmax = z_range(fig.data, s)
    scale = colorscale(s)
    first = True
    x_values = x_categories(fig) if s.x_categorical else None
    plot, legend = size["plot_height"], size["legend_height"]
    bar = dict(
        title=dict(text=s.z_title, side="right"),
        x=1.02,
        xanchor="left",
        y=0.0,
        yanchor="bottom",
        len=max(0.3, 1 - (legend + 30) / plot) if legend else 1.0,
        thickness=14,
    )
    for _, part, r, c in panels(fig):
        g = heat_grid(part, s, x_values)
        if g is None:
            continue
        xs = _heat_x(g)
        where = "%{text}" if s.hover else f"{s.x_title}: %{{x}}<br>%{{text}}"
        hover = f"{where}<br>{s.y_title}: %{{y}}<br>{s.z_title}: %{{z:.4g}}<extra></extra>"
        out.add_trace(
            go.Heatmap(
                z=g.z,
                x=xs,
                y=g.ys,
                zmin=zmin,
                zmax=zmax,
                zauto=False,
                colorscale=scale,
                autocolorscale=False,
                showscale=first and not s.discrete,
                colorbar=bar,
                text=g.text,
                hovertemplate=hover,
            ),
            row=r,
            col=c,
        )
        first = False
        if g.marks is not None and len(g.marks[0]):
            # small rings, at most half a cell: the cell's own colour stays visible around them
            cell = min(size["panel_width"] / max(len(g.xs), 1), size["panel_height"] / max(len(g.ys), 1))
            mx = [xs[int(i)] for i in g.marks[0]] if g.x_values is not None else g.marks[0]
            out.add_trace(
                go.Scatter(
                    x=mx,
                    y=g.marks[1],
                    mode="markers",
                    marker=dict(
                        symbol="circle-open",
                        size=float(np.clip(0.45 * cell, 3, 9)),
                        color=MARK_COLOR,
                        line=dict(width=1),
                    ),
                    name=s.mark_label,
                    legendgroup="marks",
                    showlegend=(r, c) == (1, 1),
                    hoverinfo="skip",
                ),
                row=r,
                col=c,
            )
        k = label_step(len(g.ys), size["panel_height"], FONT_PX + 4)
        out.update_yaxes(tickmode="array", tickvals=list(g.ys[::k]), row=r, col=c)
        if g.tick_pos is not None:
            rotated = abs(s.tickangle) >= 45
            need = FONT_PX + 3 if rotated else max(text_width(t, FONT_PX) for t in g.tick_text) + 12
            k = label_step(len(g.tick_pos), size["panel_width"], need)
            pos = [xs[int(p)] for p in g.tick_pos] if g.x_values is not None else g.tick_pos
            keep = thinned(len(pos), k) if g.x_values is not None else range(0, len(pos), k)
            out.update_xaxes(
                tickmode="array",
                tickvals=[pos[i] for i in keep],
                ticktext=[g.tick_text[i] for i in keep],
                tickangle=s.tickangle,
                row=r,
                col=c,
            )
        if g.x_values is not None:
            out.update_xaxes(type="category", categoryorder="array", categoryarray=xs, row=r, col=c)
        out.update_yaxes(autorange="reversed" if s.y_reversed else True, row=r, col=c)


def _scatter(fig: Figure, s: ScatterSpec, out: go.Figure, size: dict[str, Any]) -> None:
    palette = colors(s, fig.data)
    shapes = symbols(s.symbol, fig.data)
    shown: set[str] = set()
    for _, part, r, c in panels(fig):
        for color_value, group in groups(s, fig.data, part, s.color):
            for symbol_value, sub in groups(s, fig.data, group, s.symbol):
                name = " / ".join(str(v) for v in (color_value, symbol_value) if v is not None)
                out.add_trace(
                    go.Scatter(
                        x=sub[s.x],
                        y=sub[s.y],
                        mode="markers+text" if s.label else "markers",
                        text=sub[s.label] if s.label else None,
                        textposition="top center",
                        name=name,
                        legendgroup=name,
                        showlegend=name not in shown,
                        marker=dict(
                            size=11,
                            symbol=shapes[symbol_value][0],
                            color=palette.get(color_value),
                            line=dict(width=1, color="white"),
                        ),
                        error_y=_error_y(s, sub),
                        customdata=sub[s.id] if s.id else None,
                        hovertext=_hover(sub, s.hover),
                        hoverinfo="text",
                    ),
                    row=r,
                    col=c,
                )
                shown.add(name)
        front = part[part[s.front]].sort_values(s.x) if s.front else part.iloc[:0]
        if len(front):  # rings around the frontier's runs, joined by a staircase
            out.add_trace(
                go.Scatter(
                    x=front[s.x],
                    y=front[s.y],
                    mode="lines+markers",
                    line=dict(color="#777777", dash="dash", shape="hv", width=1.5),
                    marker=dict(symbol="circle-open", size=18, color="#777777"),
                    name="Pareto frontier",
                    legendgroup="Pareto frontier",
                    showlegend="Pareto frontier" not in shown,
                    hoverinfo="skip",
                ),
                row=r,
                col=c,
            )
            shown.add("Pareto frontier")


def _box(fig: Figure, s: BoxSpec, out: go.Figure, size: dict[str, Any]) -> None:
    palette, shown = colors(s, fig.data), set()
    out.update_layout(boxmode="group")
    for _, part, r, c in panels(fig):
        for color_value, group in groups(s, fig.data, part, s.color):
            name = str(color_value)
            out.add_trace(
                go.Box(
                    x=_xs(s, group[s.x]),
                    q1=group[s.q1],
                    median=group[s.y],
                    q3=group[s.q3],
                    lowerfence=group[s.low],
                    upperfence=group[s.high],
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown,
                    marker_color=palette.get(color_value),
                    hovertext=_hover(group, s.hover),
                ),
                row=r,
                col=c,
            )
            shown.add(name)


def legend_entries(out: go.Figure) -> list[str]:
    """The names the legend of a drawn plotly figure lists."""
    return [t.name for t in out.data if t.showlegend]


DRAWERS = {LinesSpec: _lines, BarsSpec: _bars, HeatmapSpec: _heatmap, ScatterSpec: _scatter, BoxSpec: _box}

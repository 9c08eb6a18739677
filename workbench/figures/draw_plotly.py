"""Draw a `Figure` with plotly: the app's interactive charts and the HTML export.

One function per chart shape (see base.py), chosen by the type of `fig.spec`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.figures.heatgrid import heat_grid, z_range
from workbench.figures.panels import colors, groups, panel_xlabel, panels, symbols
from workbench.figures.specs import BarsSpec, BoxSpec, GroupSpec, HeatmapSpec, LinesSpec, ScatterSpec
from workbench.figures.style import MARK_COLOR, PALETTE, PLOTLY_TEMPLATE, ordered

if TYPE_CHECKING:  # Figure.plotly() / .matplotlib() call into this module
    from workbench.figures.base import Figure

OOM_COLOR = "#D55E00"


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
    out = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles if any(titles) else None,
        shared_yaxes="all" if share_y and rows * cols > 1 else False,
        horizontal_spacing=min(0.08, 0.4 / max(cols, 1)) if share_y else min(0.12, 0.6 / max(cols, 1)),
        vertical_spacing=min(0.12, 0.5 / max(rows, 1)),
    )
    DRAWERS[type(spec)](fig, spec, out)
    out.update_layout(
        title=fig.title,
        template=PLOTLY_TEMPLATE,
        height=360 if rows == 1 else min(260 * rows, 1400),
        margin=dict(l=60, r=20, t=70, b=60),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0) if spec.legend else None,
        showlegend=spec.legend,
    )
    for i in range(rows * cols):
        value = facets[i] if i < len(facets) else None
        out.update_xaxes(title_text=panel_xlabel(fig, value), row=i // cols + 1, col=i % cols + 1)
    out.update_yaxes(title_text=spec.y_title, col=1)
    _axes(fig, out)
    return out


def _axes(fig: Figure, out: go.Figure) -> None:
    """Log axes, category order; whole-number x (layers, a few steps) gets one tick per value."""
    spec, x = fig.spec, fig.data[fig.spec.x]
    log_x = isinstance(spec, GroupSpec) and spec.log_x
    categories = isinstance(spec, BarsSpec) and spec.x_categorical
    own_ticks = isinstance(spec, HeatmapSpec) and (spec.x_text or spec.x_group)  # token text, layers
    numeric = isinstance(spec, (LinesSpec, BarsSpec, HeatmapSpec)) and not (log_x or categories or own_ticks)
    if numeric and pd.api.types.is_integer_dtype(x) and x.nunique() <= 40:
        out.update_xaxes(dtick=1)
    if isinstance(spec, GroupSpec) and spec.log_y:
        out.update_yaxes(type="log", tickformat=".2~g")
    if log_x:
        out.update_xaxes(type="log")
    if isinstance(spec, BarsSpec) and spec.x_categorical:
        order = [str(v) for v in ordered(x, spec.x_order)]
        out.update_xaxes(type="category", categoryorder="array", categoryarray=order)


def _hover(part: pd.DataFrame, columns: tuple[str, ...]) -> list[str] | None:
    """Per-row hover text "col: value" for `columns` present in `part`."""
    present = [c for c in columns if c in part]
    if not present:
        return None
    return [
        "<br>".join(f"{c}: {_fmt(v)}" for c, v in zip(present, row, strict=True))
        for row in part[present].itertuples(index=False)
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _error_y(s: GroupSpec, data: pd.DataFrame) -> dict[str, Any] | None:
    """plotly's error_y of `data`'s rows (None without error bars)."""
    bars = s.error_bars(data)
    if bars is None:
        return None
    minus, plus = bars
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, thickness=1, width=3)


def _lines(fig: Figure, s: LinesSpec, out: go.Figure) -> None:
    palette, dashes = colors(s, fig.data), ["solid", "dash", "dot", "dashdot", "longdash"]
    dash_values = ordered(fig.data[s.dash]) if s.dash else [None]
    shown: set[str] = set()
    for _, part, r, c in panels(fig):
        top = part[s.y].max() if part[s.y].notna().any() else 1.0
        for color_value, group in groups(s, fig.data, part, s.color):
            for dash_value, sub in groups(s, fig.data, group, s.dash):
                name = " / ".join(str(v) for v in (color_value, dash_value) if v is not None) or s.y
                ok = sub[~sub[s.flag]] if s.flag else sub
                out.add_trace(
                    go.Scatter(
                        x=ok[s.x],
                        y=ok[s.y],
                        mode="lines+markers" if s.markers else "lines",
                        name=name,
                        legendgroup=name,
                        showlegend=name not in shown,
                        line=dict(
                            color=palette.get(color_value),
                            dash=dashes[dash_values.index(dash_value) % len(dashes)],
                        ),
                        error_y=_error_y(s, ok),
                        hovertext=_hover(ok, s.hover),
                    ),
                    row=r,
                    col=c,
                )
                shown.add(name)
                bad = sub[sub[s.flag]] if s.flag else sub.iloc[:0]
                if len(bad):
                    out.add_trace(
                        go.Scatter(
                            x=bad[s.x],
                            y=[top * 1.08] * len(bad),
                            mode="markers+text",
                            text=["OOM"] * len(bad),
                            textposition="top center",
                            textfont=dict(size=10),
                            name=f"{name} out of memory",
                            legendgroup=name,
                            showlegend=False,
                            marker=dict(symbol="x", size=11, color=palette.get(color_value, OOM_COLOR)),
                            hovertext=[f"{name}: out of memory at {x}" for x in bad[s.x]],
                        ),
                        row=r,
                        col=c,
                    )


def _bars(fig: Figure, s: BarsSpec, out: go.Figure) -> None:
    palette, shown = colors(s, fig.data), set()
    out.update_layout(barmode="stack" if s.stacked else "group")
    for _, part, r, c in panels(fig):
        for color_value, group in groups(s, fig.data, part, s.color):
            name = str(color_value) if color_value is not None else s.y
            error = _error_y(s, group)
            out.add_trace(
                go.Bar(
                    x=group[s.x],
                    y=group[s.y],
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown and color_value is not None,
                    marker_color=palette.get(color_value, PALETTE[0]),
                    error_y=error,
                    hovertext=_hover(group, s.hover),
                ),
                row=r,
                col=c,
            )
            shown.add(name)


def _heatmap(fig: Figure, s: HeatmapSpec, out: go.Figure) -> None:
    zmin, zmax = z_range(fig.data, s)
    colorscale = [[0, s.discrete[0]], [1, s.discrete[1]]] if s.discrete else s.colorscale
    first = True
    for _, part, r, c in panels(fig):
        g = heat_grid(part, s)
        if g is None:
            continue
        out.add_trace(
            go.Heatmap(
                z=g.z,
                x=g.xs,
                y=g.ys,
                zmin=zmin,
                zmax=zmax,
                colorscale=colorscale,
                showscale=first and not s.discrete,
                colorbar=dict(title=s.z_title),
                text=g.text,
                hovertemplate=f"{s.x_title} %{{x}}<br>{s.y_title} %{{y}}"
                f"<br>{s.z_title} %{{z:.4g}}<br>%{{text}}<extra></extra>",
            ),
            row=r,
            col=c,
        )
        first = False
        if g.marks is not None and len(g.marks[0]):
            out.add_trace(
                go.Scatter(
                    x=g.marks[0],
                    y=g.marks[1],
                    mode="markers",
                    marker=dict(symbol="circle-open", size=7, color=MARK_COLOR, line=dict(width=1.5)),
                    name=s.mark_label,
                    legendgroup="marks",
                    showlegend=(r, c) == (1, 1),
                    hoverinfo="skip",
                ),
                row=r,
                col=c,
            )
        if len(g.ys) <= 40:
            out.update_yaxes(tickmode="array", tickvals=list(g.ys), row=r, col=c)
        if g.tick_pos is not None:
            out.update_xaxes(
                tickmode="array",
                tickvals=g.tick_pos,
                ticktext=g.tick_text,
                tickangle=s.tickangle,
                row=r,
                col=c,
            )
        out.update_yaxes(autorange="reversed" if s.y_reversed else True, row=r, col=c)


def _scatter(fig: Figure, s: ScatterSpec, out: go.Figure) -> None:
    palette = colors(s, fig.data)
    shapes = symbols(s.symbol, fig.data)
    for _, part, r, c in panels(fig):
        for color_value, group in groups(s, fig.data, part, s.color):
            for symbol_value, sub in groups(s, fig.data, group, s.symbol):
                out.add_trace(
                    go.Scatter(
                        x=sub[s.x],
                        y=sub[s.y],
                        mode="markers+text" if s.label else "markers",
                        text=sub[s.label] if s.label else None,
                        textposition="top center",
                        name=" / ".join(str(v) for v in (color_value, symbol_value) if v is not None),
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
                    hoverinfo="skip",
                ),
                row=r,
                col=c,
            )


def _box(fig: Figure, s: BoxSpec, out: go.Figure) -> None:
    palette, shown = colors(s, fig.data), set()
    out.update_layout(boxmode="group")
    for _, part, r, c in panels(fig):
        for color_value, group in groups(s, fig.data, part, s.color):
            name = str(color_value)
            out.add_trace(
                go.Box(
                    x=group[s.x],
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


DRAWERS = {LinesSpec: _lines, BarsSpec: _bars, HeatmapSpec: _heatmap, ScatterSpec: _scatter, BoxSpec: _box}

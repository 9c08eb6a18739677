"""Draw a `Figure` with plotly: the app's interactive charts and the HTML export.

One function per chart shape (see base.py); each reads column names and labels from `fig.params`.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.figures.base import Figure, panel_title, panels
from workbench.figures.heatgrid import heat_grid, z_range
from workbench.figures.style import MARK_COLOR, PALETTE, PLOTLY_TEMPLATE, group_colors, ordered

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
    p = fig.params
    rows, cols = fig.grid("two")
    titles = [panel_title(fig, v) for v in fig.facets()]
    share_y = p.get("share_y", True) and fig.shape != "heatmap"
    out = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles if any(titles) else None,
        shared_yaxes="all" if share_y and rows * cols > 1 else False,
        horizontal_spacing=min(0.08, 0.4 / max(cols, 1)) if share_y else min(0.12, 0.6 / max(cols, 1)),
        vertical_spacing=min(0.12, 0.5 / max(rows, 1)),
    )
    DRAWERS[fig.shape](fig, out)
    height = p.get("plot_height", 360 if rows == 1 else min(260 * rows, 1400))
    out.update_layout(
        title=fig.title,
        template=PLOTLY_TEMPLATE,
        height=height,
        margin=dict(l=60, r=20, t=70, b=60),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0) if p.get("legend", True) else None,
        showlegend=p.get("legend", True),
    )
    if fig.shape in ("bars", "box"):
        out.update_layout(barmode="stack" if p.get("stacked", True) else "group", boxmode="group")
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            out.update_xaxes(title_text=_xlabel(fig, r, c, cols), row=r, col=c)
            if c == 1:
                out.update_yaxes(title_text=p.get("ylabel", p.get("y", "")), row=r, col=c)
    _integer_x(fig, out)
    if p.get("log_y"):
        out.update_yaxes(type="log", tickformat=".2~g")
    if p.get("log_x"):
        out.update_xaxes(type="log")
    if p.get("x_categorical"):
        order = [str(v) for v in ordered(fig.data[p["x"]], p.get("x_order", ()))]
        out.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    return out


def _integer_x(fig: Figure, out: go.Figure) -> None:
    """Whole-number x (layers, a few steps) gets one tick per value instead of 0.5 steps."""
    p = fig.params
    if fig.shape not in ("lines", "bars", "heatmap") or p.get("log_x") or p.get("x_categorical"):
        return
    if p.get("x_text") or p.get("x_group"):  # heatmaps with their own tick labels
        return
    x = fig.data[p["x"]]
    if pd.api.types.is_integer_dtype(x) and x.nunique() <= 40:
        out.update_xaxes(dtick=1)


def _xlabel(fig: Figure, row: int, col: int, cols: int) -> str:
    p = fig.params
    facets = fig.facets()
    index = (row - 1) * cols + col - 1
    per_facet = p.get("facet_xlabel") or {}
    if index < len(facets) and facets[index] in per_facet:
        return per_facet[facets[index]]
    return p.get("xlabel", p.get("x", ""))


def _hover(part: pd.DataFrame, columns: list[str]) -> list[str] | None:
    """Per-row hover text "col: value" for `columns` present in `part`."""
    columns = [c for c in columns if c in part]
    if not columns:
        return None
    return [
        "<br>".join(f"{c}: {_fmt(v)}" for c, v in zip(columns, row, strict=True))
        for row in part[columns].itertuples(index=False)
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _groups(fig: Figure, part: pd.DataFrame, column: str | None) -> list[tuple[Any, pd.DataFrame]]:
    if not column:
        return [(None, part)]
    order = ordered(fig.data[column], fig.params.get("color_order", ()))
    return [(g, part[part[column] == g]) for g in order if (part[column] == g).any()]


def _colors(fig: Figure) -> dict[Any, str]:
    column = fig.params.get("color")
    if not column:
        return {}
    return group_colors(column, ordered(fig.data[column], fig.params.get("color_order", ())))


def _lines(fig: Figure, out: go.Figure) -> None:
    p = fig.params
    colors, dashes = _colors(fig), ["solid", "dash", "dot", "dashdot", "longdash"]
    dash_values = ordered(fig.data[p["dash"]]) if p.get("dash") else [None]
    shown: set[str] = set()
    flag = p.get("flag")
    for _, part, r, c in panels(fig):
        top = part[p["y"]].max() if part[p["y"]].notna().any() else 1.0
        for color_value, group in _groups(fig, part, p.get("color")):
            for dash_value, sub in _groups(fig, group, p.get("dash")):
                name = " / ".join(str(v) for v in (color_value, dash_value) if v is not None) or p["y"]
                ok = sub[~sub[flag]] if flag else sub
                out.add_trace(
                    go.Scatter(
                        x=ok[p["x"]],
                        y=ok[p["y"]],
                        mode="lines+markers" if p.get("markers") else "lines",
                        name=name,
                        legendgroup=name,
                        showlegend=name not in shown,
                        line=dict(
                            color=colors.get(color_value),
                            dash=dashes[dash_values.index(dash_value) % len(dashes)],
                            shape="hv" if p.get("step_line") else "linear",
                        ),
                        hovertext=_hover(ok, p.get("hover", [])),
                    ),
                    row=r,
                    col=c,
                )
                shown.add(name)
                bad = sub[sub[flag]] if flag else sub.iloc[:0]
                if len(bad):
                    out.add_trace(
                        go.Scatter(
                            x=bad[p["x"]],
                            y=[top * 1.08] * len(bad),
                            mode="markers+text",
                            text=["OOM"] * len(bad),
                            textposition="top center",
                            textfont=dict(size=10),
                            name=f"{name} out of memory",
                            legendgroup=name,
                            showlegend=False,
                            marker=dict(symbol="x", size=11, color=colors.get(color_value, OOM_COLOR)),
                            hovertext=[f"{name}: out of memory at {x}" for x in bad[p["x"]]],
                        ),
                        row=r,
                        col=c,
                    )


def _bars(fig: Figure, out: go.Figure) -> None:
    p = fig.params
    colors, shown = _colors(fig), set()
    for _, part, r, c in panels(fig):
        for color_value, group in _groups(fig, part, p.get("color")):
            name = str(color_value) if color_value is not None else p["y"]
            error = None
            if p.get("err_low") and p.get("err_high"):
                error = dict(
                    type="data",
                    symmetric=False,
                    array=group[p["err_high"]] - group[p["y"]],
                    arrayminus=group[p["y"]] - group[p["err_low"]],
                    thickness=1,
                )
            out.add_trace(
                go.Bar(
                    x=group[p["x"]],
                    y=group[p["y"]],
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown and color_value is not None,
                    marker_color=colors.get(color_value, PALETTE[0]),
                    error_y=error,
                    hovertext=_hover(group, p.get("hover", [])),
                ),
                row=r,
                col=c,
            )
            shown.add(name)


def _heatmap(fig: Figure, out: go.Figure) -> None:
    p = fig.params
    zmin, zmax = z_range(fig.data, p)
    first = True
    for _, part, r, c in panels(fig):
        g = heat_grid(part, p, log=p.get("log_z", False))
        if g is None:
            continue
        out.add_trace(
            go.Heatmap(
                z=g.z,
                x=g.xs,
                y=g.ys,
                zmin=zmin,
                zmax=zmax,
                colorscale=p.get("colorscale", "Viridis"),
                showscale=first and not p.get("discrete"),
                colorbar=dict(title=p.get("zlabel", p["z"])),
                text=g.text,
                hovertemplate=f"{p.get('xlabel', p['x'])} %{{x}}<br>{p.get('ylabel', p['y'])} %{{y}}"
                f"<br>{p.get('zlabel', p['z'])} %{{z:.4g}}<br>%{{text}}<extra></extra>",
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
                    name=p.get("mark_label", "selected"),
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
                tickangle=p.get("tickangle", 0),
                row=r,
                col=c,
            )
        out.update_yaxes(autorange="reversed" if p.get("y_reversed", True) else True, row=r, col=c)


def _scatter(fig: Figure, out: go.Figure) -> None:
    p = fig.params
    colors = _colors(fig)
    for _, part, r, c in panels(fig):
        for color_value, group in _groups(fig, part, p.get("color")):
            out.add_trace(
                go.Scatter(
                    x=group[p["x"]],
                    y=group[p["y"]],
                    mode="markers+text" if p.get("labels") else "markers",
                    text=group[p["label"]] if p.get("labels") and p.get("label") else None,
                    textposition="top center",
                    name=str(color_value),
                    marker=dict(size=11, color=colors.get(color_value), line=dict(width=1, color="white")),
                    customdata=group[p["id"]] if p.get("id") else None,
                    hovertext=_hover(group, p.get("hover", [])),
                    hoverinfo="text",
                ),
                row=r,
                col=c,
            )
        front = part[part[p["front"]]].sort_values(p["x"]) if p.get("front") else part.iloc[:0]
        if len(front):  # rings around the frontier's runs, joined by a staircase
            out.add_trace(
                go.Scatter(
                    x=front[p["x"]],
                    y=front[p["y"]],
                    mode="lines+markers",
                    line=dict(color="#777777", dash="dash", shape="hv", width=1.5),
                    marker=dict(symbol="circle-open", size=18, color="#777777"),
                    name="Pareto frontier",
                    hoverinfo="skip",
                ),
                row=r,
                col=c,
            )


def _box(fig: Figure, out: go.Figure) -> None:
    p = fig.params
    colors, shown = _colors(fig), set()
    for _, part, r, c in panels(fig):
        for color_value, group in _groups(fig, part, p.get("color")):
            name = str(color_value)
            out.add_trace(
                go.Box(
                    x=group[p["x"]],
                    q1=group[p["q1"]],
                    median=group[p["median"]],
                    q3=group[p["q3"]],
                    lowerfence=group[p["low"]],
                    upperfence=group[p["high"]],
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown,
                    marker_color=colors.get(color_value),
                    hovertext=_hover(group, p.get("hover", [])),
                ),
                row=r,
                col=c,
            )
            shown.add(name)


DRAWERS = {"lines": _lines, "bars": _bars, "heatmap": _heatmap, "scatter": _scatter, "box": _box}

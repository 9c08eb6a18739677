"""Draw a `Figure` with matplotlib in paper style: vector text, heatmaps as vector cells (pcolormesh).

Figures are made with the object API (never pyplot), so drawing is safe off the main thread (the
app's lazy downloads) and leaves no global state behind. Style comes from `style.PAPER_RC`, applied
only inside `rc_context` here and in export.
"""

from __future__ import annotations

from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator, NullFormatter

from workbench.figures.base import Figure, panel_title, panels
from workbench.figures.heatgrid import heat_grid, z_range
from workbench.figures.style import LEGEND_COLUMNS, MARK_COLOR, PAPER_RC, group_colors, ordered

MAX_TICK_LABELS = 64  # token labels beyond this many are thinned out (every k-th)
DASHES = ["-", "--", ":", "-.", (0, (5, 1))]


def draw(fig: Figure, size: str = "one") -> MplFigure:
    """The matplotlib figure of `fig` at paper `size` ("one" or "two" columns)."""
    with mpl.rc_context(PAPER_RC):
        out = MplFigure(figsize=fig.size_inches(size), layout="constrained")
        if fig.empty:
            ax = out.subplots()
            ax.text(0.5, 0.5, fig.note or "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return out
        rows, cols = fig.grid(size)
        share_y = fig.params.get("share_y", True) and fig.shape != "heatmap"
        axes = out.subplots(rows, cols, squeeze=False, sharey=share_y)
        used = set()
        for value, part, r, c in panels(fig, size):
            ax = axes[r - 1][c - 1]
            used.add((r, c))
            DRAWERS[fig.shape](fig, out, ax, part)
            ax.set_title(panel_title(fig, value))
            ax.set_xlabel(_xlabel(fig, value))
            if c == 1:
                ax.set_ylabel(fig.params.get("ylabel", fig.params.get("y", "")))
        for r in range(rows):
            for c in range(cols):
                if (r + 1, c + 1) not in used:
                    axes[r][c].set_axis_off()
        if fig.params.get("legend", True):
            _legend(out, axes)
        return out


def _xlabel(fig: Figure, value: Any) -> str:
    per_facet = fig.params.get("facet_xlabel") or {}
    return per_facet.get(value, fig.params.get("xlabel", fig.params.get("x", "")))


def _legend(out: MplFigure, axes: np.ndarray) -> None:
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                handles.setdefault(label, handle)
    if handles:
        out.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside upper center",
            ncols=min(len(handles), LEGEND_COLUMNS),
            handlelength=1.5,
            columnspacing=1.0,
        )


def _colors(fig: Figure) -> dict[Any, str]:
    column = fig.params.get("color")
    if not column:
        return {}
    return group_colors(column, ordered(fig.data[column], fig.params.get("color_order", ())))


def _groups(fig: Figure, part: pd.DataFrame, column: str | None) -> list[tuple[Any, pd.DataFrame]]:
    if not column:
        return [(None, part)]
    order = ordered(fig.data[column], fig.params.get("color_order", ()))
    return [(g, part[part[column] == g]) for g in order if (part[column] == g).any()]


def _lines(fig: Figure, out: MplFigure, ax: Axes, part: pd.DataFrame) -> None:
    p = fig.params
    colors = _colors(fig)
    dash_values = ordered(fig.data[p["dash"]]) if p.get("dash") else [None]
    flag = p.get("flag")
    top = part[p["y"]].max() if part[p["y"]].notna().any() else 1.0
    for color_value, group in _groups(fig, part, p.get("color")):
        for dash_value, sub in _groups(fig, group, p.get("dash")):
            ok = sub[~sub[flag]] if flag else sub
            style = dict(
                color=colors.get(color_value),
                linestyle=DASHES[dash_values.index(dash_value) % len(DASHES)],
                marker="o" if p.get("markers") else None,
                label="_" if p.get("dash") else str(color_value if color_value is not None else p["y"]),
            )
            if p.get("step_line"):
                ax.step(ok[p["x"]], ok[p["y"]], where="post", **style)
            else:
                ax.plot(ok[p["x"]], ok[p["y"]], **style)
            bad = sub[sub[flag]] if flag else sub.iloc[:0]
            if len(bad):
                ax.scatter(
                    bad[p["x"]], [top * 1.08] * len(bad), marker="x", color=colors.get(color_value), s=18
                )
                ax.annotate(
                    "OOM",
                    (bad[p["x"]].iloc[0], top * 1.08),
                    textcoords="offset points",
                    xytext=(0, 4),
                    ha="center",
                    fontsize=5,
                )
    if p.get("dash"):  # colours and dashes keyed apart: n + m legend entries, not n x m
        for color_value, _ in _groups(fig, part, p.get("color")):
            ax.plot([], [], color=colors.get(color_value), label=str(color_value))
        for dash_value in dash_values:
            style = DASHES[dash_values.index(dash_value) % len(DASHES)]
            ax.plot([], [], color="#555555", linestyle=style, label=str(dash_value))
    _scales(ax, p, part[p["x"]].dropna().tolist())


def _scales(ax: Axes, p: dict[str, Any], xs: Any = None) -> None:
    if p.get("log_y"):
        ax.set_yscale("log")
    if p.get("log_x"):
        ax.set_xscale("log")
        if xs is not None and 0 < len(set(xs)) <= 12:  # label the measured points, as plain numbers
            ticks = sorted(set(xs))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())


def _category_positions(fig: Figure, part: pd.DataFrame) -> tuple[list[Any], dict[Any, int]]:
    values = ordered(part[fig.params["x"]], fig.params.get("x_order", ()))
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        values = sorted(values)
    return values, {v: i for i, v in enumerate(values)}


def _set_category_ticks(ax: Axes, values: list[Any]) -> None:
    step = max(1, int(np.ceil(len(values) / 16)))
    ax.set_xticks(range(0, len(values), step), [str(v) for v in values[::step]])


def _bars(fig: Figure, out: MplFigure, ax: Axes, part: pd.DataFrame) -> None:
    p = fig.params
    colors = _colors(fig)
    values, index = _category_positions(fig, part)
    groups = _groups(fig, part, p.get("color"))
    stacked = p.get("stacked", True)
    width = 0.8 if stacked else 0.8 / max(len(groups), 1)
    bottom = np.zeros(len(values))
    for k, (color_value, group) in enumerate(groups):
        pos = np.array([index[v] for v in group[p["x"]]], dtype=float)
        heights = group[p["y"]].to_numpy(dtype=float)
        offset = 0.0 if stacked else (k - (len(groups) - 1) / 2) * width
        base = bottom[pos.astype(int)] if stacked else 0.0
        yerr = None
        if p.get("err_low") and p.get("err_high"):
            yerr = np.vstack([heights - group[p["err_low"]], group[p["err_high"]] - heights])
        ax.bar(
            pos + offset,
            heights,
            width=width,
            bottom=base,
            color=colors.get(color_value, "#0072B2"),
            label=str(color_value) if color_value is not None else "_",
            yerr=yerr,
            error_kw=dict(lw=0.6, capsize=1.5),
            linewidth=0,
        )
        if stacked:
            np.add.at(bottom, pos.astype(int), np.nan_to_num(heights))
    _set_category_ticks(ax, values)
    _scales(ax, p)


def _cmap(p: dict[str, Any]) -> Any:
    if p.get("discrete"):
        return ListedColormap(p.get("discrete_colors", ["#e8e8e8", "#009E73"]))
    name = str(p.get("colorscale", "Viridis"))
    reverse = name.endswith("_r")
    name = name.removesuffix("_r")
    cmap = mpl.colormaps.get(name.lower()) or mpl.colormaps.get(name) or mpl.colormaps["viridis"]
    return cmap.reversed() if reverse else cmap


def _heatmap(fig: Figure, out: MplFigure, ax: Axes, part: pd.DataFrame) -> None:
    p = fig.params
    g = heat_grid(part, p, log=p.get("log_z", False))
    if g is None:
        return
    zmin, zmax = z_range(fig.data, p)
    x_edges = _edges(g.xs)
    y_edges = _edges(g.ys)
    # pcolormesh, never imshow: every cell stays a vector rectangle in PDF/SVG
    mesh = ax.pcolormesh(
        x_edges,
        y_edges,
        np.ma.masked_invalid(g.z),
        cmap=_cmap(p),
        vmin=zmin,
        vmax=zmax,
        shading="flat",
        linewidth=0,
    )
    mesh.set_rasterized(False)
    if g.marks is not None and len(g.marks[0]):
        ax.scatter(
            g.marks[0],
            g.marks[1],
            s=4,
            facecolors="none",
            edgecolors=MARK_COLOR,
            linewidths=0.5,
            label=p.get("mark_label", "selected"),
        )
    if g.tick_pos is not None:
        step = max(1, int(np.ceil(len(g.tick_pos) / MAX_TICK_LABELS)))
        small = bool(p.get("x_text"))
        ax.set_xticks(
            g.tick_pos[::step],
            g.tick_text[::step],
            rotation=90 if small else 0,
            fontsize=4 if small else None,
        )
    if len(g.ys) <= 40:
        ax.set_yticks(g.ys, [str(y) for y in g.ys])
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if g.tick_pos is None:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if p.get("y_reversed", True):
        ax.invert_yaxis()
    if not p.get("discrete") and ax is ax.figure.axes[0]:
        bar = out.colorbar(mesh, ax=ax, shrink=0.9, pad=0.01)
        bar.set_label(p.get("zlabel", p["z"]))
        bar.solids.set_rasterized(False)  # matplotlib rasterizes long colorbars; keep the PDF all vector
        bar.outline.set_linewidth(0.4)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (half-way between neighbours)."""
    c = np.asarray(centres, dtype=float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _scatter(fig: Figure, out: MplFigure, ax: Axes, part: pd.DataFrame) -> None:
    p = fig.params
    colors = _colors(fig)
    for color_value, group in _groups(fig, part, p.get("color")):
        ax.scatter(
            group[p["x"]],
            group[p["y"]],
            s=18,
            color=colors.get(color_value),
            edgecolors="white",
            linewidths=0.4,
            label=str(color_value),
            zorder=3,
        )
        if p.get("labels") and p.get("label"):
            for x, y, text in zip(group[p["x"]], group[p["y"]], group[p["label"]], strict=True):
                ax.annotate(
                    str(text), (x, y), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=4.5
                )
    front = part[part[p["front"]]].sort_values(p["x"]) if p.get("front") else part.iloc[:0]
    if len(front):  # rings around the frontier's runs, joined by a staircase
        ax.step(
            front[p["x"]],
            front[p["y"]],
            where="post",
            color="#777777",
            linestyle="--",
            linewidth=0.8,
            zorder=2,
        )
        ax.scatter(
            front[p["x"]],
            front[p["y"]],
            s=60,
            facecolors="none",
            edgecolors="#777777",
            linewidths=0.6,
            zorder=2,
        )
        ax.plot(
            [], [], color="#777777", linestyle="--", marker="o", fillstyle="none", label="Pareto frontier"
        )
    _scales(ax, p)


def _box(fig: Figure, out: MplFigure, ax: Axes, part: pd.DataFrame) -> None:
    p = fig.params
    colors = _colors(fig)
    values, index = _category_positions(fig, part)
    groups = _groups(fig, part, p.get("color"))
    width = 0.8 / max(len(groups), 1)
    for k, (color_value, group) in enumerate(groups):
        offset = (k - (len(groups) - 1) / 2) * width
        stats = [
            {
                "med": r[p["median"]],
                "q1": r[p["q1"]],
                "q3": r[p["q3"]],
                "whislo": r[p["low"]],
                "whishi": r[p["high"]],
                "fliers": [],
            }
            for _, r in group.iterrows()
        ]
        positions = [index[v] + offset for v in group[p["x"]]]
        color = colors.get(color_value, "#0072B2")
        ax.bxp(
            stats,
            positions=positions,
            widths=width * 0.85,
            patch_artist=True,
            boxprops=dict(facecolor=color, edgecolor=color, linewidth=0.5, alpha=0.7),
            medianprops=dict(color="black", linewidth=0.6),
            whiskerprops=dict(color=color, linewidth=0.5),
            capprops=dict(color=color, linewidth=0.5),
            manage_ticks=False,
        )
        ax.plot([], [], color=color, linewidth=4, label=str(color_value))
    _set_category_ticks(ax, values)
    _scales(ax, p)


DRAWERS = {"lines": _lines, "bars": _bars, "heatmap": _heatmap, "scatter": _scatter, "box": _box}

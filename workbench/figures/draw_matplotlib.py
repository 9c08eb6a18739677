"""Draw a `Figure` with matplotlib in paper style: vector text, heatmaps as vector cells (pcolormesh).

Figures are made with the object API (never pyplot), so drawing is safe off the main thread (the
app's lazy downloads) and leaves no global state behind. Style comes from `style.PAPER_RC`, applied
only inside `rc_context` here and in export. The legend sits above the panels in as many columns as
fit the paper width (never cut off at an edge); tick labels are thinned to every k-th so they never
overlap; heatmap cells are drawn with their edges in their own colour, so PDF viewers show no light
seams between rows; chosen cells get a thin border inside the cell, which keeps its colour visible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure as MplFigure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, NullFormatter

from workbench.figures.heatgrid import category_label, heat_grid, z_range
from workbench.figures.panels import colors, groups, panel_xlabel, panels, symbols, variant, x_categories
from workbench.figures.specs import BarsSpec, BoxSpec, GroupSpec, HeatmapSpec, LinesSpec, ScatterSpec
from workbench.figures.style import (
    MARK_COLOR,
    MPL_DASHES,
    MPL_HATCHES,
    PAPER_RC,
    SYMBOLS,
    label_step,
    legend_columns,
    ordered,
    text_width,
    thinned,
    wrap_title,
)

if TYPE_CHECKING:  # Figure.plotly() / .matplotlib() call into this module
    from workbench.figures.base import Figure

DASHES = MPL_DASHES
TICK_PT = 6.0  # PAPER_RC's tick label size
TOKEN_PT = 4.0  # token labels (rotated) under a saliency heatmap


def draw(fig: Figure, size: str = "one") -> MplFigure:
    """The matplotlib figure of `fig` at paper `size` ("one" or "two" columns)."""
    with mpl.rc_context(PAPER_RC):
        out = MplFigure(figsize=fig.size_inches(size), layout="constrained")
        if fig.empty:
            ax = out.subplots()
            ax.text(0.5, 0.5, fig.note or "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return out
        spec, (rows, cols) = fig.spec, fig.grid(size)
        axes = out.subplots(rows, cols, squeeze=False, sharey=isinstance(spec, GroupSpec) and spec.share_y)
        width, height = fig.size_inches(size)
        room = (  # a panel's width and height in points, roughly (labels, colour bar, legend taken off)
            72 * (width - 0.5 - 0.45 * isinstance(spec, HeatmapSpec)) / cols - 12,
            72 * (height - fig.legend_inches(size) - 0.3) / rows - 30,
        )
        used = set()
        for value, part, r, c in panels(fig, size):
            ax = axes[r - 1][c - 1]
            used.add((r, c))
            DRAWERS[type(spec)](fig, spec, ax, part, room)
            ax.set_title("" if value is None else wrap_title(value, room[0], 7))
            ax.set_xlabel(panel_xlabel(fig, value))
            if c == 1:
                ax.set_ylabel(spec.y_title)
        for r in range(rows):
            for c in range(cols):
                if (r + 1, c + 1) not in used:
                    axes[r][c].set_axis_off()
        if spec.legend:
            _legend(out, axes, width)
        return out


def _legend(out: MplFigure, axes: np.ndarray, width: float) -> None:
    """One legend above the panels, in as many columns as fit `width` inches."""
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
            ncols=legend_columns(handles, width),
            handlelength=1.5,
            columnspacing=1.0,
        )


def _xpos(s: Any, fig: Figure, values: pd.Series) -> Any:
    """x as drawn: the position of each category on a categorical axis (few recorded steps), else x."""
    if not s.x_categorical:
        return values
    index = {v: i for i, v in enumerate(x_categories(fig))}
    return values.map(index).to_numpy(dtype=float)


def _category_ticks(ax: Axes, labels: list[str], room: float, rotated: bool = False, font: float = TICK_PT):
    """Tick labels at 0..n-1, every k-th so they never overlap in `room` points."""
    need = font + 1.5 if rotated else max((text_width(t, font) for t in labels), default=0) + 4
    picks = thinned(len(labels), label_step(len(labels), room, need))
    ax.set_xticks(picks, [labels[i] for i in picks], rotation=90 if rotated else 0, fontsize=font)


def _yerr(s: GroupSpec, data: pd.DataFrame) -> np.ndarray | None:
    """matplotlib's yerr (2 x n: below, above) of `data`'s rows (None without error bars)."""
    bars = s.error_bars(data)
    return None if bars is None else np.vstack([bars[0].to_numpy(float), bars[1].to_numpy(float)])


def _lines(fig: Figure, s: LinesSpec, ax: Axes, part: pd.DataFrame, room: tuple[float, float]) -> None:
    palette = colors(s, fig.data)
    dash_values = ordered(fig.data[s.dash]) if s.dash else [None]
    top = part[s.y].max() if part[s.y].notna().any() else 1.0
    many = fig.data[s.x].nunique() > 30
    for color_value, group in groups(s, fig.data, part, s.color):
        k = variant(s, color_value)  # the k-th run of its method: own line style (or marker, with dashes)
        marked = s.markers or (s.dash is not None and k > 0)
        for dash_value, sub in groups(s, fig.data, group, s.dash):
            ok = sub[~sub[s.flag]] if s.flag else sub
            dash = dash_values.index(dash_value) if s.dash else k
            ax.errorbar(
                _xpos(s, fig, ok[s.x]),
                ok[s.y],
                yerr=_yerr(s, ok),
                color=palette.get(color_value),
                linestyle=DASHES[dash % len(DASHES)],
                marker=SYMBOLS[k % len(SYMBOLS)][1] if marked else None,
                markevery=max(1, len(ok) // 12) if many else None,
                capsize=1.5,
                elinewidth=0.5,
                label="_" if s.dash else str(color_value if color_value is not None else s.y),
            )
            bad = sub[sub[s.flag]] if s.flag else sub.iloc[:0]
            if len(bad):
                bx = _xpos(s, fig, bad[s.x])
                ax.scatter(bx, [top * 1.08] * len(bad), marker="x", color=palette.get(color_value), s=18)
                ax.annotate(
                    "OOM",
                    (np.asarray(bx)[0], top * 1.08),
                    textcoords="offset points",
                    xytext=(0, 4),
                    ha="center",
                    fontsize=5,
                )
    if s.dash:  # colours and dashes keyed apart: n + m legend entries, not n x m
        for color_value, _ in groups(s, fig.data, part, s.color):
            k = variant(s, color_value)
            marker = SYMBOLS[k % len(SYMBOLS)][1] if k > 0 or s.markers else None
            ax.plot([], [], color=palette.get(color_value), marker=marker, label=str(color_value))
        for dash_value in dash_values:
            style = DASHES[dash_values.index(dash_value) % len(DASHES)]
            ax.plot([], [], color="#555555", linestyle=style, label=str(dash_value))
    if s.x_categorical:
        _category_ticks(ax, [category_label(v) for v in x_categories(fig)], room[0])
    else:
        _integer_ticks(ax, part[s.x], room[0])
    _scales(ax, s, part[s.x].dropna().tolist())


def _integer_ticks(ax: Axes, x: pd.Series, room: float) -> None:
    """Whole-number x (layers): a tick every k-th value, so labels never overlap."""
    if not pd.api.types.is_integer_dtype(x) or x.empty:
        return
    lo, hi = int(x.min()), int(x.max())
    need = max(text_width(lo, TICK_PT), text_width(hi, TICK_PT)) + 4
    k = label_step(hi - lo + 1, room, need)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=max(1, (hi - lo) // k + 1), integer=True, min_n_ticks=1))


def _scales(ax: Axes, s: GroupSpec, xs: Any = None) -> None:
    if s.log_y:
        ax.set_yscale("log")
    if s.log_x:
        ax.set_xscale("log")
        if xs is not None and 0 < len(set(xs)) <= 12:  # label the measured points, as plain numbers
            ticks = sorted(set(xs))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())


def _categories(part: pd.DataFrame, x: str, order: tuple[Any, ...] = ()) -> tuple[list[Any], dict[Any, int]]:
    """The x categories of a panel in drawing order, and each one's position."""
    values = ordered(part[x], order)
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        values = sorted(values)
    return values, {v: i for i, v in enumerate(values)}


def _bars(fig: Figure, s: BarsSpec, ax: Axes, part: pd.DataFrame, room: tuple[float, float]) -> None:
    palette = colors(s, fig.data)
    values, index = _categories(part, s.x, s.x_order)
    bar_groups = groups(s, fig.data, part, s.color)
    width = 0.8 if s.stacked else 0.8 / max(len(bar_groups), 1)
    bottom = np.zeros(len(values))
    for k, (color_value, group) in enumerate(bar_groups):
        pos = np.array([index[v] for v in group[s.x]], dtype=float)
        heights = group[s.y].to_numpy(dtype=float)
        offset = 0.0 if s.stacked else (k - (len(bar_groups) - 1) / 2) * width
        base = bottom[pos.astype(int)] if s.stacked else 0.0
        yerr = _yerr(s, group)
        ax.bar(
            pos + offset,
            heights,
            width=width,
            bottom=base,
            color=palette.get(color_value, "#0072B2"),
            label=str(color_value) if color_value is not None else "_",
            yerr=yerr,
            error_kw=dict(lw=0.6, capsize=1.5),
            linewidth=0,
            hatch=MPL_HATCHES[variant(s, color_value) % len(MPL_HATCHES)] or None,
        )
        if s.stacked:
            np.add.at(bottom, pos.astype(int), np.nan_to_num(heights))
    _category_ticks(ax, [category_label(v) for v in values], room[0])
    _scales(ax, s)


def _cmap(s: HeatmapSpec) -> Any:
    if s.discrete:
        return ListedColormap(list(s.discrete))
    reverse = s.colorscale.endswith("_r")
    name = s.colorscale.removesuffix("_r")
    cmap = mpl.colormaps.get(name.lower()) or mpl.colormaps.get(name) or mpl.colormaps["viridis"]
    return cmap.reversed() if reverse else cmap


def _heatmap(fig: Figure, s: HeatmapSpec, ax: Axes, part: pd.DataFrame, room: tuple[float, float]) -> None:
    g = heat_grid(part, s, x_categories(fig) if s.x_categorical else None)
    if g is None:
        return
    zmin, zmax = z_range(fig.data, s)
    x_edges, y_edges = _edges(g.xs), _edges(g.ys)
    # pcolormesh, never imshow: every cell stays a vector rectangle in PDF/SVG; each cell's edge is
    # drawn in its own colour, so neighbouring cells overlap and no light seam shows between rows
    mesh = ax.pcolormesh(
        x_edges,
        y_edges,
        np.ma.masked_invalid(g.z),
        cmap=_cmap(s),
        vmin=zmin,
        vmax=zmax,
        shading="flat",
        edgecolors="face",
        linewidth=0.3,
        antialiased=False,
    )
    mesh.set_rasterized(False)
    if g.marks is not None and len(g.marks[0]):
        _mark_cells(ax, g.marks, g.xs, g.ys, x_edges, y_edges)
        ax.plot([], [], marker="s", linestyle="none", markerfacecolor="none", markeredgecolor=MARK_COLOR,
                markeredgewidth=0.6, label=s.mark_label)  # fmt: skip
    if g.tick_pos is not None:
        small = bool(s.x_text)
        need = TOKEN_PT + 1.5 if small else max(text_width(t, TICK_PT) for t in g.tick_text) + 4
        k = label_step(len(g.tick_pos), room[0], need)
        keep = thinned(len(g.tick_pos), k) if g.x_values is not None else range(0, len(g.tick_pos), k)
        ax.set_xticks(
            [g.tick_pos[i] for i in keep],
            [g.tick_text[i] for i in keep],
            rotation=90 if small else 0,
            fontsize=TOKEN_PT if small else None,
        )
    k = label_step(len(g.ys), room[1], TICK_PT + 1.5)
    ax.set_yticks(g.ys[::k], [str(y) for y in g.ys[::k]])
    if g.tick_pos is None:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if s.y_reversed:
        ax.invert_yaxis()
    if not s.discrete and ax is ax.figure.axes[0]:
        bar = ax.figure.colorbar(mesh, ax=ax, shrink=0.9, pad=0.01)
        bar.set_label(s.z_title)
        bar.solids.set_rasterized(False)  # matplotlib rasterizes long colorbars; keep the PDF all vector
        bar.outline.set_linewidth(0.4)


def _mark_cells(
    ax: Axes,
    marks: tuple[np.ndarray, np.ndarray],
    xs: np.ndarray,
    ys: np.ndarray,
    x_edges: np.ndarray,
    y_edges: np.ndarray,
) -> None:
    """A thin border just inside each marked cell (chosen tokens): the cell's colour stays visible."""
    xi = np.clip(np.searchsorted(xs, marks[0]), 0, len(xs) - 1)
    yi = np.clip(np.searchsorted(ys, marks[1]), 0, len(ys) - 1)
    rects = []
    for i, j in zip(xi, yi, strict=True):
        w, h = x_edges[i + 1] - x_edges[i], y_edges[j + 1] - y_edges[j]
        rects.append(Rectangle((x_edges[i] + 0.12 * w, y_edges[j] + 0.12 * h), 0.76 * w, 0.76 * h))
    ax.add_collection(PatchCollection(rects, facecolor="none", edgecolor=MARK_COLOR, linewidth=0.5, zorder=3))


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (half-way between neighbours)."""
    c = np.asarray(centres, dtype=float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _scatter(fig: Figure, s: ScatterSpec, ax: Axes, part: pd.DataFrame, room: tuple[float, float]) -> None:
    palette = colors(s, fig.data)
    shapes = symbols(s.symbol, fig.data)
    for color_value, group in groups(s, fig.data, part, s.color):
        for symbol_value, sub in groups(s, fig.data, group, s.symbol):
            yerr = _yerr(s, sub)
            if yerr is not None:  # the bars under the points
                ax.errorbar(
                    sub[s.x], sub[s.y], yerr=yerr, fmt="none", ecolor=palette.get(color_value),
                    elinewidth=0.5, capsize=1.5, zorder=2,
                )  # fmt: skip
            ax.scatter(
                sub[s.x],
                sub[s.y],
                s=18,
                marker=shapes[symbol_value][1],
                color=palette.get(color_value),
                edgecolors="white",
                linewidths=0.4,
                label="_" if s.symbol else str(color_value),
                zorder=3,
            )
        if s.label:
            for x, y, text in zip(group[s.x], group[s.y], group[s.label], strict=True):
                ax.annotate(
                    str(text), (x, y), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=4.5
                )
    if s.symbol:  # colours and shapes keyed apart: n + m legend entries, not n x m
        for color_value, _ in groups(s, fig.data, part, s.color):
            ax.scatter([], [], s=18, color=palette.get(color_value), label=str(color_value))
        for symbol_value, (_, marker) in shapes.items():
            ax.scatter([], [], s=18, marker=marker, color="#555555", label=str(symbol_value))
    front = part[part[s.front]].sort_values(s.x) if s.front else part.iloc[:0]
    if len(front):  # rings around the frontier's runs, joined by a staircase
        ax.step(
            front[s.x], front[s.y], where="post", color="#777777", linestyle="--", linewidth=0.8, zorder=2
        )
        ax.scatter(
            front[s.x], front[s.y], s=60, facecolors="none", edgecolors="#777777", linewidths=0.6, zorder=2
        )
        ax.plot(
            [], [], color="#777777", linestyle="--", marker="o", fillstyle="none", label="Pareto frontier"
        )
    _scales(ax, s)


def _box(fig: Figure, s: BoxSpec, ax: Axes, part: pd.DataFrame, room: tuple[float, float]) -> None:
    palette = colors(s, fig.data)
    values, index = _categories(part, s.x)
    box_groups = groups(s, fig.data, part, s.color)
    width = 0.8 / max(len(box_groups), 1)
    for k, (color_value, group) in enumerate(box_groups):
        offset = (k - (len(box_groups) - 1) / 2) * width
        stats = [
            {
                "med": r[s.y],
                "q1": r[s.q1],
                "q3": r[s.q3],
                "whislo": r[s.low],
                "whishi": r[s.high],
                "fliers": [],
            }
            for _, r in group.iterrows()
        ]
        color = palette.get(color_value, "#0072B2")
        ax.bxp(
            stats,
            positions=[index[v] + offset for v in group[s.x]],
            widths=width * 0.85,
            patch_artist=True,
            boxprops=dict(facecolor=color, edgecolor=color, linewidth=0.5, alpha=0.7),
            medianprops=dict(color="black", linewidth=0.6),
            whiskerprops=dict(color=color, linewidth=0.5),
            capprops=dict(color=color, linewidth=0.5),
            manage_ticks=False,
        )
        ax.plot([], [], color=color, linewidth=4, label=str(color_value))
    _category_ticks(ax, [category_label(v) for v in values], room[0])
    _scales(ax, s)


DRAWERS = {LinesSpec: _lines, BarsSpec: _bars, HeatmapSpec: _heatmap, ScatterSpec: _scatter, BoxSpec: _box}

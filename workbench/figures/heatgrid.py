"""Long (x, y, z) rows -> the 2-D grid both heatmap renderers draw (one place for the pivot rules)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.figures.specs import HeatmapSpec

MAX_GAP_FILL = 20_000  # integer x spans up to this wide are drawn contiguous (gaps stay empty cells)


@dataclass
class HeatGrid:
    """A heatmap panel: z[i, j] is the cell at (ys[i], xs[j]); NaN where no row gave a value.

    With a categorical x (`spec.x_categorical`, e.g. the few recorded steps) `xs` are the positions
    0..n-1 of the values present and `x_values` the values themselves (tick labels)."""

    xs: np.ndarray
    ys: np.ndarray
    z: np.ndarray  # (len(ys), len(xs)) float
    text: list[list[str]] | None  # per-cell hover text (token text, hover columns), or None
    marks: tuple[np.ndarray, np.ndarray] | None  # (x, y) of marked cells (chosen tokens / blocks)
    tick_pos: list[float] | None  # custom x ticks (token text, or one per group such as a layer)
    tick_text: list[str] | None
    x_values: list | None = None  # the category of each x position (x_categorical), else None


def _axis(values: pd.Series) -> np.ndarray:
    uniq = np.unique(values.to_numpy())
    if np.issubdtype(uniq.dtype, np.integer) and len(uniq) and uniq[-1] - uniq[0] < MAX_GAP_FILL:
        return np.arange(uniq[0], uniq[-1] + 1)
    return uniq


def fmt(value: object) -> str:
    """A value as hover text: 4 significant digits, booleans as yes / no, missing as "-"."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def category_label(value: object) -> str:
    """A category's tick label: whole numbers without ".0"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def heat_grid(part: pd.DataFrame, s: HeatmapSpec, x_values: list | None = None) -> HeatGrid | None:
    """The grid of one panel from the spec's x, y, z and its optional mark, x_text, x_group, hover
    columns. `x_values`: the categories of a categorical x shared by every panel (default: this panel's)."""
    if part.empty:
        return None
    if s.x_categorical:
        x_values = sorted(pd.unique(part[s.x])) if x_values is None else list(x_values)
        xs = np.arange(len(x_values))
        xi = pd.Index(x_values).get_indexer(part[s.x])
    else:
        xs = _axis(part[s.x])
        xi = np.searchsorted(xs, part[s.x].to_numpy())
    ys = _axis(part[s.y])
    yi = np.searchsorted(ys, part[s.y].to_numpy())
    values = pd.to_numeric(part[s.z], errors="coerce").to_numpy(dtype=float)
    if s.log_z:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(values > 0, np.log10(values), np.nan)
    z = np.full((len(ys), len(xs)), np.nan)
    z[yi, xi] = values
    text = marks = tick_pos = tick_text = None
    if s.x_text:
        labels = part.groupby(xi)[s.x_text].first()
        per_x = [str(labels.get(i, "")) if pd.notna(labels.get(i, None)) else "" for i in range(len(xs))]
        text = [per_x] * len(ys)
        tick_pos, tick_text = list(xs), per_x
    elif s.x_categorical:
        tick_pos, tick_text = list(xs), [category_label(v) for v in x_values]
    if s.x_group:
        centres = part.groupby(s.x_group)[s.x].agg(["min", "max"]).sort_index()
        tick_pos = list((centres["min"] + centres["max"]) / 2)
        tick_text = [str(g) for g in centres.index]
    if s.hover:
        present = [c for c in s.hover if c in part]
        cells = [[""] * len(xs) for _ in ys]
        columns = [part[c].to_numpy() for c in present]
        names = [s.hover_labels.get(c, c) for c in present]
        for k, (i, j) in enumerate(zip(yi, xi, strict=True)):
            cells[i][j] = "<br>".join(f"{n}: {fmt(col[k])}" for n, col in zip(names, columns, strict=True))
        text = cells
    if s.mark:
        chosen = part[s.mark].fillna(False).astype(bool).to_numpy()
        marks = (
            xs[xi[chosen]] if s.x_categorical else part[s.x].to_numpy()[chosen],
            part[s.y].to_numpy()[chosen],
        )
    if text is None:
        text = [[""] * len(xs)] * len(ys)
    return HeatGrid(xs, ys, z, text, marks, tick_pos, tick_text, x_values if s.x_categorical else None)


def z_range(data: pd.DataFrame, s: HeatmapSpec) -> tuple[float | None, float | None]:
    """The colour range shared by every panel (so panels, e.g. runs side by side, compare directly): the
    spec's fixed ends, else the data's smallest and largest cell (log10 with `log_z`)."""
    if s.zmin is not None and s.zmax is not None:
        return s.zmin, s.zmax
    z = pd.to_numeric(data[s.z], errors="coerce").astype(float)
    if s.log_z:
        z = np.log10(z[z > 0])
    z = z[np.isfinite(z)]
    if z.empty:
        return s.zmin, s.zmax
    low = float(z.min()) if s.zmin is None else s.zmin
    return low, float(z.max()) if s.zmax is None else s.zmax

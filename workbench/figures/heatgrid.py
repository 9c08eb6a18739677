"""Long (x, y, z) rows -> the 2-D grid both heatmap renderers draw (one place for the pivot rules)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.figures.specs import HeatmapSpec

MAX_GAP_FILL = 20_000  # integer x spans up to this wide are drawn contiguous (gaps stay empty cells)


@dataclass
class HeatGrid:
    """A heatmap panel: z[i, j] is the cell at (ys[i], xs[j]); NaN where no row gave a value."""

    xs: np.ndarray
    ys: np.ndarray
    z: np.ndarray  # (len(ys), len(xs)) float
    text: list[list[str]] | None  # per-cell hover text (token text), or None
    marks: tuple[np.ndarray, np.ndarray] | None  # (x, y) of marked cells (chosen tokens / blocks)
    tick_pos: list[float] | None  # custom x ticks (token text, or one per group such as a layer)
    tick_text: list[str] | None


def _axis(values: pd.Series) -> np.ndarray:
    uniq = np.unique(values.to_numpy())
    if np.issubdtype(uniq.dtype, np.integer) and len(uniq) and uniq[-1] - uniq[0] < MAX_GAP_FILL:
        return np.arange(uniq[0], uniq[-1] + 1)
    return uniq


def heat_grid(part: pd.DataFrame, s: HeatmapSpec) -> HeatGrid | None:
    """The grid of one panel from the spec's x, y, z and its optional mark, x_text, x_group columns."""
    if part.empty:
        return None
    xs, ys = _axis(part[s.x]), _axis(part[s.y])
    xi = np.searchsorted(xs, part[s.x].to_numpy())
    yi = np.searchsorted(ys, part[s.y].to_numpy())
    values = pd.to_numeric(part[s.z], errors="coerce").to_numpy(dtype=float)
    if s.log_z:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(values > 0, np.log10(values), np.nan)
    z = np.full((len(ys), len(xs)), np.nan)
    z[yi, xi] = values
    text = marks = tick_pos = tick_text = None
    if s.x_text:
        labels = part.groupby(s.x)[s.x_text].first()
        per_x = [str(labels.get(x, "")) if pd.notna(labels.get(x, None)) else "" for x in xs]
        text = [per_x] * len(ys)
        tick_pos, tick_text = list(xs), per_x
    if s.x_group:
        centres = part.groupby(s.x_group)[s.x].agg(["min", "max"]).sort_index()
        tick_pos = list((centres["min"] + centres["max"]) / 2)
        tick_text = [str(g) for g in centres.index]
    if s.mark:
        chosen = part[part[s.mark].fillna(False).astype(bool)]
        marks = (chosen[s.x].to_numpy(), chosen[s.y].to_numpy())
    if text is None:
        text = [[""] * len(xs)] * len(ys)
    return HeatGrid(xs, ys, z, text, marks, tick_pos, tick_text)


def z_range(data: pd.DataFrame, s: HeatmapSpec) -> tuple[float | None, float | None]:
    """The colour range shared by every panel (so panels, e.g. runs side by side, compare directly)."""
    if s.zmin is not None or s.zmax is not None:
        return s.zmin, s.zmax
    z = pd.to_numeric(data[s.z], errors="coerce").astype(float)
    if s.log_z:
        z = np.log10(z[z > 0])
    z = z[np.isfinite(z)]
    if z.empty:
        return None, None
    return float(z.min()), float(z.max())

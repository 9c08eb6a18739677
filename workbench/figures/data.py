"""Small pure helpers on store tables shared by the figure functions (and usable by analyses)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

MIB = 2**20


def main_rank(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of rank 0: a data-parallel run's memory, grads and timing tables hold one set of rows per
    process (`rank`); figures show the main process's, like a single-process run's."""
    if df is None or "rank" not in df or not len(df) or (df["rank"] == 0).all():
        return df
    return df[df["rank"] == 0].reset_index(drop=True)


def label_runs(
    tables: Mapping[str, pd.DataFrame], column: str = "run", *, methods: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One long DataFrame from {run label: table}, with the label in `column` (for side-by-side views).

    `methods` ({run label: method}) adds a `method` column (where a table has none of its own): figures
    then draw each run in its method's colour, the colour that method has on the trade-off plots."""
    methods = methods or {}
    parts = [
        main_rank(df).assign(
            **{column: label},
            **({"method": methods[label]} if label in methods and "method" not in df else {}),
        )
        for label, df in tables.items()
        if df is not None and len(df)
    ]
    if not parts:
        first = next(iter(tables.values()), pd.DataFrame())
        return (
            (first if first is not None else pd.DataFrame()).iloc[:0].assign(**{column: pd.Series(dtype=str)})
        )
    return pd.concat(parts, ignore_index=True)


def downsample(
    df: pd.DataFrame,
    x: str,
    value: str | Sequence[str],
    by: Sequence[str] = (),
    *,
    max_points: int | None = 400,
    agg: str = "mean",
) -> tuple[pd.DataFrame, bool]:
    """At most `max_points` distinct `x` per group: x is cut into equal-width buckets (each keeps its
    first x) and `value` aggregated with `agg` ("mean", "max" ...). Returns (frame, whether it thinned).

    Long runs record thousands of steps; a chart cannot show more points than it has pixels anyway.
    """
    values = [value] if isinstance(value, str) else list(value)
    if max_points is None or df.empty or df[x].nunique() <= max_points:
        return df, False
    xs = np.sort(df[x].unique())
    edges = np.linspace(xs[0], xs[-1], max_points + 1)
    bucket = np.clip(np.searchsorted(edges, df[x].to_numpy(), side="right") - 1, 0, max_points - 1)
    keys = list(by) + ["_bucket"]
    grouped = df.assign(_bucket=bucket).groupby(keys, sort=True, dropna=False)
    out = grouped[values].agg(agg)
    out[x] = grouped[x].min()
    return out.reset_index().drop(columns="_bucket"), True


def pareto_front(df: pd.DataFrame, cost: str, gain: str) -> pd.Series:
    """Boolean mask of the rows no other row beats: lower `cost` and higher `gain` (ties kept once)."""
    mask = pd.Series(False, index=df.index)
    valid = df[[cost, gain]].dropna()
    best = -np.inf
    for idx, row in valid.sort_values([cost, gain], ascending=[True, False]).iterrows():
        if row[gain] > best:
            mask[idx] = True
            best = row[gain]
    return mask


def layer_label(layer: int) -> str:
    """Layer -1 (rows about the whole model: embeddings, final norm, loss) reads "other"."""
    return "other" if layer < 0 else str(int(layer))


def last_step(df: pd.DataFrame, step: int | None = None) -> tuple[pd.DataFrame, int | None]:
    """Rows of `step` (default: the latest recorded step) and that step."""
    if df.empty:
        return df, None
    if step is None:
        step = int(df["step"].max())
    return df[df["step"] == step], step

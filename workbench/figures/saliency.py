"""Token saliency (SAGE / TokenTune, or an observed LoRA run) from the `saliency` table.

Columns used: step, sample, layer (block), position, token, score, selected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.data import last_step
from workbench.figures.specs import BarsSpec, HeatmapSpec, LinesSpec

MAX_LAYER_GROUPS = 6  # position_selection draws at most this many lines per panel


def token_label(token: object, position: int) -> str:
    """Readable token text for an axis: the byte-level space marks shown as a dot, newlines escaped."""
    if token is None or (isinstance(token, float) and np.isnan(token)):
        return str(position)
    text = str(token).replace("Ġ", "·").replace("▁", "·").replace("\n", "\\n").replace("Ċ", "\\n")
    return text if text.strip() else repr(text)


def saliency_heatmap(saliency: pd.DataFrame, step: int | None = None, sample: int | None = None) -> Figure:
    """Block x position heatmap of saliency scores of one example at one step, chosen tokens marked,
    token text on the x axis. Defaults: the latest recorded step, its first example."""
    title = "Saliency per block and token"
    rows, step = last_step(saliency, step)
    if rows.empty:
        return empty_figure("saliency_heatmap", title, "no saliency recorded")
    if sample is None:
        sample = int(rows["sample"].min())
    rows = rows[rows["sample"] == sample]
    if rows.empty:
        return empty_figure("saliency_heatmap", title, f"no saliency for example {sample} at step {step}")
    data = rows[["layer", "position", "token", "score", "selected"]].copy()
    data["token_label"] = [token_label(t, p) for t, p in zip(data["token"], data["position"], strict=True)]
    data["selected"] = data["selected"].fillna(False).astype(bool)
    data = data.sort_values(["layer", "position"]).reset_index(drop=True)
    spec = HeatmapSpec(
        x="position",
        y="layer",
        z="score",
        mark="selected",
        mark_label="chosen token",
        x_text="token_label",
        xlabel="token",
        ylabel="block",
        zlabel="saliency",
        row_height=1.4,
        tickangle=-90,
    )
    return Figure("saliency_heatmap", f"{title} (step {step}, example {sample})", data, spec)


def token_budget(saliency: pd.DataFrame, step: int | None = None) -> Figure:
    """p per block: tokens kept per example in each block (mean, with min-max bars), at `step` or,
    when `step` is None, over every recorded step."""
    title = "Tokens kept per example (p) per block"
    if saliency.empty:
        return empty_figure("token_budget", title, "no saliency recorded")
    rows = saliency if step is None else saliency[saliency["step"] == step]
    kept = (
        rows.assign(selected=rows["selected"].fillna(False).astype(bool))
        .groupby(["step", "sample", "layer"])
        .agg(kept=("selected", "sum"), tokens=("position", "size"))
        .reset_index()
    )
    data = (
        kept.groupby("layer")
        .agg(p_mean=("kept", "mean"), p_min=("kept", "min"), p_max=("kept", "max"), tokens=("tokens", "mean"))
        .reset_index()
    )
    data["share"] = data["p_mean"] / data["tokens"]
    where = "all steps" if step is None else f"step {step}"
    spec = BarsSpec(
        x="layer",
        y="p_mean",
        err_low="p_min",
        err_high="p_max",
        xlabel="block",
        ylabel="tokens kept per example",
        hover=("layer", "p_mean", "p_min", "p_max", "tokens", "share"),
        legend=False,
    )
    return Figure("token_budget", f"{title} ({where})", data, spec)


def _layer_groups(layers: np.ndarray) -> dict[int, str]:
    """Each layer's line label: itself when few, else one of MAX_LAYER_GROUPS contiguous ranges."""
    layers = np.sort(np.unique(layers))
    if len(layers) <= MAX_LAYER_GROUPS:
        return {int(layer): f"block {layer}" for layer in layers}
    out = {}
    for chunk in np.array_split(layers, MAX_LAYER_GROUPS):
        name = f"blocks {chunk[0]}-{chunk[-1]}"
        out.update({int(layer): name for layer in chunk})
    return out


def position_selection(saliency: pd.DataFrame, step: int | None = None, span: int = 16) -> Figure:
    """Fraction of examples in which each relative position is chosen: the first `span` tokens and
    the last `span` tokens of each example, per block (or block range). Over every recorded step
    unless `step` is given. Relative positions count the tokens recorded for the example (its real
    tokens, contiguous), so examples of different lengths line up at both ends."""
    title = "How often each relative position is chosen"
    rows = saliency if step is None else saliency[saliency["step"] == step]
    if rows.empty:
        return empty_figure("position_selection", title, "no saliency recorded")
    # rank of each token within its (step, sample, layer) example without sorting (a long run has millions
    # of rows): an example's real tokens are contiguous positions, so rank = position - its first position
    step, sample, layer, position = (
        rows[c].to_numpy(dtype=np.int64) for c in ("step", "sample", "layer", "position")
    )
    n_sample, n_layer = int(sample.max()) + 1, int(layer.max()) + 2
    example = (step * n_sample + sample) * n_layer + (layer + 1)  # (N,) one id per (step, sample, layer)
    by_example = pd.Series(position).groupby(example)
    rank = position - by_example.transform("min").to_numpy()  # (N,) 0 = the example's first token
    back = rank - by_example.transform("size").to_numpy()  # (N,) -1 = its last token
    chosen = rows["selected"].to_numpy(dtype=bool, na_value=False)
    head, tail = rank < span, back >= -span
    both = pd.DataFrame(
        {
            "anchor": np.r_[np.zeros(head.sum(), dtype=np.int8), np.ones(tail.sum(), dtype=np.int8)],
            "offset": np.r_[rank[head], back[tail]],
            "layer": np.r_[layer[head], layer[tail]],
            "chosen": np.r_[chosen[head], chosen[tail]],
        }
    )
    data = both.groupby(["anchor", "layer", "offset"]).agg(
        hits=("chosen", "sum"), examples=("chosen", "size")
    )
    data = data.reset_index()
    groups = _layer_groups(data["layer"].to_numpy())
    data["blocks"] = data["layer"].map(groups)
    data = data.groupby(["anchor", "blocks", "offset"], sort=False)[["hits", "examples"]].sum().reset_index()
    data["fraction"] = data["hits"] / data["examples"]
    data["anchor"] = np.where(data["anchor"] == 0, "first tokens", "last tokens")
    data = data.sort_values(["anchor", "blocks", "offset"]).reset_index(drop=True)
    data = data[["anchor", "blocks", "offset", "fraction", "examples"]]
    spec = LinesSpec(
        x="offset",
        y="fraction",
        color="blocks",
        color_order=tuple(dict.fromkeys(groups.values())),
        facet="anchor",
        facet_order=("first tokens", "last tokens"),
        markers=True,
        xlabel="position",
        facet_xlabel={"first tokens": "position from the start", "last tokens": "position from the end"},
        ylabel="fraction of examples chosen",
        hover=("blocks", "offset", "fraction", "examples"),
        wrap=2,
    )
    return Figure("position_selection", title, data, spec)

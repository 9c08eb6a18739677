"""Token saliency (SAGE / TokenTune, or an observed LoRA run) from the `saliency` table.

Columns used: step, sample, layer (block), position, token, score, selected.

What the marks and the score mean depends on the run, and the figures say so (`source` is the run
summary's `saliency_source`, `method` its method): for SAGE the tokens it chose; for a run observed
without token selection (LoRA, full, SMT, SPSFT: source "observed (what SAGE would choose)") the tokens
SAGE *would* choose, the run itself trains on every token; for TokenTune the "saliency" is its random
score, and the marks its random choice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.data import last_step
from workbench.figures.specs import BarsSpec, HeatmapSpec, LinesSpec

MAX_LAYER_GROUPS = 6  # position_selection draws at most this many lines per panel
RANDOM_SCORE = ("tokentune",)  # methods whose token score is random, not a saliency


def _observed(source: str | None) -> bool:
    return bool(source) and str(source).startswith("observed")


def selection_words(source: str | None = None, method: str | None = None) -> dict[str, str]:
    """What the marks and the score are, in words, for a run's `saliency_source` and method:
    {"mark": legend entry of the marks, "score": colour bar title, "chosen": the hover's name for a
    chosen cell, "what": the sentence saying what "chosen" means, "colour": what the heatmap's colour is}."""
    who = f"{method} " if method else ""
    if method in RANDOM_SCORE:
        return {
            "mark": "chosen token (at random)",
            "score": "random score (TokenTune)",
            "chosen": "chosen",
            "what": "TokenTune chooses tokens at random: its score is random, not a saliency.",
            "colour": "Colour: its random score.",
        }
    if _observed(source):
        return {
            "mark": "SAGE would choose",
            "score": "saliency (SAGE's score)",
            "chosen": "SAGE would choose",
            "what": f"Observed: this {who}run trains on every token; chosen here means what SAGE would "
            "choose at this budget.",
            "colour": "Colour: SAGE's saliency score.",
        }
    if source:  # the method's own selection
        return {
            "mark": "chosen token",
            "score": "saliency",
            "chosen": "chosen",
            "what": f"Chosen: the tokens this {who}run kept (its own selection).",
            "colour": "Colour: the saliency score it ranks tokens by.",
        }
    return {  # not told: both readings
        "mark": "chosen token",
        "score": "saliency",
        "chosen": "chosen",
        "what": "Chosen: the tokens the run's method kept; for runs without token selection (LoRA, full, "
        "SMT, SPSFT) the tokens SAGE would choose. TokenTune's choice is random.",
        "colour": "Colour: the score tokens are ranked by.",
    }


def token_label(token: object, position: int) -> str:
    """Readable token text for an axis: the byte-level space marks shown as a dot, newlines escaped."""
    if token is None or (isinstance(token, float) and np.isnan(token)):
        return str(position)
    text = str(token).replace("Ġ", "·").replace("▁", "·").replace("\n", "\\n").replace("Ċ", "\\n")
    return text if text.strip() else repr(text)


def saliency_heatmap(
    saliency: pd.DataFrame,
    step: int | None = None,
    sample: int | None = None,
    *,
    source: str | None = None,
    method: str | None = None,
) -> Figure:
    """Block x position heatmap of saliency scores of one example at one step, chosen tokens marked
    (a thin border, the cell's colour visible), token text on the x axis (every k-th where many), hover
    with position, token, score and whether chosen. Defaults: the latest recorded step, its first
    example. `source` (the run summary's `saliency_source`) and `method` say what the marks are: chosen,
    what SAGE would choose (an observed run), or TokenTune's random choice (see `selection_words`); the
    figure's title, note, legend and colour bar say it. Its height grows with the number of blocks."""
    title = "Saliency per block and token"
    words = selection_words(source, method)
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
    blocks = int(data["layer"].max() - data["layer"].min()) + 1
    spec = HeatmapSpec(
        x="position",
        y="layer",
        z="score",
        mark="selected",
        mark_label=words["mark"],
        x_text="token_label",
        hover=("position", "token_label", "score", "selected"),
        hover_labels={"token_label": "token", "score": words["score"], "selected": words["chosen"]},
        xlabel="token",
        ylabel="block",
        zlabel=words["score"],
        row_height=min(max(1.4, blocks / 12), 3.6),  # paper: about 12 blocks per default row height
        cell_px=18,
        tickangle=-90,
    )
    what = " - marks: what SAGE would choose" if _observed(source) else ""
    if method in RANDOM_SCORE:
        what = " - TokenTune's random score"
    full = f"{title} (step {step}, example {sample}){what}"
    return Figure("saliency_heatmap", full, data, spec, f"{words['what']} {words['colour']}")


def token_budget(
    saliency: pd.DataFrame, step: int | None = None, *, source: str | None = None, method: str | None = None
) -> Figure:
    """p per block: tokens kept per example in each block (mean, with min-max bars), at `step` or,
    when `step` is None, over every recorded step. `source` / `method` as in `saliency_heatmap`: for an
    observed run the tokens SAGE would keep."""
    words = selection_words(source, method)
    observed = _observed(source)
    title = (
        "Tokens SAGE would keep per example (p) per block"
        if observed
        else "Tokens kept per example (p) per block"
    )
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
        ylabel="tokens SAGE would keep per example" if observed else "tokens kept per example",
        hover=("layer", "p_mean", "p_min", "p_max", "tokens", "share"),
        legend=False,
    )
    note = "bars: mean over examples, whiskers: min-max. " + (words["what"] if source or method else "")
    return Figure("token_budget", f"{title} ({where})", data, spec, note.strip())


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


def position_selection(
    saliency: pd.DataFrame,
    step: int | None = None,
    span: int = 16,
    *,
    source: str | None = None,
    method: str | None = None,
) -> Figure:
    """Fraction of examples in which each relative position is chosen: the first `span` tokens and
    the last `span` tokens of each example, per block (or block range). Over every recorded step
    unless `step` is given. Relative positions count the tokens recorded for the example (its real
    tokens, contiguous), so examples of different lengths line up at both ends. `source` / `method` as
    in `saliency_heatmap` (an observed run: how often SAGE would choose each position)."""
    words = selection_words(source, method)
    observed = _observed(source)
    title = (
        "How often SAGE would choose each relative position"
        if observed
        else "How often each relative position is chosen"
    )
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
        ylabel="fraction of examples SAGE would choose it" if observed else "fraction of examples chosen",
        hover=("blocks", "offset", "fraction", "examples"),
        wrap=2,
    )
    return Figure("position_selection", title, data, spec, words["what"] if source or method else "")

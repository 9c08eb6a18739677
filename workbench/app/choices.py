"""What a method chose, in one sentence each: the headline numbers of the Blocks, Rows and Saliency
pages and of the run page. Plain text (callers escape it for markdown) except `saliency_source_note`;
pandas only, read from the store's tables."""

from __future__ import annotations

import math

import pandas as pd

from workbench.app.text import md_escape
from workbench.figures.style import projection

# short names of the projections, as the papers write them
SHORT = {
    "q_proj": "Q",
    "k_proj": "K",
    "v_proj": "V",
    "o_proj": "O",
    "gate_proj": "Gate",
    "up_proj": "Up",
    "down_proj": "Down",
}
OBSERVED = "observed"  # saliency_source of a run whose marks are what SAGE would choose


def short_name(module: object) -> str:
    """ "self_attn.v_proj" -> "V"; a module outside the known projections keeps its projection name."""
    name = projection(module)
    return SHORT.get(name, name)


def _last_step(frame: pd.DataFrame) -> tuple[pd.DataFrame, int | None]:
    if frame.empty or "step" not in frame:
        return frame, None
    step = int(frame["step"].max())
    return frame[frame["step"] == step], step


def selection_by_type(frame: pd.DataFrame) -> tuple[pd.DataFrame, int | None]:
    """Chosen units (block / row) per module type at the table's last step: columns type, chosen,
    total, share (of all chosen), of_type (of the type's own units); most chosen first."""
    rows, step = _last_step(frame)
    columns = ["type", "chosen", "total", "share", "of_type"]
    if step is None or "module" not in rows:
        return pd.DataFrame(columns=columns), step
    chosen = rows["selected"].fillna(False).astype(bool)
    types = rows["module"].map(short_name)
    table = pd.DataFrame({"type": types, "chosen": chosen.astype(int)}).groupby("type", sort=False)
    out = table["chosen"].agg(["sum", "count"]).rename(columns={"sum": "chosen", "count": "total"})
    out = out.reset_index()
    all_chosen = int(out["chosen"].sum())
    out["share"] = out["chosen"] / all_chosen if all_chosen else math.nan
    out["of_type"] = out["chosen"] / out["total"]
    out = out.sort_values(["chosen", "type"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return out[columns], step


def _percent(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{100 * value:.0f}%" if value >= 0.01 or value == 0 else f"{100 * value:.2f}%"


def _unit(unit: str, count: int) -> str:
    """ "blocks" -> "block" for one."""
    return unit[:-1] if count == 1 and unit.endswith("s") else unit


def selection_headline(frame: pd.DataFrame, unit: str) -> str:
    """E.g. "164 blocks chosen at step 0: V 69% (113 blocks), Q 24% (39), K 7% (12); of each type's
    blocks: V 0.9%, Q 0.3%, K 0.1%." for the `blocks` (unit "blocks") or `rows` (unit "rows") table."""
    by_type, step = selection_by_type(frame)
    if step is None or by_type.empty:
        return f"No {unit} recorded."
    total = int(by_type["chosen"].sum())
    if total == 0:
        return f"No {unit} chosen at step {step}."
    parts = [
        f"{r.type} {_percent(r.share)} ({r.chosen:,}{' ' + _unit(unit, r.chosen) if i == 0 else ''})"
        for i, r in enumerate(by_type.itertuples())
    ]
    own = [f"{r.type} {_percent(r.of_type)}" for r in by_type.itertuples()]
    return (
        f"{total:,} {_unit(unit, total)} chosen at step {step}: {', '.join(parts)}; "
        f"of each type's own {unit}: {', '.join(own)}."
    )


def saliency_headline(saliency: pd.DataFrame, method: str, source: str | None) -> str:
    """What the saliency marks are and how many tokens they keep, in one sentence."""
    rows, step = _last_step(saliency)
    if step is None or rows.empty:
        return "No saliency recorded."
    kept = rows["selected"].fillna(False).astype(bool).groupby([rows["sample"], rows["layer"]]).mean()
    share = float(kept.mean())
    low, high = float(kept.min()), float(kept.max())
    spread = f" (blocks {_percent(low)} to {_percent(high)})" if high - low >= 0.005 else ""
    examples = int(rows["sample"].nunique())
    where = f"of the {examples} probe example{'s' if examples != 1 else ''}' tokens per block at step {step}"
    if source and str(source).startswith(OBSERVED):
        return (
            f"{method} selects no tokens: the marks are what SAGE would choose (observed, SAGE's default "
            f"budget): {_percent(share)} {where}{spread}."
        )
    if method == "tokentune":
        return (
            f"TokenTune trains on {_percent(share)} {where}{spread}, chosen at random: its "
            '"saliency" is the random score it ranks tokens by, not a measure of importance.'
        )
    return f"{method} trains on {_percent(share)} {where}{spread} (its own choice)."


def saliency_source_note(method: str, source: str | None) -> str:
    """What the saliency scores and marks of a run are (the Saliency page's caption; markdown, the
    method's name escaped)."""
    method = md_escape(method)
    if source and str(source).startswith(OBSERVED):
        return (
            f"{method} chooses no tokens: scores and marks are what SAGE *would* choose here (SAGE's "
            "attention saliency and default budget, observed during a no-grad probe forward); this "
            "run trained on every token."
        )
    if method == "tokentune":
        return (
            'TokenTune chooses tokens at random: its "saliency" is the random score it ranks the tokens '
            "by (no measure of importance); the marks are the tokens it trained on."
        )
    return f"{method}'s own choice: its saliency scores and the tokens it trained on (marked)."


def probe_tokens(saliency: pd.DataFrame, step: int, sample: int) -> list[str]:
    """The probe example's tokens in position order (from the first block's rows at `step`)."""
    rows = saliency[(saliency["step"] == step) & (saliency["sample"] == sample)]
    if rows.empty:
        return []
    first = rows[rows["layer"] == rows["layer"].min()].sort_values("position")
    return ["" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t) for t in first["token"]]

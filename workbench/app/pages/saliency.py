"""Saliency: block x token scores with chosen tokens, a step slider to watch the selection drift, p per
block, and how often each relative position is chosen."""

from __future__ import annotations

import streamlit as st

from workbench.app.choices import probe_tokens, saliency_headline, saliency_source_note
from workbench.app.context import current
from workbench.app.data import figure, load_manifest
from workbench.app.text import md_escape
from workbench.app.widgets import picked_run_table, show_figure

STEP_KEY = "saliency_step"
SAMPLE_KEY = "saliency_sample"


def _probe_example(saliency, step: int, sample: int) -> None:
    """The probe example's text: its tokens in order (the run records tokens, not the example's
    sentence and label apart; the probe is the example as trained, prompt then its gold answer)."""
    tokens = probe_tokens(saliency, step, sample)
    if not tokens:
        return
    st.caption(
        f"Probe example {sample}: the task's training example {sample} as trained, its prompt followed by "
        f"its gold answer (the label: the last tokens). The run records its {len(tokens)} tokens, not "
        "the sentence and label apart; in order:"
    )
    st.code("".join(tokens), language=None, wrap_lines=True)


def render() -> None:
    ctx = current()
    st.title("Saliency")
    picked = picked_run_table(ctx, "saliency")
    if picked is None:
        return
    run, saliency = picked
    info, _ = load_manifest(run["path"])
    source = ((info or {}).get("manifest", {}).get("summary") or {}).get("saliency_source")
    method = str(run["method"])
    st.markdown(saliency_source_note(method, source))
    st.caption(md_escape(saliency_headline(saliency, method, source)))
    steps = sorted(int(s) for s in saliency["step"].unique())
    left, right = st.columns([3, 1])
    if len(steps) > 1:
        if st.session_state.get(STEP_KEY) not in steps:
            st.session_state[STEP_KEY] = steps[-1]
        step = left.select_slider("Step", options=steps, key=STEP_KEY, help="Recorded steps of this run")
    else:
        step = steps[0]
        left.caption(f"One recorded step: {step}")
    samples = sorted(int(s) for s in saliency.loc[saliency["step"] == step, "sample"].unique())
    if st.session_state.get(SAMPLE_KEY) not in samples:
        st.session_state[SAMPLE_KEY] = samples[0]
    sample = right.selectbox(
        "Example", samples, key=SAMPLE_KEY, help="Probe example (the same at every step)"
    )
    _probe_example(saliency, step, sample)
    runs = [("", run["path"])]
    said = {"source": source, "method": method}  # what the marks are: chosen, would choose, random score
    heatmap = figure("saliency_heatmap", runs, "saliency", step=step, sample=sample, **said)
    show_figure(heatmap, "saliency_heatmap")
    st.subheader("Tokens kept per block (p)")
    show_figure(figure("token_budget", runs, "saliency", step=step, **said), "token_budget")
    st.subheader("Chosen share by relative position")
    this_step = st.toggle("Only this step", key="positions_this_step", help="Default: every recorded step")
    positions = figure("position_selection", runs, "saliency", step=step if this_step else None, **said)
    show_figure(positions, "position_selection")


if __name__ == "__main__":
    render()

"""Saliency recorder: rows per probe token and block, the method's own selection, SAGE's view of LoRA."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from recorder_helpers import EVERY, STEPS, make_config, prepared_session

from workbench.data import encode_example
from workbench.lm import answer_logits
from workbench.recorders import SaliencyRecorder, due
from workbench.recorders.probe import build_probe, probe_forward
from workbench.recorders.saliency import BUDGET_METRIC, budget_metric
from workbench.store import RunReader

PROBES = 4  # RecordConfig's default probe_examples
BLOCKS = 4  # tiny-llama


@pytest.mark.parametrize("method", ["sage", "tokentune", "lora"])
def test_rows_cover_every_probe_token_in_every_block_at_recorded_steps(recorded, method):
    run = recorded(method).run
    sal = run.table("saliency")
    assert set(sal["step"]) == {s for s in range(1, STEPS + 1) if due(s, EVERY)} == {1, 2, 4}
    assert set(sal["sample"]) == set(range(PROBES)) and set(sal["layer"]) == set(range(BLOCKS))
    assert sal["score"].between(0, 1).all() and sal["token"].notna().all()
    per_map = sal.groupby(["step", "sample", "layer"])
    # every real token once per (step, sample, block), positions 0..len-1 (right padding)
    positions = per_map["position"].agg(lambda p: sorted(p) == list(range(len(p))))
    assert positions.all()
    assert per_map.size().groupby(["sample"]).nunique().eq(1).all()  # same tokens at every step/block
    # scores are normalised over the block's candidates (all real tokens here)
    torch.testing.assert_close(
        torch.tensor(per_map["score"].sum().to_numpy()), torch.ones(len(per_map), dtype=torch.float64)
    )
    # the budget p of each block, at the same steps
    p = run.table("metrics").query("split == 'probe'")
    assert set(p["name"]) == {budget_metric(i) for i in range(BLOCKS)}
    assert all(name.startswith(BUDGET_METRIC) for name in p["name"])
    assert set(p["step"]) == {1, 2, 4}
    # chosen per example: its top-p tokens (fewer if it is shorter) plus the output tokens (<= 5 here)
    p = p.assign(layer=p["name"].str.removeprefix(BUDGET_METRIC).astype(int)).set_index(["step", "layer"])
    counts = per_map.agg(chosen=("selected", "sum"), length=("position", "size")).reset_index()
    budget = p.loc[list(zip(counts["step"], counts["layer"], strict=True)), "value"].to_numpy()
    assert (counts["chosen"] >= pd.Series(budget).clip(upper=counts["length"])).all()
    assert (counts["chosen"] <= budget + 5).all()


def test_token_text_and_selected_match_the_methods_own_selection(tiny_task, tmp_path):
    """Rows equal what SAGE selects for the probe batch in a training-mode forward, token text included."""
    session, setup, _ = prepared_session(make_config(tiny_task, tmp_path, "sage"))
    recorder = SaliencyRecorder(every=1, probe_examples=PROBES)
    recorder.attach(session)
    recorder.on_step_start(1)
    session.writer.flush()
    rows = RunReader(session.writer.run_dir).table("saliency")

    probe = build_probe(session, PROBES)
    with (
        probe_forward(session.model, setup.method, session.device),
        setup.method.forward_context(probe.batch),
    ):
        answer_logits(session.model, probe.batch)
    expected = setup.method.selection()
    assert len(expected) == BLOCKS and recorder.observing is False
    real = probe.batch.attention_mask.bool()
    outputs = probe.batch.output_mask
    for sel in expected:
        block = rows[rows["layer"] == sel.block].sort_values(["sample", "position"])
        assert block["selected"].tolist() == sel.selected[real].tolist()
        torch.testing.assert_close(torch.tensor(block["score"].to_numpy()), sel.scores[real].double())
        assert sel.selected[outputs].all()  # output tokens always chosen
    tok = session.tokenizer
    for sample, example in enumerate(session.task.train[:PROBES]):
        ids, _ = encode_example(tok, example, session.max_length)
        text = "".join(rows.query(f"sample == {sample} and layer == 0").sort_values("position")["token"])
        assert text == tok.decode(ids)
    budgets = RunReader(session.writer.run_dir).table("metrics")
    assert sorted(budgets["value"]) == sorted(float(s.budget) for s in expected)


def test_lora_runs_show_what_sage_would_choose(tiny_task, tmp_path):
    """On LoRA (B starts at zero: the model is the base model) the observed choice equals SAGE's own choice
    at its default options on the same base model."""
    tables = {}
    for method in ("lora", "sage"):
        config = make_config(tiny_task, tmp_path, method, method_options={"r": 4})  # SAGE: default tau, n_min
        session, _, _ = prepared_session(config)
        recorder = SaliencyRecorder(every=1, probe_examples=PROBES)
        recorder.attach(session)
        recorder.on_step_start(1)
        assert recorder.observing is (method == "lora")
        session.writer.flush()
        tables[method] = RunReader(session.writer.run_dir).table("saliency")
    merged = tables["lora"].merge(
        tables["sage"], on=["sample", "layer", "position"], suffixes=("_lora", "_sage")
    )
    assert len(merged) == len(tables["lora"]) == len(tables["sage"]) > 0
    torch.testing.assert_close(
        torch.tensor(merged["score_lora"].to_numpy()), torch.tensor(merged["score_sage"].to_numpy())
    )
    assert (merged["selected_lora"] == merged["selected_sage"]).all()

"""The one run-summary projection (workbench.store.summary): records for `workbench ls`, the frame for
the app and figures, the same rows either way."""

from __future__ import annotations

import json

from workbench.store import RunWriter, list_runs
from workbench.store.summary import COLUMNS, run_records, runs_frame


def test_records_and_frame_are_one_projection(runs_dir):
    options = {"r": 8, "targets": "all", "dropout": 0.0}
    config = {
        "method": "lora",
        "model": "tiny-llama",
        "task": "data/my_task.jsonl",
        "method_options": options,
    }
    run = RunWriter.create(runs_dir, name="one", config=config, environment={})
    run.update_summary(
        accuracy_after=0.75, median_step_seconds=0.5, memory_peak_bytes={"saved_activations": 2048}
    )
    run.finish("completed")
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "manifest.json").write_text("{")

    entries = list_runs(runs_dir)
    records = run_records(entries)
    assert json.loads(json.dumps(records)) == records  # JSON-ready as it is (`workbench ls --json`)
    good, broken = records
    assert set(good) == set(COLUMNS)
    assert good["key_options"] == "r=8, targets=all" and good["task"] == "my_task.jsonl"
    assert (
        good["accuracy"] == 0.75 and good["saved_activations_bytes"] == 2048 and good["step_seconds"] == 0.5
    )
    assert broken["status"] == "corrupt" and "manifest" in broken["error"]

    frame = runs_frame(entries)
    assert list(frame.columns) == COLUMNS and list(frame["id"]) == [r["id"] for r in records]
    assert list(frame["status"]) == ["completed", "corrupt"] and frame["accuracy"].iloc[0] == 0.75

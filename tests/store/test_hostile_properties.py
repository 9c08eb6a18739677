"""Property-based hostile manifests (hypothesis): whatever JSON a manifest holds, listing, the summary
projection, `ls`, `show` and the reports never raise anything but one StoreError line, and the other run
in the runs dir still reads (issue 20)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.cli import main
from workbench.report import format_run_list, format_run_report
from workbench.store import list_runs
from workbench.store.summary import run_records, runs_frame

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

GOOD: dict[str, Any] = {
    "schema_version": 1,
    "id": "good",
    "name": "good",
    "created": "2026-01-01T00:00:00+00:00",
    "finished": None,
    "status": "completed",
    "status_message": None,
    "pid": 1,
    "hostname": "elsewhere",
    "config": {
        "method": "lora",
        "model": "tiny-llama",
        "task": "polarity",
        "method_options": {"r": 16},
        "train": {"seed": 0, "steps": 3, "attn": "sdpa", "gradient_checkpointing": False},
        "record": {"memory": True},
    },
    "environment": {"device": "cpu", "inputs": {"model_sha256": "ab"}},
    "summary": {
        "eval_metric": "accuracy",
        "accuracy_after": 0.5,
        "accuracy_after_ci": [0.4, 0.6],
        "memory_peak_bytes": {"total_logical": 10, "saved_activations": 5},
        "memory_phase_peak_bytes": {"warmup": {"total_logical": 12}},
        "fidelity_last": {"cosine": 0.9},
        "median_step_seconds": 0.1,
        "trainable_parameters": 7,
    },
}

# every field a reader looks at, and a few it does not
PATHS = [
    (key,) for key in GOOD
] + [
    ("config", key) for key in GOOD["config"]
] + [
    ("config", "train", key) for key in GOOD["config"]["train"]
] + [
    ("summary", key) for key in GOOD["summary"]
] + [
    ("summary", "memory_peak_bytes", "total_logical"),
    ("summary", "memory_phase_peak_bytes", "warmup"),
    ("summary", "fidelity_last", "cosine"),
    ("environment", "inputs"),
    ("config", "kind"),
    ("config", "method_options", "r"),
]  # fmt: skip

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

MUTATION = st.tuples(st.sampled_from(PATHS), st.one_of(JSON, st.just(KeyError)))


def _mutated(mutations: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    data = json.loads(json.dumps(GOOD))
    for path, value in mutations:
        node = data
        for key in path[:-1]:
            if not isinstance(node, dict) or not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            if value is KeyError:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
    return data


def _check_runs_dir(runs: Path) -> None:
    """The properties: nothing raises but StoreError lines, and the good run reads."""
    entries = list_runs(runs)
    by_id = {e.id: e for e in entries}
    assert by_id["good"].ok
    records = run_records(entries)
    assert len(runs_frame(entries)) == len(records) == 2
    format_run_list(entries)
    for entry in entries:
        if entry.ok:
            run = entry.reader
            format_run_report(run.id, str(run.path), run.summary, status=run.status, config=run.config)
            assert isinstance(run.status_message, (str, type(None)))
        else:
            assert entry.error and "\n" not in entry.error
    for ref in ("good", "hostile"):
        assert main(["show", ref, "--runs-dir", str(runs)]) in (0, 2)
    assert main(["ls", "--runs-dir", str(runs), "--json"]) == 0


def _write(runs: Path, name: str, text: str) -> None:
    (runs / name).mkdir(parents=True)
    (runs / name / "manifest.json").write_text(text, encoding="utf-8")


@SETTINGS
@given(st.lists(MUTATION, min_size=1, max_size=4))
def test_a_mutated_manifest_never_breaks_reading(mutations) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        _write(runs, "good", json.dumps(GOOD))
        _write(runs, "hostile", json.dumps(_mutated(mutations)))
        _check_runs_dir(runs)


@SETTINGS
@given(st.one_of(JSON.map(json.dumps), st.text(max_size=200)))
def test_any_json_or_text_as_a_manifest_never_breaks_reading(text) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        _write(runs, "good", json.dumps(GOOD))
        _write(runs, "hostile", text)
        _check_runs_dir(runs)

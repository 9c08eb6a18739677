"""docs/PROFILING.md's examples run as written (in a scratch directory) and write the runs they promise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbench.store import list_runs

DOC = Path(__file__).resolve().parents[1] / "docs" / "PROFILING.md"


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_both_examples():
    blocks = _examples()
    assert len(blocks) == 2 and "wb.profile(" in blocks[0] and "WorkbenchCallback(" in blocks[1]


@pytest.mark.parametrize("index, name, steps", [(0, "my-loop", 10), (1, "trainer-lora", 20)])
def test_each_example_runs_and_writes_a_completed_profiled_run(tmp_path, monkeypatch, index, name, steps):
    monkeypatch.chdir(tmp_path)
    exec(compile(_examples()[index], f"{DOC.name} example {index + 1}", "exec"), {"__name__": "__doc__"})
    (entry,) = list_runs(tmp_path / "runs")
    run = entry.reader
    assert run.status == "completed" and run.name == name and run.config["kind"] == "profiled"
    assert run.summary["steps_recorded"] == steps
    assert len(run.table("saliency")) > 0 and len(run.table("grads")) > 0

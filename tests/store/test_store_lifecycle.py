"""Run status over a run's life: context manager outcomes, and crashed writers reading as interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import workbench.store
from workbench.store import RunReader, RunWriter

ROW = {"step": 0, "name": "loss", "value": 1.0}


def _create(runs_dir: Path) -> RunWriter:
    return RunWriter.create(runs_dir, name="life", config={}, environment={})


def test_with_block_completes(runs_dir):
    with _create(runs_dir) as run:
        run.add("metrics", ROW)
    reader = RunReader(run.path)
    assert reader.status == "completed"
    assert reader.manifest["finished"] is not None
    assert len(reader.table("metrics")) == 1


def test_exception_marks_failed_and_flushes(runs_dir):
    with pytest.raises(RuntimeError, match="loss is NaN"):
        with _create(runs_dir) as run:
            run.add("metrics", ROW)
            raise RuntimeError("loss is NaN")
    reader = RunReader(run.path)
    assert reader.status == "failed"
    assert reader.status_message == "RuntimeError: loss is NaN"
    assert len(reader.table("metrics")) == 1


def test_keyboard_interrupt_marks_interrupted(runs_dir):
    with pytest.raises(KeyboardInterrupt):
        with _create(runs_dir) as run:
            run.add("metrics", ROW)
            raise KeyboardInterrupt
    reader = RunReader(run.path)
    assert reader.status == "interrupted"
    assert reader.status_message == "KeyboardInterrupt"
    assert len(reader.table("metrics")) == 1


def test_explicit_finish_inside_block_wins(runs_dir):
    with _create(runs_dir) as run:
        run.finish("failed", "recorder broke")
    assert RunReader(run.path).status == "failed"


def test_store_error_on_exit_does_not_hide_the_original(runs_dir, monkeypatch):
    with pytest.raises(RuntimeError, match="original"):
        with _create(runs_dir) as run:
            run.add("metrics", ROW)
            monkeypatch.setattr(os, "replace", _enospc)
            raise RuntimeError("original")


def _enospc(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_killed_writer_keeps_flushed_rows_and_reads_interrupted(runs_dir):
    script = textwrap.dedent(
        """
        import sys, time
        from workbench.store import RunWriter
        run = RunWriter.create(sys.argv[1], name="victim", config={}, environment={})
        run.add("metrics", {"step": [0, 1], "name": "loss", "value": [1.0, 0.5]})
        run.flush()
        run.add("metrics", {"step": 2, "name": "loss", "value": 0.25})  # never flushed: lost
        print(run.path, flush=True)
        time.sleep(60)
        """
    )
    root = str(Path(workbench.store.__file__).resolve().parents[2])  # the repository root
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(runs_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        path = Path(proc.stdout.readline().strip())
        assert RunReader(path).status == "running"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    reader = RunReader(path)
    assert reader.manifest["status"] == "running"  # nobody rewrote it...
    assert reader.status == "interrupted"  # ...but its process is gone
    assert reader.table("metrics")["step"].tolist() == [0, 1]


def _rewrite_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_dead_pid_reads_interrupted(runs_dir):
    run = _create(runs_dir)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    _rewrite_manifest(run.path, pid=int(done.stdout))
    assert RunReader(run.path).status == "interrupted"


def test_other_host_keeps_running(runs_dir):
    run = _create(runs_dir)
    _rewrite_manifest(run.path, pid=2**22 + 12345, hostname="some-other-machine")
    assert RunReader(run.path).status == "running"


def test_finished_status_is_never_overridden(runs_dir):
    run = _create(runs_dir)
    run.finish("completed")
    _rewrite_manifest(run.path, pid=2**22 + 12345)
    assert RunReader(run.path).status == "completed"

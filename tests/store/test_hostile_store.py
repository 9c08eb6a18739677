"""Hostile run directories: no run can break the listing of the others, reads are bounded, and a run
that stops records why (issue 20, cases 1, 2, 4, 5, 8, 9 and part of 10)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from workbench.cli import main
from workbench.errors import StoreError
from workbench.report import format_run_list, format_run_report
from workbench.store import RunReader, RunWriter, list_runs, resolve_run
from workbench.store.reader import DEAD_RUN_MESSAGE, process_start
from workbench.store.summary import run_records, runs_frame


def _good_manifest(run_id: str = "good") -> dict[str, Any]:
    return {
        "schema_version": 1,
        "id": run_id,
        "name": run_id,
        "created": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:01:00+00:00",
        "status": "completed",
        "status_message": None,
        "pid": 1,
        "hostname": "elsewhere",
        "config": {"method": "lora", "model": "tiny-llama", "task": "polarity", "train": {"seed": 0}},
        "environment": {"device": "cpu"},
        "summary": {"accuracy_after": 0.5, "accuracy_after_ci": [0.4, 0.6], "memory_peak_bytes": {}},
    }


def _put(runs_dir: Path, name: str, manifest: Any) -> Path:
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (run_dir / "manifest.json").write_text(text)
    return run_dir


def _with(path: str, value: Any) -> dict[str, Any]:
    """The good manifest with the value at a dotted `path` replaced."""
    data = _good_manifest("bad")
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


# each: a manifest whose contents once broke the listing of every run, and a word of the reason
WRONG_TYPES = {
    "huge pid on a running run": (
        {**_with("pid", 2**70), "status": "running", "hostname": os.uname().nodename},
        "pid must be in",
    ),
    "method is a list": (_with("config.method", ["lora"]), "config.method must be a string"),
    "model is a dict": (_with("config.model", {"a": 1}), "config.model must be a string"),
    "task is a list": (_with("config.task", [1]), "config.task must be a string"),
    "seed is a string": (_with("config.train.seed", "zero"), "config.train.seed must be an integer"),
    "train is a list": (_with("config.train", [1]), "config.train must be an object"),
    "accuracy is text": (_with("summary.accuracy_after", "high"), "summary.accuracy_after must be a number"),
    "interval is text": (_with("summary.accuracy_after_ci", "0.4-0.6"), "accuracy_after_ci must be a list"),
    "interval of three": (_with("summary.accuracy_after_ci", [0, 1, 2]), "must hold 2 items"),
    "memory peaks a list": (_with("summary.memory_peak_bytes", [1]), "memory_peak_bytes must be an object"),
    "memory peak text": (_with("summary.memory_peak_bytes", {"total_logical": "1 GB"}), "must be a number"),
    "step time infinite": (_with("summary.median_step_seconds", 1e999), "must be a finite number"),
    "parameters negative": (_with("summary.trainable_parameters", -5), "must be in"),
    "fidelity a number": (_with("summary.fidelity_last", 0.9), "fidelity_last must be an object"),
    "created not a time": (_with("created", "yesterday"), "ISO 8601"),
    "pid a boolean": (_with("pid", True), "pid must be an integer"),
    "inputs a list": (_with("environment.inputs", ["x"]), "environment.inputs must be an object"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_a_wrongly_typed_manifest_is_corrupt_and_the_others_still_list(tmp_path, capsys, case):
    manifest, reason = WRONG_TYPES[case]
    runs = tmp_path / "runs"
    _put(runs, "good", _good_manifest())
    _put(runs, "bad", manifest)
    entries = {e.id: e for e in list_runs(runs)}
    assert entries["good"].ok and not entries["bad"].ok
    assert reason in entries["bad"].error
    records = {r["id"]: r for r in run_records(list(entries.values()))}
    assert records["bad"]["status"] == "corrupt" and records["good"]["status"] == "completed"
    assert len(runs_frame(list(entries.values()))) == 2
    assert "corrupt" in format_run_list(list(entries.values()))
    # every command still works on the good run; the bad one is one line naming the field
    assert main(["ls", "--runs-dir", str(runs)]) == 0
    assert main(["ls", "--runs-dir", str(runs), "--json"]) == 0
    assert main(["show", "good", "--runs-dir", str(runs)]) == 0
    capsys.readouterr()
    assert main(["show", "bad", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: corrupt run manifest") and reason in err and "\n" not in err
    import workbench as wb

    assert [r.id for r in wb.open_runs(runs)] == ["good"]


def test_deeply_nested_and_huge_manifests_are_corrupt(tmp_path):
    runs = tmp_path / "runs"
    _put(runs, "good", _good_manifest())
    _put(runs, "nested", "[" * 200_000 + "]" * 200_000)
    big = _put(runs, "big", _good_manifest("big"))
    with open(big / "manifest.json", "r+b") as fh:  # a sparse 32 MiB file: over the manifest limit
        fh.truncate(32 * 2**20)
    entries = {e.id: e for e in list_runs(runs)}
    assert entries["good"].ok
    assert "nested too deeply" in entries["nested"].error
    assert "limit" in entries["big"].error


def test_a_manifest_that_is_a_device_a_fifo_or_a_link_out_is_not_read(tmp_path):
    runs = tmp_path / "runs"
    _put(runs, "good", _good_manifest())
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(_good_manifest("outside")))
    for name, target in (("zero", "/dev/zero"), ("out", str(outside))):
        (runs / name).mkdir()
        (runs / name / "manifest.json").symlink_to(target)
    (runs / "fifo").mkdir()
    os.mkfifo(runs / "fifo" / "manifest.json")
    started = time.monotonic()
    entries = {e.id: e for e in list_runs(runs)}
    assert time.monotonic() - started < 5  # the FIFO did not block
    assert entries["good"].ok
    assert "outside the runs dir" in entries["zero"].error
    assert "outside the runs dir" in entries["out"].error
    assert "not a regular file" in entries["fifo"].error


def test_link_loops_and_links_out_in_the_runs_dir_are_listed_with_their_error(tmp_path, capsys):
    runs = tmp_path / "runs"
    _put(runs, "good", _good_manifest())
    (runs / "loop").symlink_to(runs / "loop")
    elsewhere = _put(tmp_path / "elsewhere", "run", _good_manifest("run"))
    (runs / "linked").symlink_to(elsewhere)
    (runs / "dangling").symlink_to(tmp_path / "nothing")
    entries = {e.id: e for e in list_runs(runs)}
    assert entries["good"].ok
    assert "cannot follow" in entries["loop"].error
    assert "outside the runs dir" in entries["linked"].error
    assert "dangling" not in entries
    assert main(["ls", "--runs-dir", str(runs)]) == 0
    assert "loop" in capsys.readouterr().out


def test_a_link_inside_the_runs_dir_is_followed(tmp_path):
    runs = tmp_path / "runs"
    _put(runs, "good", _good_manifest())
    (runs / "alias").symlink_to(runs / "good")
    assert {e.id for e in list_runs(runs) if e.ok} == {"good", "alias"}


def test_table_and_side_files_linking_out_are_refused(tmp_path):
    runs = tmp_path / "runs"
    writer = RunWriter.create(runs, name="r", config={}, environment={})
    writer.add("timing", {"step": 0, "phase": "forward", "seconds": 0.1})
    writer.flush()
    writer.finish()
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (writer.path / "notes.json").symlink_to(secret)
    part = writer.path / "timing" / "part-00000.parquet"
    moved = tmp_path / "part.parquet"
    part.rename(moved)
    part.symlink_to(moved)
    reader = RunReader(writer.path)
    with pytest.raises(StoreError, match="outside the runs dir"):
        reader.json("notes")
    with pytest.raises(StoreError, match="outside the runs dir"):
        reader.table("timing")


def test_categorical_values_and_required_nulls_are_enforced_on_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    runs = tmp_path / "runs"
    writer = RunWriter.create(runs, name="r", config={}, environment={})
    writer.finish()
    (writer.path / "memory").mkdir()
    pq.write_table(
        pa.table({"step": [0], "layer": [0], "category": ["x"], "bytes": [1], "source": ["cosmic"]}),
        writer.path / "memory" / "part-00000.parquet",
    )
    (writer.path / "timing").mkdir()
    pq.write_table(
        pa.table({"step": [0, None], "phase": ["f", "b"], "seconds": [1.0, 2.0]}),
        writer.path / "timing" / "part-00000.parquet",
    )
    reader = RunReader(writer.path)
    with pytest.raises(StoreError, match="column 'source' holds 'cosmic'; allowed: logical"):
        reader.table("memory")
    with pytest.raises(StoreError, match="required column 'step' holds nulls"):
        reader.table("timing")


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_store_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        writer = RunWriter.create(tmp_path / "runs", name="r", config={}, environment={})
        writer.add("timing", {"step": 0, "phase": "forward", "seconds": 0.1})
        writer.write_json("notes", {"a": 1})
        writer.finish()
    finally:
        os.umask(old)
    files = [p for p in writer.path.rglob("*") if p.is_file()]
    assert len(files) == 3
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_a_deleted_run_dir_stops_the_writer_and_is_not_recreated(tmp_path):
    import shutil

    writer = RunWriter.create(tmp_path / "runs", name="r", config={}, environment={})
    writer.add("timing", {"step": 0, "phase": "forward", "seconds": 0.1})
    shutil.rmtree(writer.path)
    with pytest.raises(StoreError, match="disappeared"):
        writer.flush()
    with pytest.raises(StoreError, match="disappeared"):
        writer.update_summary(a=1)
    assert not writer.path.exists()


def test_a_deleted_run_dir_stops_the_training_run(tmp_path):
    import shutil

    from workbench.config import RunConfig
    from workbench.errors import RunStopped
    from workbench.orchestration.train import train
    from workbench.recorders.base import RecorderBase

    class DeleteRunDir(RecorderBase):
        name = "delete"

        def on_step_end(self, info):  # the run dir vanishes after step 2
            if info.step == 2:
                shutil.rmtree(self.session.writer.path)

    config = RunConfig.from_dict(
        {
            "model": "tiny-llama",
            "method": "lora",
            "runs_dir": str(tmp_path / "runs"),
            "train": {"steps": 6, "batch_size": 2, "max_length": 32, "eval_examples": 0, "flush_every": 3},
        }
    )
    with pytest.raises(RunStopped, match="disappeared"):
        train(config, progress=False, recorders=[DeleteRunDir()])
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_dead_running_run_reads_interrupted_with_a_reason(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(proc.stdout)
    runs = tmp_path / "runs"
    manifest = {**_good_manifest(), "status": "running", "pid": dead_pid, "hostname": os.uname().nodename}
    _put(runs, "good", manifest)
    run = resolve_run(runs, "good")
    assert run.status == "interrupted" and run.status_message == DEAD_RUN_MESSAGE
    assert run_records([run])[0]["error"] == DEAD_RUN_MESSAGE


def test_a_reused_pid_does_not_keep_a_dead_run_running(tmp_path):
    runs = tmp_path / "runs"
    alive = {**_good_manifest(), "status": "running", "pid": os.getpid(), "hostname": os.uname().nodename}
    _put(runs, "mine", {**alive, "process_start": process_start(os.getpid())})
    _put(runs, "reused", {**alive, "process_start": (process_start(os.getpid()) or 0) + 12345})
    assert resolve_run(runs, "mine").status == "running"
    assert resolve_run(runs, "reused").status == "interrupted"


def test_the_writer_records_its_process_start(tmp_path):
    writer = RunWriter.create(tmp_path / "runs", name="r", config={}, environment={})
    assert writer.manifest["process_start"] == process_start(os.getpid())
    assert RunReader(writer.path).status == "running"
    writer.finish()


@pytest.mark.parametrize("name", ["copy of run", "läuft-ü", "-leading-dash", "x" * 150])
def test_copied_and_renamed_run_dirs_open_by_their_directory_name(tmp_path, capsys, name):
    runs = tmp_path / "runs"
    _put(runs, "original", _good_manifest("original"))
    _put(runs, name, _good_manifest("original"))  # a copy keeps the manifest's id
    entries = list_runs(runs)
    ids = [r["id"] for r in run_records(entries)]
    assert sorted(ids) == sorted(["original", name])  # unique: directory names, not manifest ids
    assert resolve_run(runs, name).path.name == name
    assert main(["show", "--runs-dir", str(runs), "--", name]) == 0
    assert name in capsys.readouterr().out


def test_two_copies_with_one_manifest_id_make_a_runs_frame_with_unique_ids(tmp_path):
    runs = tmp_path / "runs"
    _put(runs, "a", _good_manifest("same"))
    _put(runs, "b", _good_manifest("same"))
    frame = runs_frame(list_runs(runs))
    assert frame["id"].is_unique and set(frame["id"]) == {"a", "b"}


def test_a_report_of_every_readable_hostile_manifest_formats(tmp_path):
    """Manifests that pass the schema format without error, whatever optional field they lack."""
    runs = tmp_path / "runs"
    minimal = {**_good_manifest(), "config": {}, "summary": {}, "environment": {}}
    run = RunReader(_put(runs, "minimal", minimal))
    assert "minimal" in format_run_report(run.id, str(run.path), run.summary, status=run.status)
    assert "minimal" in format_run_list(list_runs(runs))


# -- signals: a real training process stopped by SIGTERM / SIGHUP ----------------------------------------

_TRAIN = textwrap.dedent(
    """
    import sys
    from workbench.cli import main
    sys.exit(main(["run", "--model", "tiny-llama", "--method", "lora", "--steps", "100000",
                   "--batch-size", "2", "--max-length", "32", "--runs-dir", sys.argv[1], "--quiet",
                   "--set", "train.eval_examples=0", "--set", "train.flush_every=100000",
                   "--set", "record.grads=false", "--set", "record.saliency=false"]))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_flushes_every_step_and_records_the_signal(tmp_path, signum):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRAIN, str(runs)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until training steps are under way
        time.sleep(0.5)
        entries = list_runs(runs)
        if entries and entries[0].ok and entries[0].reader.manifest["summary"] == {}:
            time.sleep(3)
            break
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert signal.Signals(signum).name in err
    run = list_runs(runs)[0].reader
    assert run.status == "interrupted"
    assert signal.Signals(signum).name in run.status_message
    losses = run.table("metrics").query("name == 'loss'")
    # nothing was flushed before the signal (flush_every is huge): every step came from the final flush
    assert len(losses) >= 1 and list(losses["step"]) == list(range(1, len(losses) + 1))


_DISK_FULL = textwrap.dedent(
    """
    import sys
    import workbench.store.writer as writer
    from workbench.cli import main

    real = writer.atomic_write

    def disk_fills_at_the_first_flush(path, write):
        if path.suffix == ".parquet" or getattr(writer, "full", False):
            writer.full = True
            raise writer.StoreError(f"cannot write run store at {path}: [Errno 28] No space left on device")
        real(path, write)

    writer.atomic_write = disk_fills_at_the_first_flush
    sys.exit(main(["run", "--model", "tiny-llama", "--method", "lora", "--steps", "6", "--batch-size", "2",
                   "--max-length", "32", "--runs-dir", sys.argv[1], "--quiet",
                   "--set", "train.eval_examples=0", "--set", "train.flush_every=2"]))
    """
)


def test_a_full_disk_mid_run_is_one_line_and_the_run_reads_interrupted_with_why(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(runs)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: could not write the recorded rows at step 2") and "No space left" in err
    run = list_runs(runs)[0].reader
    assert run.manifest["status"] == "running"  # the final status could not be written either
    assert run.status == "interrupted" and "full disk" in run.status_message


def test_a_full_disk_while_saving_tensors_is_a_store_error(tmp_path, monkeypatch):
    import safetensors.torch
    import torch
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    writer = RunWriter.create(tmp_path / "runs", name="r", config={}, environment={})
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(StoreError, match="No space left on device"):
        writer.add_tensors("adapter", {"w": torch.ones(2)})
    assert not list(writer.path.glob("*adapter*"))  # no temp file left behind

"""Bad disks and bad directories: clear StoreErrors, no half files, listings that survive corruption."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from workbench.errors import StoreError
from workbench.store import RunReader, RunWriter, list_runs

ROW = {"step": 0, "name": "loss", "value": 1.0}


def _create(runs_dir: Path, **kwargs) -> RunWriter:
    return RunWriter.create(runs_dir, name="err", config={}, environment={}, **kwargs)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_runs_dir_is_a_file(tmp_path):
    target = tmp_path / "runs"
    target.write_text("not a directory")
    with pytest.raises(StoreError, match="runs dir .* is a file"):
        _create(target)
    with pytest.raises(StoreError, match="is a file"):
        list_runs(target)


def test_runs_dir_created_with_parents(tmp_path):
    run = _create(tmp_path / "a" / "b" / "runs")
    assert run.path.parent == tmp_path / "a" / "b" / "runs"


def _create_unprivileged(runs: Path) -> str:
    """Try to create a run in `runs` without root powers; return "ok" or the StoreError's message.

    Root ignores file modes, so as root the attempt runs in a forked child that dropped to uid 65534
    (a fork, not a new interpreter, because the interpreter may live where nobody can read it).
    """

    def attempt() -> str:
        try:
            _create(runs)
        except StoreError as err:
            return str(err)
        except BaseException as err:  # anything else is a bug the parent should see
            return f"{type(err).__name__}: {err}"
        return "ok"

    if os.geteuid() != 0:
        return attempt()
    if not hasattr(os, "fork"):
        pytest.skip("running as root without fork: chmod does not block writes (ENOSPC tests cover it)")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe and never return into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, attempt().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def test_read_only_runs_dir():
    # not tmp_path: its parents are private to root, and the unprivileged child must reach the dir
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        runs = Path(tmp) / "runs"
        runs.mkdir()
        runs.chmod(0o555)
        out = _create_unprivileged(runs)
        runs.chmod(0o755)
        assert out == f"cannot write run store at {runs}: directory is not writable"
        assert list(runs.iterdir()) == []


def test_unreachable_runs_dir(tmp_path):
    if os.geteuid() != 0:  # as a normal user our own 0700 dir is reachable: nothing to test
        pytest.skip("needs root (to drop privileges) to test a parent the writer cannot enter")
    tmp_path.chmod(0o700)
    out = _create_unprivileged(tmp_path / "runs")
    assert out.startswith(f"cannot write run store at {tmp_path / 'runs'}: ") and "Permission denied" in out


def test_disk_full_on_flush_keeps_rows_and_leaves_no_temp(writer, monkeypatch, temp_files):
    writer.add("metrics", ROW)
    monkeypatch.setattr(os, "replace", _enospc)
    with pytest.raises(StoreError, match=r"cannot write run store at .*part-00000\.parquet: .*No space left"):
        writer.flush()
    assert temp_files(writer.path) == []
    assert not list((writer.path / "metrics").glob("*.parquet"))
    assert writer.buffered_rows("metrics") == 1  # kept for a retry
    monkeypatch.undo()
    writer.flush()
    assert len(RunReader(writer.path).table("metrics")) == 1


def test_disk_full_during_write_leaves_no_temp(writer, monkeypatch, temp_files):
    writer.add("metrics", ROW)
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(StoreError, match="No space left"):
        writer.flush()
    assert temp_files(writer.path) == []


def test_disk_full_on_create_leaves_nothing(runs_dir, monkeypatch):
    runs_dir.mkdir()
    monkeypatch.setattr(os, "replace", _enospc)
    with pytest.raises(StoreError, match=r"cannot write run store at .*manifest\.json"):
        _create(runs_dir)
    assert list(runs_dir.iterdir()) == []


def test_disk_full_on_finish_raises_and_side_files_too(writer, monkeypatch, temp_files):
    writer.add("metrics", ROW)
    monkeypatch.setattr(os, "replace", _enospc)
    with pytest.raises(StoreError, match="No space left"):
        writer.finish()
    with pytest.raises(StoreError, match="No space left"):
        writer.update_summary(x=1)
    assert temp_files(writer.path) == []


def _corrupt_manifests() -> dict[str, tuple[str, str]]:
    good = {
        "schema_version": 1, "id": "x", "name": "x", "created": "2025-01-01T00:00:00+00:00",
        "status": "completed", "pid": 1, "hostname": "h", "status_message": None,
        "config": {}, "environment": {}, "summary": {},
    }  # fmt: skip
    return {
        "not-json": ("{oops", "not JSON"),
        "list": ("[]", "expected a JSON object"),
        "missing-keys": (json.dumps({"schema_version": 1}), "missing keys id, name"),
        "newer-version": (
            json.dumps({**good, "schema_version": 99}),
            "schema_version 99 .written by a newer",
        ),
        "bad-status": (json.dumps({**good, "status": "exploded"}), "status must be one of .*got 'exploded'"),
        "bad-pid": (json.dumps({**good, "pid": "12"}), "pid must be an integer, got '12'"),
        "bad-config": (json.dumps({**good, "config": []}), "config must be an object, got \\[\\]"),
    }


@pytest.mark.parametrize("case", list(_corrupt_manifests()))
def test_corrupt_manifest(runs_dir, case):
    text, match = _corrupt_manifests()[case]
    run_dir = runs_dir / case
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(text)
    with pytest.raises(StoreError, match=match) as info:
        RunReader(run_dir)
    assert str(run_dir) in str(info.value)


def test_missing_manifest_and_missing_dir(tmp_path):
    with pytest.raises(StoreError, match="not a run directory"):
        RunReader(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        RunReader(tmp_path / "nope")


def test_corrupt_part_names_the_file(writer):
    writer.add("metrics", ROW)
    writer.flush()
    bad = writer.path / "metrics" / "part-00001.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError, match=r"corrupt part file .*part-00001\.parquet"):
        RunReader(writer.path).table("metrics")


def test_part_with_wrong_types_names_the_file(writer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (writer.path / "timing").mkdir()
    pq.write_table(
        pa.table({"step": ["zero"], "phase": ["x"], "seconds": [1.0]}),
        writer.path / "timing" / "part-00000.parquet",
    )
    with pytest.raises(StoreError, match=r"corrupt part file .*part-00000\.parquet: column 'step'"):
        RunReader(writer.path).table("timing")


def test_corrupt_tensor_and_json_files(writer):
    (writer.path / "sel.safetensors").write_bytes(b"\x00" * 3)
    (writer.path / "info.json").write_text("{nope")
    run = RunReader(writer.path)
    with pytest.raises(StoreError, match=r"corrupt tensor file .*sel\.safetensors"):
        run.tensors("sel")
    with pytest.raises(StoreError, match=r"corrupt JSON file .*info\.json"):
        run.json("info")


def test_listing_survives_corrupt_and_foreign_dirs(runs_dir):
    good = _create(runs_dir)
    good.add("metrics", ROW)
    good.finish()
    (good.path / "metrics" / "part-00001.parquet").write_bytes(b"garbage")  # tables are not read by listing
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "manifest.json").write_text("{")
    (runs_dir / "foreign").mkdir()  # some other directory, no manifest
    (runs_dir / ".hidden").mkdir()
    (runs_dir / "notes.txt").write_text("a plain file")
    entries = list_runs(runs_dir)
    assert [e.id for e in entries] == [good.id, "broken", "foreign"]
    assert entries[0].ok and entries[0].error is None and entries[0].reader.status == "completed"
    assert not entries[1].ok and "not JSON" in entries[1].error
    assert not entries[2].ok and "no manifest.json" in entries[2].error

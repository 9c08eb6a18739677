"""Run ids, listing the runs dir and resolving a run reference."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from workbench.errors import StoreError
from workbench.store import RunWriter, is_valid_run_id, list_runs, resolve_run, sanitize_run_id


def _create(runs_dir: Path, name: str = "idx", **kwargs) -> RunWriter:
    return RunWriter.create(runs_dir, name=name, config={}, environment={}, **kwargs)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../evil", "evil"),
        ("a/b\\c d", "a-b-c-d"),
        ("/etc/passwd", "etc-passwd"),
        (".hidden", "hidden"),
        ("run.v1_ok-2", "run.v1_ok-2"),
        ("ünïcode name", "n-code-name"),
    ],
)
def test_sanitize_run_id(raw, clean):
    assert sanitize_run_id(raw) == clean
    assert is_valid_run_id(clean)


@pytest.mark.parametrize("raw", ["", "..", ".", "/", "../", "-"])
def test_sanitize_rejects_empty_ids(raw):
    with pytest.raises(StoreError, match="invalid run id"):
        sanitize_run_id(raw)


def test_generated_id_format_and_suffix(runs_dir):
    first = _create(runs_dir, name="SAGE / boolq (r=8)")
    second = _create(runs_dir, name="SAGE / boolq (r=8)", run_id=None)
    assert first.id.split("-", 2)[2] == "SAGE-boolq-r-8"
    assert first.id[:8].isdigit() and first.id[9:15].isdigit()
    if second.id.startswith(first.id):  # created within the same second
        assert second.id == first.id + "-2"


def test_explicit_run_id_is_sanitized_and_must_be_free(runs_dir):
    run = _create(runs_dir, run_id="../evil")
    assert run.path == runs_dir / "evil"
    assert not (runs_dir.parent / "evil").exists()
    with pytest.raises(StoreError, match="already exists"):
        _create(runs_dir, run_id="evil")
    with pytest.raises(StoreError, match="invalid run id"):
        _create(runs_dir, run_id="../")


def test_list_runs_sorted_by_created(runs_dir):
    ids = [_create(runs_dir, run_id=f"z{i}").id for i in range(3)]
    ids += [_create(runs_dir, run_id="a-last").id]  # name order differs from creation order
    assert [e.id for e in list_runs(runs_dir)] == ids


def test_list_missing_runs_dir_is_empty(tmp_path):
    assert list_runs(tmp_path / "nothing-here") == []


def test_resolve_run_by_id_prefix_latest_and_path(runs_dir):
    a = _create(runs_dir, run_id="alpha-1")
    b = _create(runs_dir, run_id="beta-1")
    assert resolve_run(runs_dir, "alpha-1").path == a.path
    assert resolve_run(runs_dir, "bet").path == b.path
    assert resolve_run(runs_dir, "latest").path == b.path
    assert resolve_run(runs_dir, b.path).path == b.path  # a Path
    assert resolve_run(runs_dir, str(a.path)).path == a.path  # a string with a separator


def test_resolve_run_unknown_lists_ids(runs_dir):
    _create(runs_dir, run_id="alpha-1")
    _create(runs_dir, run_id="alpha-2")
    with pytest.raises(StoreError, match=r"unknown run 'alphx-1'.*Did you mean 'alpha-1'.*alpha-2, alpha-1"):
        resolve_run(runs_dir, "alphx-1")
    with pytest.raises(StoreError, match="ambiguous.*alpha-1, alpha-2"):
        resolve_run(runs_dir, "alpha")
    with pytest.raises(StoreError, match="has no runs"):
        resolve_run(runs_dir.parent / "empty", "x")


def test_resolve_run_never_escapes_runs_dir(tmp_path, runs_dir, monkeypatch):
    outside = _create(tmp_path, run_id="evil")  # a real run next to runs_dir: runs_dir/../evil
    _create(runs_dir, run_id="inside")
    elsewhere = tmp_path / "a" / "cwd"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # a relative path resolves against the cwd, never against runs_dir
    with pytest.raises(StoreError, match="no run directory at ../evil"):
        resolve_run(runs_dir, "../evil")
    with pytest.raises(StoreError, match="expected a run id, not a path"):
        resolve_run(runs_dir, "../evil", allow_path=False)
    with pytest.raises(StoreError, match="expected a run id, not a path"):
        resolve_run(runs_dir, outside.path, allow_path=False)
    for ref in ("..", "..evil", ""):
        with pytest.raises(StoreError, match="unknown run|expected a run id"):
            resolve_run(runs_dir, ref, allow_path=False)


def test_open_broken_run_gives_its_error(runs_dir):
    (runs_dir / "broken").mkdir(parents=True)
    (runs_dir / "broken" / "manifest.json").write_text("{")
    with pytest.raises(StoreError, match="corrupt run manifest"):
        resolve_run(runs_dir, "broken")


def test_listing_fifty_runs_is_fast(runs_dir):
    for i in range(50):
        run = _create(runs_dir, run_id=f"run-{i:02d}")
        run.update_summary(accuracy=0.5, peak={"logical": 10**9, "allocator": 2 * 10**9})
    best = float("inf")
    for _ in range(3):  # best of three: a timing test should not flake on a busy machine
        start = time.perf_counter()
        entries = list_runs(runs_dir)
        statuses = [e.reader.status for e in entries]
        best = min(best, time.perf_counter() - start)
    assert len(entries) == 50 and set(statuses) == {"running"}
    assert best < 0.1, f"listing 50 runs took {best * 1000:.0f} ms"

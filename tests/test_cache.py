"""fetch_package / fetch_sdist_members with pip replaced by a fake (offline, instant)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from workbench import cache
from workbench.errors import RegistryUnavailable, WorkbenchError

CONTENT = b"pretend wheel"
DIGEST = hashlib.sha256(CONTENT).hexdigest()


class FakePip:
    """Stands in for `python -m pip`: writes files where pip would, records its calls."""

    def __init__(self, returncode: int = 0, files: dict[str, bytes] | None = None, unpacked=None) -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode
        self.files = {"demo-1.0-py3-none-any.whl": CONTENT} if files is None else files
        self.unpacked = unpacked or {}  # member -> bytes, left in TMPDIR like `pip download --no-clean`
        self.stderr = "ERROR: pip said no"

    def __call__(self, args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        dest = Path(args[args.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (dest / name).write_bytes(data)
        for member, data in self.unpacked.items():
            path = tmp / "pip-download-abc" / "demo_123" / member
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return subprocess.CompletedProcess(args, self.returncode, "", self.stderr)


@pytest.fixture
def fake_pip(monkeypatch):
    def install(**kwargs) -> FakePip:
        fake = FakePip(**kwargs)
        monkeypatch.setattr(cache, "_run_pip", fake)
        return fake

    return install


def test_cache_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c"
    assert cache.cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("WORKBENCH_CACHE")
    assert cache.cache_root() == Path.home() / ".cache" / "workbench"


def test_fetch_once_then_cached(fake_pip, tmp_path, capsys):
    fake = fake_pip()
    path = cache.fetch_package("demo", "1.0", DIGEST, size_mb=93, cache_dir=tmp_path)
    assert path == tmp_path / "packages" / "demo-1.0" / "demo-1.0-py3-none-any.whl"
    assert path.read_bytes() == CONTENT
    assert fake.calls[0][:3] == ["download", "--no-deps", "demo==1.0"]
    err = capsys.readouterr().err
    assert f"fetching demo==1.0 from the package registry into {tmp_path} ... (93 MB)" in err
    assert cache.fetch_package("demo", "1.0", DIGEST, cache_dir=tmp_path) == path
    assert len(fake.calls) == 1  # the second call never ran pip
    assert [p.name for p in tmp_path.iterdir()] == ["packages"]  # scratch removed


def test_checksum_mismatch_caches_nothing(fake_pip, tmp_path):
    fake_pip()
    with pytest.raises(WorkbenchError, match="checksum mismatch for demo==1.0"):
        cache.fetch_package("demo", "1.0", "0" * 64, cache_dir=tmp_path)
    assert not (tmp_path / "packages").exists()
    assert list(tmp_path.iterdir()) == []


def test_pip_failure_is_a_clear_error(fake_pip, tmp_path):
    fake_pip(returncode=1, files={})
    with pytest.raises(WorkbenchError, match=r"pip could not download demo==1\.0 \(exit 1\).*pip said no"):
        cache.fetch_package("demo", "1.0", DIGEST, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_sdist_members_from_the_unpacked_tree(fake_pip, tmp_path):
    members = {"demo/tasks/a/task.json": b'{"a": 1}', "demo/tasks/b/task.json": b'{"b": 2}'}
    pins = {m: hashlib.sha256(d).hexdigest() for m, d in members.items()}
    fake = fake_pip(returncode=1, files={}, unpacked={**members, "demo/huge.bin": b"x" * 1000})
    paths = cache.fetch_sdist_members("demo", "1.0", pins, cache_dir=tmp_path)
    for member, data in members.items():
        assert paths[member] == tmp_path / "packages" / "demo-1.0" / member
        assert paths[member].read_bytes() == data
    assert "--no-clean" in fake.calls[0]
    assert [p.name for p in tmp_path.iterdir()] == ["packages"]  # the unpacked tree is gone
    assert cache.fetch_sdist_members("demo", "1.0", pins, cache_dir=tmp_path) == paths
    assert len(fake.calls) == 1


def test_sdist_member_missing_or_wrong(fake_pip, tmp_path):
    fake_pip(returncode=1, files={}, unpacked={"demo/a.json": b"{}"})
    with pytest.raises(WorkbenchError, match="'demo/b.json' not found in the sdist of demo==1.0"):
        cache.fetch_sdist_members("demo", "1.0", {"demo/b.json": "0" * 64}, cache_dir=tmp_path)
    with pytest.raises(WorkbenchError, match="checksum mismatch for demo==1.0:demo/a.json"):
        cache.fetch_sdist_members("demo", "1.0", {"demo/a.json": "0" * 64}, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_version_the_registry_does_not_serve_says_how_to_supply_it(fake_pip, tmp_path):
    fake = fake_pip(returncode=1, files={})
    fake.stderr = (
        "ERROR: Could not find a version that satisfies the requirement demo==1.0 (from versions: 0.0.1)\n"
        "ERROR: No matching distribution found for demo==1.0"
    )
    member = "demo/tasks/a/task.json"
    with pytest.raises(
        RegistryUnavailable, match=r"does not serve demo==1\.0 \(it offers: 0\.0\.1\)"
    ) as info:
        cache.fetch_sdist_members("demo", "1.0", {member: DIGEST}, cache_dir=tmp_path)
    supplied = tmp_path / "packages" / "demo-1.0" / member
    assert str(supplied) in str(info.value) and DIGEST in str(info.value)
    supplied.parent.mkdir(parents=True)
    supplied.write_bytes(CONTENT)  # the pinned file, put there by hand
    assert cache.fetch_sdist_members("demo", "1.0", {member: DIGEST}, cache_dir=tmp_path)[member] == supplied
    supplied.write_bytes(b"something else")
    with pytest.raises(WorkbenchError, match="checksum mismatch"):
        cache.fetch_sdist_members("demo", "1.0", {member: DIGEST}, cache_dir=tmp_path)
    with pytest.raises(RegistryUnavailable, match="its archive in"):
        cache.fetch_package("demo", "1.0", DIGEST, cache_dir=tmp_path)

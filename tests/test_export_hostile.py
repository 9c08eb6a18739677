"""`workbench export` never writes a wrong model: every hostile adapter, edited manifest and bad output
directory is one `error:` line (exit 2) and leaves nothing behind; a good export (and one replacing a
previous export with --force) still works.

One short LoRA run on tiny-llama is trained per module; each test exports a copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from workbench.cli import main
from workbench.config import RunConfig, TrainConfig
from workbench.errors import StoreError
from workbench.model_export import export_model
from workbench.orchestration.train import train
from workbench.store import resolve_run


@pytest.fixture(scope="module")
def trained(tiny_task, tmp_path_factory) -> Path:
    """The directory of one finished 2-step LoRA run on tiny-llama (with adapter.safetensors)."""
    runs = tmp_path_factory.mktemp("hostile-runs")
    config = RunConfig(
        model="tiny-llama",
        task=tiny_task,
        method="lora",
        runs_dir=str(runs),
        method_options={"r": 4},
        train=TrainConfig(steps=2, batch_size=4, max_length=32, eval_examples=0, lr=1e-2),
    )
    return resolve_run(runs, train(config, progress=False).run_id).path


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    """A copy of the trained run in tmp_path/runs, for a test to change."""
    copy = tmp_path / "runs" / trained.name
    shutil.copytree(trained, copy)
    return copy


def export_cli(capsys, run_dir: Path, out, *extra: str) -> tuple[int, str, str]:
    code = main(["export", run_dir.name, "--out", str(out), "--runs-dir", str(run_dir.parent), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for phrase in phrases:
        assert phrase in err, err


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def read_adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter.safetensors"))


def lora_key(state: dict[str, torch.Tensor], part: str) -> str:
    return sorted(k for k in state if f".{part}." in k)[0]


def _empty(state):
    return {}


def _nan(state):
    return {k: torch.full_like(v, float("nan")) for k, v in state.items()}


def _extra_key(state):
    return {**state, "base_model.model.extra.lora_A.weight": torch.zeros(4, 64)}


def _missing_key(state):
    return {k: v for k, v in state.items() if k != lora_key(state, "lora_B")}


def _wrong_shape(state):
    key = lora_key(state, "lora_A")
    return {**state, key: torch.zeros(state[key].shape[0] + 1, state[key].shape[1])}


def _wrong_dtype(state):
    key = lora_key(state, "lora_A")
    return {**state, key: state[key].double()}


def _overflowing(state):
    """Finite tensors whose product (the merged delta B @ A) overflows to inf."""
    return {k: torch.full_like(v, 1e30) for k, v in state.items()}


HOSTILE_ADAPTERS = {
    "empty": (_empty, ["holds no tensors"]),
    "all NaN": (_nan, ["non-finite values"]),
    "extra key": (_extra_key, ["does not fit method 'lora'", "extra.lora_A"]),
    "missing key": (_missing_key, ["does not fit method 'lora'", "missing key", "lora_B"]),
    "wrong shape": (_wrong_shape, ["does not fit method 'lora'", "lora_A"]),
    "wrong dtype": (_wrong_dtype, ["does not fit method 'lora'", "torch.float64"]),
    "overflowing merge": (_overflowing, ["merged model has non-finite weights"]),
}


@pytest.mark.parametrize("case", list(HOSTILE_ADAPTERS))
def test_hostile_adapter_is_one_error_and_writes_nothing(case, run_dir, tmp_path, capsys):
    change, phrases = HOSTILE_ADAPTERS[case]
    save_file(change(read_adapter(run_dir)), str(run_dir / "adapter.safetensors"))
    before = entries(tmp_path)
    code, _, err = export_cli(capsys, run_dir, tmp_path / "exported")
    assert_one_error(code, err, run_dir.name, *phrases)
    assert entries(tmp_path) == before  # no export, no hidden temporary directory


def test_edited_manifest_model_is_refused(run_dir, tmp_path, capsys):
    """config.model edited after the run: the adapter would be merged onto another base model."""
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    recorded = manifest["environment"]["inputs"]["model_sha256"]
    manifest["config"]["model"] = "tiny-mistral"  # same sizes as tiny-llama: the adapter would fit
    manifest_path.write_text(json.dumps(manifest))
    before = entries(tmp_path)
    code, _, err = export_cli(capsys, run_dir, tmp_path / "exported")
    assert_one_error(code, err, recorded, "'tiny-mistral'", "sha256")
    assert entries(tmp_path) == before


def test_run_without_recorded_model_hash_still_exports(run_dir, tmp_path):
    """Older runs recorded no inputs: nothing to compare, the export goes ahead."""
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["environment"]["inputs"] = None
    manifest_path.write_text(json.dumps(manifest))
    out = export_model(resolve_run(run_dir.parent, run_dir.name), tmp_path / "exported")
    assert (out / "config.json").is_file()


def test_good_export_loads_and_force_replaces_it(run_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "exported"
    code, stdout, err = export_cli(capsys, run_dir, out)
    assert code == 0, err
    assert "exported" in stdout and (out / "config.json").is_file()
    AutoModelForCausalLM.from_pretrained(out)
    capsys.readouterr()  # its progress bar
    first = entries(out)
    (out / "adapter_config.json").write_text("{}")  # a stale file a peft loader would pick up

    code, _, err = export_cli(capsys, run_dir, out)  # not empty, no --force
    assert_one_error(code, err, "not empty", "--force")
    assert (out / "adapter_config.json").is_file()

    code, _, err = export_cli(capsys, run_dir, out, "--force")
    assert code == 0, err
    assert entries(out) == first  # the stale file went with the old export
    assert entries(tmp_path) == {"runs", "exported"}  # no temporary or moved-aside directory left
    AutoModelForCausalLM.from_pretrained(out)


def test_non_empty_out_without_force_is_untouched(run_dir, tmp_path, capsys):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "adapter_config.json").write_text('{"stale": true}')
    code, _, err = export_cli(capsys, run_dir, out)
    assert_one_error(code, err, "not empty", "--force")
    assert entries(out) == {"adapter_config.json"} and entries(tmp_path) == {"runs", "exported"}


def test_force_refuses_a_directory_with_subdirectories(run_dir, tmp_path, capsys):
    out = tmp_path / "home"
    (out / "projects").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    code, _, err = export_cli(capsys, run_dir, out, "--force")
    assert_one_error(code, err, "subdirectories", "projects")
    assert entries(out) == {"projects", "notes.txt"} and entries(tmp_path) == {"runs", "home"}


def test_out_that_is_a_file(run_dir, tmp_path, capsys):
    out = tmp_path / "model.bin"
    out.write_text("not a directory")
    code, _, err = export_cli(capsys, run_dir, out, "--force")
    assert_one_error(code, err, "is a file")
    assert out.read_text() == "not a directory" and entries(tmp_path) == {"runs", "model.bin"}


def test_unwritable_out(run_dir, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = export_cli(capsys, run_dir, locked / "exported")
        assert_one_error(code, err, "not writable")
        assert entries(locked) == set()
    finally:
        locked.chmod(0o700)


def test_empty_out(run_dir, capsys):
    code, _, err = export_cli(capsys, run_dir, "")
    assert_one_error(code, err, "--out")


def test_failed_save_leaves_the_previous_export(run_dir, tmp_path, monkeypatch):
    """A write failing midway (disk full) leaves neither a half-written export nor a temporary directory,
    and a previous export replaced with force stays as it was."""
    from transformers import PreTrainedTokenizerBase

    run = resolve_run(run_dir.parent, run_dir.name)
    out = export_model(run, tmp_path / "exported")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full)
    with pytest.raises(StoreError, match="No space left"):
        export_model(run, out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert entries(tmp_path) == {"runs", "exported"}

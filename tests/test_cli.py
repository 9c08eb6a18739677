"""The `workbench` CLI: a tiny run end to end, listing, showing, and every bad input as one line."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tiny_run(capsys, task: str, runs_dir, *extra: str) -> tuple[int, str, str]:
    """`workbench run` on tiny-llama and `task`, quiet, into `runs_dir`, with `extra` flags."""
    return run_cli(
        capsys, "run", "--model", "tiny-llama", "--task", task, "--runs-dir", str(runs_dir), "--quiet", *extra
    )


def test_run_ls_show(tiny_task, tmp_path, capsys):
    runs = str(tmp_path / "runs")
    code, out, _ = tiny_run(
        capsys,
        tiny_task,
        runs,
        *("--method", "lora", "--steps", "2", "--max-length", "32", "--name", "cli test"),
        *("--set", "method.r=4", "--set", "train.eval_examples=4"),
    )
    assert code == 0
    assert "accuracy before" in out and "saved activations" in out and "median step time" in out
    assert "(95% intervals, 4 examples)" in out  # each accuracy with its interval: "50.0% [15.0, 85.0]"
    code, out, _ = run_cli(capsys, "ls", "--runs-dir", runs, "--json")
    (record,) = json.loads(out)
    assert record["status"] == "completed" and record["method"] == "lora" and record["name"] == "cli test"
    code, out, _ = run_cli(capsys, "show", record["id"][:12], "--runs-dir", runs)
    assert code == 0 and "'r': 4" in out


def test_ls_empty_dir_says_how_to_make_a_run(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "ls", "--runs-dir", str(tmp_path / "none"))
    assert code == 0 and "workbench run" in out


@pytest.fixture
def bad_config(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nsteps = 3")
    return str(path)


BAD_INPUTS = {
    "unknown model alias": (["--model", "smollm3"], "unknown model 'smollm3'"),
    "missing model path": (["--model", "./no/such/dir"], "does not exist"),
    "unknown task": (["--task", "polarityy"], "unknown task 'polarityy'"),
    "unknown method": (["--method", "sagee"], "unknown method 'sagee'"),
    "unknown --set key": (["--set", "train.stepz=3"], "unknown key(s) train.stepz"),
    "wrong value type": (["--set", "train.batch_size=big"], "TrainConfig.batch_size must be int"),
    "steps < 1": (["--steps", "0"], "train.steps must be >= 1"),
    "batch size < 1": (["--batch-size", "0"], "train.batch_size must be >= 1"),
    "max length shorter than the answer": (["--max-length", "4"], "max_length"),
    "lora rank above the layer width": (["--set", "method.r=4096"], "exceeds the width"),
    "unknown attention kernel": (["--set", "train.attn=flash"], "train.attn must be one of sdpa, eager"),
    "velora option out of range": (["--method", "velora", "--set", "method.num_groups=0"], "num_groups"),
    "velora groups above the width": (
        ["--method", "velora", "--set", "method.num_groups=100000"],
        "num_groups=100000 exceeds",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_error_and_writes_nothing(case, tiny_task, tmp_path, capsys):
    extra, message = BAD_INPUTS[case]
    runs = tmp_path / "runs"
    code, out, err = tiny_run(capsys, tiny_task, runs, *extra)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not runs.exists() or not any(runs.iterdir())


def test_unreadable_config_file(bad_config, tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--config", bad_config, "--runs-dir", str(tmp_path / "r"))
    assert code == 2 and "cannot read config file" in err


def test_runs_dir_that_is_a_file(tiny_task, tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.write_text("not a directory")
    code, _, err = tiny_run(capsys, tiny_task, runs, "--steps", "1")
    assert code == 2 and "is a file" in err
    assert runs.read_text() == "not a directory"


@pytest.mark.parametrize("method", ["lora", "full"])
def test_export_round_trip(method, tiny_task, tmp_path, capsys):
    """The exported model gives the trained model's logits, and they differ from the base model's."""
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.config import RunConfig
    from workbench.methods import build_method
    from workbench.models import load_model
    from workbench.store import resolve_run

    runs = str(tmp_path / "runs")
    code, _, _ = tiny_run(
        capsys,
        tiny_task,
        runs,
        *("--method", method, "--steps", "3", "--lr", "0.01", "--max-length", "32"),
        *("--set", "train.eval_examples=0"),
    )
    assert code == 0
    run = resolve_run(runs, "latest")
    code, out, _ = run_cli(capsys, "export", run.id, "--out", str(tmp_path / "exported"), "--runs-dir", runs)
    assert code == 0, out
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()
    config = RunConfig.from_dict(run.config)
    loaded = load_model("tiny-llama")
    base_logits = loaded.model(torch.arange(3, 40)[None]).logits
    trained = build_method(config.method, config.method_options)
    trained.restore(loaded.model, loaded.anatomy, run.tensors("adapter"))
    ids = torch.arange(3, 40)[None]
    with torch.no_grad():
        expected = loaded.model(ids).logits
        got = exported(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, base_logits.detach(), atol=1e-4)

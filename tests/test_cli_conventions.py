"""CLI conventions (issue 17, part 6): `--version`, `--json` on every command that prints a table or a
report, exit codes, and `--quiet` silencing every progress bar (model loading included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from workbench import cli


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("workbench ")


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 done" in out and "2 a configuration" in out and "143 SIGTERM" in out


def test_usage_errors_keep_argparse_code_and_config_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--steps", "many"])
    assert info.value.code == 2  # argparse's own usage error
    assert "invalid int value: 'many'" in capsys.readouterr().err
    assert cli.main(["run", "--method", "nope", "--runs-dir", "x"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown method 'nope'")  # one line


def test_every_table_command_prints_json(tiny_task, tmp_path, capsys):
    runs = tmp_path / "runs"
    base = ["--model", "tiny-llama", "--task", tiny_task, "--runs-dir", str(runs), "--quiet", "--json"]
    train = ["--steps", "1", "--batch-size", "2", "--max-length", "32", "--set", "train.eval_examples=4"]
    assert cli.main(["run", "--method", "lora", *base, *train]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["status"] == "completed" and "accuracy_after" in run["summary"]
    sweep_args = ["--lengths", "16", "--batch-sizes", "1,2"]
    assert cli.main(["memory-sweep", "--method", "lora", *base, *sweep_args]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert len(sweep["sweep"]) >= 2 and {"length", "batch_size", "bytes"} <= set(sweep["sweep"][0])
    assert cli.main(["ls", "--runs-dir", str(runs), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert cli.main(["show", run["id"], "--runs-dir", str(runs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "completed"
    assert cli.main(["figures", "--list", "--json"]) == 0
    assert "loss" in json.loads(capsys.readouterr().out)
    grid = tmp_path / "sweep.toml"
    grid.write_text(
        f'name = "j"\nmodel = "tiny-llama"\ntask = "{tiny_task}"\nruns_dir = "{runs}"\n'
        "[train]\nsteps = 1\nbatch_size = 2\nmax_length = 32\neval_examples = 4\n[methods.lora]\nr = [2]\n"
    )
    assert cli.main(["sweep", "--config", str(grid), "--quiet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["status"] == "completed"


@pytest.mark.real_model
def test_quiet_silences_every_progress_bar_model_loading_included(tmp_path):
    """Without --quiet the run draws bars (and transformers' "Loading weights" where it loads a
    checkpoint); with it, stderr stays empty."""
    command = [
        sys.executable, "-m", "workbench", "run", "--model", "smollm2-135m", "--method", "lora",
        "--steps", "1", "--batch-size", "1", "--max-length", "32", "--set", "train.eval_examples=2",
        "--runs-dir", str(tmp_path / "runs"), "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""
    loud = subprocess.run(
        command[:-1], capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert "it/s" in loud.stderr  # without --quiet there are bars to silence

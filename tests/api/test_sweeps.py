"""Grid sweeps (workbench.orchestration.sweeps): expansion, resuming an interrupted run, failures, CLI."""

from __future__ import annotations

import json
import math

import pytest

import workbench.orchestration.distributed as loss_module  # the loop's loss (single_process)
from workbench import cli
from workbench.errors import ConfigError
from workbench.orchestration.sweeps import expand, parse_grid, run_grid, run_key
from workbench.store import list_runs


def grid(task: str, **extra) -> dict:
    return {
        "name": "g",
        "model": "tiny-llama",
        "task": task,
        "train": {"steps": 3, "batch_size": 4, "eval_examples": 4, "flush_every": 1},
        "record": {"saliency": False, "grads": False},
        "methods": {"lora": {"r": [2, 4]}},
        **extra,
    }


def test_grid_expands_methods_options_and_seeds():
    points = expand(
        parse_grid(
            {
                "name": "s",
                "seeds": [0, 1],
                "train": {"steps": 2, "lr": [1e-4, 1e-3]},
                "methods": {
                    "lora": {"r": [4, 8]},
                    "full": {"train": {"lr": 2e-5}},
                    "sage-random": {"method": "sage", "metric": "random"},
                },
            }
        )
    )
    names = [p.name for p in points]
    assert len(points) == 2 * 2 * 2 + 2 + 2 * 2  # lora: lr x r x seed; full: seed; sage-random: lr x seed
    assert names[0] == "s-lora lr=0.0001 r=4 seed=0"
    assert "s-full seed=1" in names and "s-sage-random lr=0.001 seed=0" in names
    full = next(p for p in points if p.label == "full")
    assert full.config().train.lr == 2e-5  # the method's own train table wins
    sage = next(p for p in points if p.label == "sage-random")
    assert sage.config().method == "sage" and sage.config().method_options.metric == "random"
    assert len({p.key for p in points}) == len(points)
    assert expand(parse_grid({"methods": ["lora", "full"]}))[1].name == "sweep-full"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"methods": ["lora"], "stepz": 3}, "unknown key\\(s\\) stepz"),
        ({"train": {"steps": 3}}, "names no methods"),
        ({"methods": {"lora": {"tau": [0.5]}}}, "point 'sweep-lora': unknown key\\(s\\) method.tau"),
        ({"methods": ["lora"], "train": {"steps": [1, 0]}}, "train.steps must be >= 1"),
        ({"methods": ["lora"], "seeds": "x"}, "seeds must be a list of integers"),
    ],
)
def test_bad_grids_are_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid(data)


def test_each_point_is_validated_once(monkeypatch):
    from workbench.config import RunConfig

    calls = []
    real = RunConfig.from_dict.__func__
    monkeypatch.setattr(
        RunConfig, "from_dict", classmethod(lambda cls, data: calls.append(1) or real(cls, data))
    )
    parsed = parse_grid({"methods": {"lora": {"r": [2, 4]}, "full": {}}})
    points = expand(parsed) + expand(parsed)  # the grid keeps its validated points
    assert [p.config("elsewhere").runs_dir for p in points] == ["elsewhere"] * 6 and all(
        p.key for p in points
    )
    assert len(calls) == 3  # one per point: parsing validated them, nothing later does it again


def test_run_key_ignores_name_and_runs_dir_only():
    (a, b) = expand(parse_grid({"name": "x", "methods": {"lora": {"r": [2, 4]}}}))
    renamed = {**a.config("elsewhere").to_dict(), "name": "other"}
    assert run_key(renamed) == a.key != b.key


def test_sweep_resumes_after_an_interrupted_run(tiny_task, tmp_path, monkeypatch):
    real = loss_module.answer_loss
    calls = {"n": 0}

    def interrupt_in_the_second_run(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:  # first run: 3 steps; second run: its 2nd step
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(loss_module, "answer_loss", interrupt_in_the_second_run)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid(tiny_task), tmp_path, progress=False)
    statuses = sorted(e.reader.status for e in list_runs(tmp_path))
    assert statuses == ["completed", "interrupted"]

    monkeypatch.setattr(loss_module, "answer_loss", real)
    result = run_grid(grid(tiny_task), tmp_path, progress=False)
    assert [o.action for o in result.outcomes] == ["reused", "ran"]
    assert [r.status for r in result.runs] == ["completed", "completed"]
    assert len(list_runs(tmp_path)) == 3  # the interrupted run stays, marked

    again = run_grid(grid(tiny_task), tmp_path, progress=False)
    assert [o.action for o in again.outcomes] == ["reused", "reused"]
    assert [r.id for r in again.runs] == [r.id for r in result.runs]
    changed = run_grid(grid(tiny_task, name="renamed"), tmp_path, progress=False)
    assert [o.action for o in changed.outcomes] == ["reused", "reused"]  # names do not matter, settings do


def test_a_failed_run_is_reported_and_the_sweep_goes_on(tiny_task, tmp_path, monkeypatch, capsys):
    real = loss_module.answer_loss
    monkeypatch.setattr(loss_module, "answer_loss", lambda model, batch: real(model, batch) * math.nan)
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'# workbench sweep --config sweep.toml\nname = "nan"\nmodel = "tiny-llama"\ntask = "{tiny_task}"\n'
        "methods = ['lora', 'full']\n[train]\nsteps = 2\nbatch_size = 4\neval_examples = 4\n"
    )
    code = cli.main(["sweep", "--config", str(path), "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.count(" failed ") >= 2 and "loss became nan" in out and "0 ran, 0 reused, 2 failed" in out
    assert {e.reader.status for e in list_runs(tmp_path / "runs")} == {"failed"}


def test_sweep_command_prints_a_summary_and_resumes(tiny_task, tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'name = "cli"\nmodel = "tiny-llama"\ntask = "{tiny_task}"\nruns_dir = "{tmp_path / "runs"}"\n'
        "[train]\nsteps = 2\nbatch_size = 4\neval_examples = 4\n[record]\nsaliency = false\n"
        "[methods.lora]\nr = [2, 4]\n"
    )
    assert cli.main(["sweep", "--config", str(path), "--quiet"]) == 0
    first = capsys.readouterr().out
    assert "cli-lora r=2" in first and "cli-lora r=4" in first and "2 ran, 0 reused, 0 failed" in first
    assert "saved act." in first and "MiB" in first
    assert cli.main(["sweep", "--config", str(path), "--quiet"]) == 0
    assert "0 ran, 2 reused, 0 failed" in capsys.readouterr().out


def test_a_point_reruns_when_its_data_file_content_changes(tmp_path, make_task):
    task = make_task(tmp_path / "task.jsonl")
    one = {**grid(str(task)), "methods": ["lora"]}
    first = run_grid(one, tmp_path / "runs", progress=False)
    assert [o.action for o in first.outcomes] == ["ran"]
    assert [o.action for o in run_grid(one, tmp_path / "runs", progress=False).outcomes] == ["reused"]
    # the same path, every label swapped: a different task, so the point runs again
    swap = {" red": " blue", " blue": " red"}
    rows = [json.loads(line) for line in task.read_text().splitlines()]
    task.write_text("".join(json.dumps({**r, "answer": swap[r["answer"]]}) + "\n" for r in rows))
    again = run_grid(one, tmp_path / "runs", progress=False)
    assert [o.action for o in again.outcomes] == ["ran"]
    inputs = [r.environment["inputs"] for r in (first.runs[0], again.runs[0])]
    assert inputs[0]["task_sha256"] != inputs[1]["task_sha256"]
    assert inputs[0]["model_sha256"] == inputs[1]["model_sha256"]


def test_a_sweep_over_seeds_prints_their_means(tiny_task, tmp_path):
    from workbench.orchestration.sweeps import format_summary

    result = run_grid({**grid(tiny_task), "methods": ["lora"], "seeds": [0, 1]}, tmp_path, progress=False)
    text = format_summary(result)
    assert "means over seeds (± 95% half-width):" in text
    line = text.split("means over seeds")[1].splitlines()[2]
    assert (
        line.split()[:2] == ["g-lora", "2"] and line.count("±") >= 2
    )  # two seeds, an interval on each figure

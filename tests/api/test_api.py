"""The Python API (workbench.api, `import workbench as wb`): a round trip on tiny-llama and the rule
that routes keyword options to train / record / method settings."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import workbench as wb
from workbench.errors import ConfigError


def test_run_round_trip(tiny_task, tmp_path):
    run = wb.run(
        model="tiny-llama",
        task=tiny_task,
        method="lora",
        runs_dir=str(tmp_path),
        steps=2,
        eval_examples=8,
        r=4,
        saliency=False,
        progress=False,
    )
    assert isinstance(run, wb.Run) and run.status == "completed"
    assert run.config["method_options"]["r"] == 4 and run.config["train"]["steps"] == 2
    assert run.config["record"]["saliency"] is False
    assert {"metrics", "memory", "grads", "timing"} <= set(run.tables)
    assert "saliency" not in run.tables
    loss = run.tables["metrics"].query("name == 'loss'")
    assert isinstance(loss, pd.DataFrame) and list(loss["step"]) == [1, 2]
    assert run.summary["trainable_parameters"] > 0
    assert run.path.parent == tmp_path and run.id == run.path.name

    again = wb.open_run(run.id, tmp_path)
    assert again.id == run.id and again.summary == run.summary
    assert [r.id for r in wb.open_runs(tmp_path, method="lora", status="completed")] == [run.id]
    assert wb.open_runs(tmp_path, method=["sage", "smt"]) == []
    assert [stem for stem, _ in run.figures("loss")] == [f"loss-{run.id}"]  # run ids in every file name


def test_options_are_routed_by_name():
    config = wb.run_config(method="sage", steps=3, lr=1e-3, tau=0.8, saliency_every=1, name="x")
    assert (config.train.steps, config.train.lr, config.name) == (3, 1e-3, "x")
    assert config.method_options.tau == 0.8 and config.record.saliency_every == 1


def test_explicit_sections_and_config_files(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "tiny-llama"\n[train]\nsteps = 7\n[method]\nname = "lora"\nr = 2\n')
    config = wb.run_config(config=path, train={"batch_size": 2}, alpha=4.0)
    assert (config.model, config.train.steps, config.train.batch_size) == ("tiny-llama", 7, 2)
    assert (config.method_options.r, config.method_options.alpha) == (2, 4.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stepz": 3}, "unknown option 'stepz' for method 'lora'. Did you mean 'steps'?"),
        ({"tau": 0.5}, "unknown option 'tau' for method 'lora'"),  # a SAGE option on LoRA
        ({"steps": 3, "train": {"steps": 4}}, "option 'steps' is given twice"),
        ({"method": "nope"}, "unknown method 'nope'"),
    ],
)
def test_bad_options_are_one_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        wb.run_config(**kwargs)


def test_an_option_two_sections_share_is_ambiguous(monkeypatch):
    import workbench.api as api

    real = api.option_sections
    monkeypatch.setattr(api, "option_sections", lambda method: {**real(method), "record": ("steps",)})
    with pytest.raises(ConfigError, match="'steps' is ambiguous: both train and record have it"):
        api.run_config(steps=3)
    assert api.run_config(train={"steps": 3}).train.steps == 3


def test_import_is_cheap_and_names_resolve():
    code = "import sys, workbench as wb; wb.__doc__; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    import workbench.figures as wf
    import workbench.model_export
    import workbench.orchestration.sweeps  # noqa: F401  (a module of that name must not shadow the function)

    assert callable(wb.sweep) and wb.tradeoff is wf.tradeoff and wb.figures is wf
    assert wb.model_export is workbench.model_export and callable(wb.export_figure)
    assert set(wb.figure_kinds()) >= {"tradeoff", "saliency_heatmap", "block_grid", "memory_sweep"}
    with pytest.raises(AttributeError):
        wb.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    "call",
    [
        lambda wb, d: wb.open_runs(123),
        lambda wb, d: wb.open_runs(""),
        lambda wb, d: wb.open_run(5, d),
        lambda wb, d: wb.open_run(None, d),
        lambda wb, d: wb.sweep(None),
        lambda wb, d: wb.runs_frame("abc"),
        lambda wb, d: wb.runs_frame(["abc"]),
        lambda wb, d: wb.run(method=["lora"], runs_dir=str(d)),
    ],
    ids=["open_runs-int", "open_runs-empty", "open_run-int", "open_run-none", "sweep-none", "frame-str",
         "frame-of-str", "run-method-list"],
)  # fmt: skip
def test_wrongly_typed_api_arguments_are_one_workbench_error(call, tmp_path):
    """Issue 20: these raised TypeError / AttributeError / 'unhashable type'."""
    import workbench as wb
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError) as info:
        call(wb, tmp_path)
    assert "\n" not in str(info.value)

"""One case matrix: every registered method through the same generic checks on tiny-llama.

The methods and their small options (`tiny_options`: every selection phase runs in a second on
tiny-llama, hidden 64) come from the registry alone.

Method-specific exactness tests live beside this file (test_sage*, test_smt*, test_spsft*).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.config import RunConfig, TrainConfig
from workbench.methods import METHODS, build_method
from workbench.models import load_model
from workbench.orchestration.train import train
from workbench.store import resolve_run


@pytest.fixture(scope="module")
def runs(tiny_task, tmp_path_factory):
    """(runs dir, run_of(name)): one short real run per method, trained on first use, in one runs dir."""
    runs_dir = tmp_path_factory.mktemp("matrix")
    results = {}

    def run_of(name: str):
        if name not in results:
            config = RunConfig(
                model="tiny-llama",
                task=tiny_task,
                method=name,
                runs_dir=str(runs_dir),
                method_options=dict(METHODS.get(name).tiny_options),
                train=TrainConfig(steps=3, batch_size=4, max_length=32, eval_examples=4, lr=1e-2),
            )
            results[name] = train(config, progress=False)
        return results[name]

    return runs_dir, run_of


@pytest.mark.parametrize("name", METHODS.names())
def test_run_completes_and_records(runs, name):
    runs_dir, run_of = runs
    run = resolve_run(runs_dir, run_of(name).run_id)
    assert run.status == "completed"
    summary = run.summary
    assert 0 < summary["trainable_parameters"] <= summary["total_parameters"]
    assert summary["memory_peak_bytes"]["saved_activations"] > 0
    assert len(run.table("metrics").query("name == 'loss'")) == 3
    resolved = summary["method_resolved"]  # what the options came to on this model
    if name == "smt":  # tiny_options: block 16, 6 blocks over q / k / v
        assert resolved["block_size"] == 16 and sum(resolved["blocks"].values()) == 6
    elif name == "spsft":  # rank 4 on every target
        assert resolved["rows"] and set(resolved["rows"].values()) == {4}
    else:
        assert resolved == {}


@pytest.mark.parametrize("name", METHODS.names())
def test_export_reproduces_the_trained_model(runs, name, tmp_path):
    """restore(adapter) + merge == the exported model reloaded by transformers; and it differs from base."""
    runs_dir, run_of = runs
    run = resolve_run(runs_dir, run_of(name).run_id)
    config = RunConfig.from_dict(run.config)
    loaded = load_model("tiny-llama")
    ids = torch.arange(3, 30)[None]
    with torch.no_grad():
        base = loaded.model(ids).logits
    method = build_method(config.method, config.method_options)
    method.restore(loaded.model, loaded.anatomy, run.tensors("adapter"))
    merged = method.merge()
    merged.save_pretrained(tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        trained = merged.eval()(ids).logits
        again = reloaded(ids).logits
    torch.testing.assert_close(again, trained, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(trained, base, atol=1e-5), "training changed nothing"


@pytest.mark.parametrize("name", METHODS.names())
def test_bad_option_names_the_method_field(name):
    with pytest.raises(Exception, match="unknown key"):
        RunConfig(method=name, method_options={"no_such_option": 1})

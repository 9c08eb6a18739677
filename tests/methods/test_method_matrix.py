"""One case matrix: every registered method through the same generic checks on tiny-llama, and on the
other tiny models every method that applies there (its `requires` against the model's anatomy).

The methods and their small options (`tiny_options`: every selection phase runs in a second on
tiny-llama, hidden 64) come from the registry alone. The other models: tiny-qwen3, tiny-gemma2 and
tiny-olmo2 (the LLaMA layout in its other block styles: every method) and tiny-gpt2 (no LLaMA layout:
LoRA-based and full fine-tuning; the others refuse it before anything is written).

Method-specific exactness tests live beside this file (test_sage*, test_smt*, test_spsft*).
"""

from __future__ import annotations

import functools

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.config import RunConfig, TrainConfig
from workbench.errors import ConfigError
from workbench.methods import METHODS, build_method
from workbench.methods.base import requirements
from workbench.models import load_model
from workbench.models.anatomy import ModelAnatomy, anatomy_of
from workbench.models.tiny import TINY_MODEL_TYPES, tiny_model
from workbench.orchestration.train import train
from workbench.store import list_runs, resolve_run
from workbench.store.summary import run_record

OTHER_MODELS = ("tiny-qwen3", "tiny-gemma2", "tiny-olmo2", "tiny-gpt2")


@functools.cache
def _anatomy(model: str) -> ModelAnatomy:
    return anatomy_of(tiny_model(TINY_MODEL_TYPES[model]))


def applies(model: str, name: str) -> bool:
    return _anatomy(model).has(*requirements(METHODS.get(name)))


OTHER_CASES = [(m, n) for m in OTHER_MODELS for n in METHODS.names() if applies(m, n)]
REFUSED_ON_GPT2 = [n for n in METHODS.names() if not applies("tiny-gpt2", n)]


def run_config(model: str, name: str, task: str, runs_dir) -> RunConfig:
    """A 3-step run of method `name` with its tiny options (eager attention: Gemma 2 has no sdpa)."""
    return RunConfig(
        model=model,
        task=task,
        method=name,
        runs_dir=str(runs_dir),
        method_options=dict(METHODS.get(name).tiny_options),
        train=TrainConfig(
            steps=3,
            batch_size=4,
            max_length=32,
            eval_examples=4,
            lr=1e-2,
            **({} if model == "tiny-llama" else {"attn": "eager"}),
        ),
    )


@pytest.fixture(scope="module")
def runs(tiny_task, tmp_path_factory):
    """(runs dir, run_of(name)): one short real run per method, trained on first use, in one runs dir."""
    runs_dir = tmp_path_factory.mktemp("matrix")
    results = {}

    def run_of(name: str):
        if name not in results:
            results[name] = train(run_config("tiny-llama", name, tiny_task, runs_dir), progress=False)
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
def test_every_method_trains_on_a_generative_task(name, tiny_generative_task, tmp_path):
    """Generative fine-tuning: the loss on every answer token (and its stop), selection phases (SMT's
    warm-up, SPSFT's importance) on that same loss, evaluation by greedy generation and exact match."""
    result = train(run_config("tiny-llama", name, tiny_generative_task, tmp_path), progress=False)
    run = resolve_run(tmp_path, result.run_id)
    assert run.status == "completed" and run.summary["eval_metric"] == "exact_match"
    metrics = run.table("metrics")
    assert set(metrics.query("split == 'eval'")["name"]) == {
        "exact_match",
        "exact_match_low",
        "exact_match_high",
        "answer_loglik_per_token",
    }
    predictions = run.table("predictions")
    assert len(predictions) == 8 and predictions["generated"].notna().all()  # 4 examples, before and after
    assert predictions["label"].isna().all() and predictions["predicted"].isna().all()
    losses = metrics.query("name == 'loss'")["value"]
    assert len(losses) == 3 and losses.notna().all()
    if name in ("smt", "spsft"):
        assert run.summary["method_resolved"] and run_record(run)["selection_peak_bytes"] > 0


@pytest.mark.parametrize("name", METHODS.names())
def test_export_reproduces_the_trained_model(runs, name, tmp_path):
    """restore(adapter) + merge == the exported model reloaded by transformers; and it differs from base."""
    runs_dir, run_of = runs
    check_export(resolve_run(runs_dir, run_of(name).run_id), "tiny-llama", tmp_path)


def check_export(run, model: str, tmp_path, **reload) -> None:
    config = RunConfig.from_dict(run.config)
    loaded = load_model(model)
    ids = torch.arange(3, 30)[None]
    with torch.no_grad():
        base = loaded.model(ids).logits
    method = build_method(config.method, config.method_options)
    method.restore(loaded.model, loaded.anatomy, run.tensors("adapter"))
    merged = method.merge()
    merged.save_pretrained(tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m", **reload).eval()
    with torch.no_grad():
        trained = merged.eval()(ids).logits
        again = reloaded(ids).logits
    torch.testing.assert_close(again, trained, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(trained, base, atol=1e-5), "training changed nothing"


@pytest.mark.parametrize("model,name", OTHER_CASES)
def test_other_models_train_record_and_export(model, name, tiny_task, tmp_path):
    """Every method that applies trains, records and exports on the other block styles and on GPT-2."""
    result = train(run_config(model, name, tiny_task, tmp_path / "runs"), progress=False)
    run = resolve_run(tmp_path / "runs", result.run_id)
    assert run.status == "completed"
    summary = run.summary
    assert 0 < summary["trainable_parameters"] <= summary["total_parameters"]
    assert len(run.table("metrics").query("name == 'loss'")) == 3
    saved = run.table("memory").query("category == 'saved_activations' and phase == 'train'")
    assert set(saved.query("layer >= 0")["layer"]) == {0, 1, 2, 3}  # attributed to each block
    if model == "tiny-gpt2":
        assert "off" in summary["saliency_note"] and "saliency_source" not in summary
        if name != "full":  # LoRA-based: peft's default modules for GPT-2
            assert summary["method_resolved"] == {"target_modules": ["c_attn"]}
    else:
        assert summary["saliency_source"] in ("method", "observed (what SAGE would choose)")
    check_export(run, model, tmp_path, attn_implementation="eager")


@pytest.mark.parametrize("name", REFUSED_ON_GPT2)
def test_methods_needing_the_llama_layout_refuse_gpt2_before_writing(name, tiny_task, tmp_path):
    config = run_config("tiny-gpt2", name, tiny_task, tmp_path / "runs")
    with pytest.raises(
        ConfigError, match=f"^{name} needs the LLaMA-family layout, which this gpt2 model lacks"
    ):
        train(config, progress=False)
    assert not list_runs(tmp_path / "runs")


@pytest.mark.parametrize("name", METHODS.names())
def test_bad_option_names_the_method_field(name):
    with pytest.raises(Exception, match="unknown key"):
        RunConfig(method=name, method_options={"no_such_option": 1})

"""The fidelity recorder: exact where it must be, coverage as defined, training untouched, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from recorder_helpers import GradCapture, make_config

from workbench.config import RecordConfig
from workbench.errors import ConfigError
from workbench.memory import measure_device_peaks, reset_device_peaks, uncounted
from workbench.orchestration.train import train
from workbench.recorders import default_recorders
from workbench.store import RunReader


def _run(tiny_task, tmp_path, method, options=None, **train_):
    config = make_config(tiny_task, tmp_path, method, {"fidelity_every": 1}, options, **train_)
    return RunReader(train(config, progress=False).run_dir)


def _model_rows(run, stat):
    table = run.table("fidelity")
    return table.query(f"layer == -1 and module == 'model' and stat == '{stat}'").sort_values("step")["value"]


def test_sage_keeping_every_token_has_the_dense_gradient(tiny_task, tmp_path):
    # tau 1 and n_min above any length: SAGE keeps every token, so its gradient is the dense one
    run = _run(tiny_task, tmp_path, "sage", {"r": 4, "tau": 1.0, "n_min": 64, "align_layers": 0}, steps=2)
    table = run.table("fidelity")
    cosine, error = table[table["stat"] == "cosine"]["value"], table[table["stat"] == "rel_error"]["value"]
    assert len(cosine) > 2 and cosine.dropna().between(1 - 1e-5, 1 + 1e-5).all()
    assert error.dropna().max() < 1e-4
    assert set(table.query("layer >= 0")["layer"]) == {0, 1, 2, 3}  # per layer, per module
    assert run.summary["fidelity_first"]["cosine"] == pytest.approx(1.0, abs=1e-5)


def test_sage_with_a_budget_is_measurably_approximate(tiny_task, tmp_path):
    run = _run(tiny_task, tmp_path, "sage", {"r": 4, "tau": 0.5, "n_min": 1, "align_layers": 2}, steps=2)
    cosine = _model_rows(run, "cosine")
    assert (cosine < 0.9999).all() and (cosine > 0).all()
    jaccard = run.table("fidelity").query("stat == 'jaccard'")
    assert set(jaccard["module"]) == {"tokens"} and jaccard.query("step == 1")["value"].eq(1.0).all()


def test_smt_with_every_block_chosen_covers_the_whole_gradient(tiny_task, tmp_path):
    # tiny-llama: hidden 64, block 16, q (64x64): 16 blocks, k/v (32x64): 8 each -> 32 per layer, 4 layers
    options = {"warmup_steps": 1, "block_size": 16, "budget_blocks": 128}
    run = _run(tiny_task, tmp_path, "smt", options, steps=2)
    for stat in ("coverage", "oracle_coverage"):
        assert _model_rows(run, stat).to_numpy() == pytest.approx(1.0)
    per_matrix = run.table("fidelity").query("layer >= 0 and stat == 'jaccard'")
    assert len(per_matrix) == 2 * 4 * 3 and (per_matrix["value"] == 1.0).all()


@pytest.mark.parametrize("method", ["smt", "spsft"])
def test_coverage_is_below_the_oracle(tiny_task, tmp_path, method):
    run = _run(tiny_task, tmp_path, method, steps=2)
    table = run.table("fidelity")
    table = table.pivot_table(index=["step", "layer", "module"], columns="stat", values="value")
    assert (table["coverage"] <= table["oracle_coverage"] + 1e-9).all()
    assert table["coverage"].between(0, 1).all() and table["oracle_coverage"].between(0, 1).all()


def test_exact_methods_are_the_reference(tiny_task, tmp_path):
    run = _run(tiny_task, tmp_path, "lora", steps=1)
    assert set(_model_rows(run, "cosine")) == {1.0} and set(_model_rows(run, "rel_error")) == {0.0}


@pytest.mark.parametrize(
    "method, options",
    [
        ("lora", {"r": 4, "dropout": 0.1}),
        ("sage", {"r": 4, "dropout": 0.1, "align_layers": 2}),
        ("velora", None),
    ],
)
def test_the_trajectory_is_the_same_with_the_recorder(tiny_task, tmp_path, method, options):
    """Bit for bit, with dropout and two micro-batches per step: the reference pass leaves no trace."""
    runs = {}
    for on in (True, False):
        config = make_config(
            tiny_task, tmp_path, method, {"fidelity": on, "fidelity_every": 1}, options, grad_accum=2, steps=3
        )
        capture = GradCapture()
        result = train(config, progress=False, recorders=[*default_recorders(config.record), capture])
        runs[on] = (capture.grads, RunReader(result.run_dir))
    (on_grads, on_run), (off_grads, off_run) = runs[True], runs[False]
    assert len(on_run.table("fidelity")) > 0 and "fidelity" not in off_run.table_names()
    for step, grads in off_grads.items():
        assert all(torch.equal(g, on_grads[step][name]) for name, g in grads.items())
    trained, again = on_run.tensors("adapter"), off_run.tensors("adapter")
    assert all(torch.equal(trained[k], again[k]) for k in trained)


def test_fidelity_every_must_be_positive():
    with pytest.raises(ConfigError, match="record.fidelity_every must be >= 1"):
        RecordConfig(fidelity_every=0)


def test_a_method_without_a_gradient_kind_gets_one_note(tiny_task, tmp_path, monkeypatch):
    from workbench.methods.lora import LoRA

    monkeypatch.delattr(LoRA, "gradient")
    run = _run(tiny_task, tmp_path, "lora", steps=1)
    assert "declares no gradient kind" in run.summary["fidelity_note"] and "fidelity" not in run.table_names()


def test_an_uncounted_pass_leaves_the_device_peaks_alone():
    device = torch.device("cpu")
    reset_device_peaks(device)
    before = measure_device_peaks(device).process_rss_peak
    with uncounted(device):
        big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del big
    after = measure_device_peaks(device).process_rss_peak
    assert after >= before and after - before < 32 * 2**20
    assert not math.isnan(after)

"""Hugging Face conventions: peft's LoRA option names (target_modules, lora_alpha, lora_dropout), a peft
adapter directory from `workbench export --peft`, and a bare hub id passed to transformers unchanged."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from workbench.api import run_config
from workbench.cli import main
from workbench.config import RunConfig, TrainConfig, apply_overrides, load_toml
from workbench.errors import ConfigError
from workbench.methods import build_method
from workbench.methods.lora import LoraOptions
from workbench.models import load_model
from workbench.orchestration.train import train
from workbench.store import resolve_run

SHORT = TrainConfig(steps=2, batch_size=4, max_length=32, eval_examples=0, lr=1e-2)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, err


# ---- aliases and target_modules ------------------------------------------------------------------------


def test_peft_names_are_aliases_in_toml_set_and_keywords(tmp_path):
    path = tmp_path / "lora.toml"
    path.write_text(
        '[method]\nname = "lora"\nlora_alpha = 8\nlora_dropout = 0.1\ntarget_modules = ["q_proj", "v_proj"]\n'
    )
    from_toml = RunConfig.from_dict(load_toml(path)).method_options
    from_set = RunConfig.from_dict(
        apply_overrides(
            {},
            ["method.lora_alpha=8", "method.lora_dropout=0.1", 'method.target_modules=["q_proj", "v_proj"]'],
        )
    ).method_options
    from_keywords = run_config(
        "tiny-llama", method="lora", lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]
    ).method_options
    expected = LoraOptions(alpha=8.0, dropout=0.1, targets=["q_proj", "v_proj"])
    assert from_toml == from_set == from_keywords == expected
    assert RunConfig.from_dict(run_config("tiny-llama", lora_alpha=8).to_dict()).method_options.alpha == 8.0


@pytest.mark.parametrize("method", ["sage", "tokentune", "velora"])
def test_methods_built_on_lora_share_the_aliases(method):
    options = run_config("tiny-llama", method=method, lora_alpha=4, lora_dropout=0.05).method_options
    assert options.alpha == 4.0 and options.dropout == 0.05


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lora_alpha": 8, "alpha": 4},
        {"lora_dropout": 0.1, "method_options": {"dropout": 0.2}},
        {"target_modules": ["q_proj"], "targets": "all"},
    ],
)
def test_an_option_and_its_alias_together_is_one_config_error(kwargs):
    with pytest.raises(ConfigError, match="both set method.(alpha|dropout|targets).*give only one"):
        run_config("tiny-llama", method="lora", **kwargs)


def test_alias_and_option_in_one_toml_table_is_one_config_error(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text('[method]\nname = "lora"\nalpha = 4\nlora_alpha = 8\n')
    with pytest.raises(ConfigError, match="method.alpha and method.lora_alpha both set method.alpha"):
        RunConfig.from_dict(load_toml(path))


def test_target_modules_list_adapts_exactly_those_modules():
    loaded = load_model("tiny-llama")
    method = build_method("lora", LoraOptions(r=4, targets=["q_proj", "self_attn.v_proj"]))
    method.check(loaded.anatomy)
    method.inject(loaded.model, loaded.anatomy)
    names = list(method.trainable_parameters())
    assert {n.split(".lora_")[0].rpartition(".")[2] for n in names} == {"q_proj", "v_proj"}
    assert len(names) == 2 * 2 * loaded.anatomy.num_blocks  # lora_A and lora_B per block and module


def test_presets_still_work_and_bad_lists_are_refused():
    assert LoraOptions(targets="qv").targets == "qv"
    with pytest.raises(ConfigError, match="unknown LoRA targets 'qvv'"):
        LoraOptions(targets="qvv")
    with pytest.raises(ConfigError, match="must hold module names"):
        LoraOptions(targets=[])
    with pytest.raises(ConfigError, match="names a module twice"):
        LoraOptions(targets=["q_proj", "q_proj"])


def test_unknown_target_module_is_one_error_before_anything_is_written(tiny_task, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = cli(
        capsys,
        *("run", "--model", "tiny-llama", "--task", tiny_task, "--runs-dir", str(runs), "--quiet"),
        *("--steps", "1", "--set", 'method.target_modules=["q_proj", "qkv"]'),
    )
    assert_one_error(code, err, "unknown LoRA target module(s) qkv", "accepted: down_proj", "q_proj")
    assert not runs.exists() or not any(p for p in runs.rglob("manifest.json"))


# ---- export --peft -------------------------------------------------------------------------------------


FAMILY = {  # the LoRA family: peft adapters under each (peft's option names where they apply)
    "lora": {"r": 4, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj", "down_proj"]},
    "sage": {"r": 4, "n_min": 2, "tau": 0.5, "align_layers": 1, "target_modules": ["q_proj", "v_proj"]},
    "velora": {"r": 4, "num_groups": 8, "lora_alpha": 16},
}


@pytest.fixture(scope="module")
def family_runs(tiny_task, tmp_path_factory):
    """method -> the directory of a finished 2-step run of it on tiny-llama (trained on first use)."""
    runs, done = tmp_path_factory.mktemp("hf-runs"), {}

    def get(method: str) -> Path:
        if method not in done:
            config = run_config(
                "tiny-llama",
                tiny_task,
                method,
                runs_dir=str(runs),
                train=vars(SHORT),
                method_options=FAMILY[method],
            )
            done[method] = resolve_run(runs, train(config, progress=False).run_id).path
        return done[method]

    return get


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("method", list(FAMILY))
def test_peft_export_loads_with_peft_and_gives_the_merged_logits(method, family_runs, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lora_run = family_runs(method)
    runs, run_id = str(lora_run.parent), lora_run.name
    code, out, err = cli(
        capsys, "export", run_id, "--out", str(tmp_path / "adapter"), "--runs-dir", runs, "--peft"
    )
    assert code == 0, err
    assert "PeftModel.from_pretrained" in out
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in (tmp_path / "adapter").iterdir()
    }
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    targets = FAMILY[method].get("target_modules", ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert set(targets) <= set(adapter_config["target_modules"])
    assert adapter_config["r"] == 4 and adapter_config["lora_alpha"] == FAMILY[method].get("lora_alpha", 32)
    code, _, err = cli(capsys, "export", run_id, "--out", str(tmp_path / "merged"), "--runs-dir", runs)
    assert code == 0, err

    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 64]])
    base = load_model("tiny-llama").model
    base_logits = _logits(base, ids)
    with warnings.catch_warnings():  # peft calls a transformers API that transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        with_adapter = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    peft_logits, merged_logits = _logits(with_adapter, ids), _logits(merged, ids)
    assert not torch.allclose(peft_logits, base_logits, atol=1e-4)  # the training is in the adapter
    assert torch.allclose(peft_logits, merged_logits, atol=1e-5, rtol=1e-4)


def test_peft_export_of_a_non_lora_run_is_one_error(family_runs, tmp_path, capsys):
    lora_run = family_runs("lora")
    # the error comes from the run's config alone: a copy of the LoRA run relabelled as a full run
    runs = tmp_path / "runs"
    copy = runs / lora_run.name
    shutil.copytree(lora_run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["method"] = "full"
    manifest["config"]["method_options"] = {}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "adapter"
    code, _, err = cli(capsys, "export", copy.name, "--out", str(out), "--runs-dir", str(runs), "--peft")
    assert_one_error(code, err, "method 'full'", "trains no peft LoRA adapters", "without --peft")
    assert not out.exists()


# ---- a bare hub id -------------------------------------------------------------------------------------


def test_bare_hub_id_reaches_transformers_unchanged(monkeypatch):
    import workbench.models.pretrained as pretrained

    seen = []

    class FakeAutoConfig:
        @staticmethod
        def from_pretrained(ref, *args, **kwargs):
            seen.append(ref)
            raise OSError("transformers' own words\nsecond line")

    monkeypatch.setattr(pretrained, "AutoConfig", FakeAutoConfig)
    with pytest.raises(ConfigError) as error:
        load_model("gpt2")
    assert seen == ["gpt2"]
    assert "transformers' own words second line" in str(error.value) and "\n" not in str(error.value)


def test_bare_hub_id_offline_is_transformers_message_on_one_line(tiny_task, tmp_path, capsys):
    # conftest puts huggingface_hub in offline mode (HF_HUB_OFFLINE=1)
    name = "wb-no-such-model-3f9c1e"
    code, _, err = cli(
        capsys,
        *("run", "--model", name, "--task", tiny_task, "--runs-dir", str(tmp_path / "runs"), "--quiet"),
    )
    assert_one_error(code, err, f"unknown model {name!r}", "We couldn't connect to 'https://huggingface.co'")

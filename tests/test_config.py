"""RunConfig: defaults, overrides, TOML files and every bad input as one ConfigError."""

import pytest

from workbench.config import RunConfig, apply_overrides, load_toml
from workbench.errors import ConfigError
from workbench.methods.lora import LoraOptions


def test_defaults_are_the_main_job():
    config = RunConfig()
    assert (config.model, config.task, config.method) == ("smollm2-135m", "polarity", "lora")
    assert isinstance(config.method_options, LoraOptions)


def test_round_trip_through_dict():
    config = RunConfig.from_dict({"method": "lora", "train": {"steps": 5}, "method_options": {"r": 4}})
    again = RunConfig.from_dict(config.to_dict())
    assert again == config
    assert again.method_options.r == 4


def test_overrides_parse_types():
    data = apply_overrides(
        {},
        [
            "train.steps=7",
            "train.lr=1e-4",
            "method.r=8",
            "model=tiny-llama",
            "method.targets=qv",
            "record.memory=false",
        ],
    )
    config = RunConfig.from_dict(data)
    assert config.train.steps == 7 and config.train.lr == 1e-4
    assert config.method_options.r == 8 and config.method_options.targets == "qv"
    assert config.record.memory is False and config.model == "tiny-llama"


def test_int_accepted_for_float():
    assert RunConfig.from_dict({"train": {"lr": 1}}).train.lr == 1.0


def test_toml_file_with_method_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '# workbench run --config c.toml\nmodel = "tiny-llama"\n[train]\nsteps = 3\n'
        '[method]\nname = "lora"\nr = 2\n'
    )
    config = RunConfig.from_dict(load_toml(path))
    assert config.model == "tiny-llama" and config.train.steps == 3 and config.method_options.r == 2


def test_task_table_and_task_template_override(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model = "tiny-llama"\n[task]\nname = "spelling"\ntemplate = "chat"\n')
    config = RunConfig.from_dict(load_toml(path))
    assert config.task == "spelling" and config.template == "chat"
    data = apply_overrides({"task": "pos_tags"}, ["task.template=chat", "train.eval_metric=exact_match"])
    config = RunConfig.from_dict(data)
    assert (config.task, config.template, config.train.eval_metric) == ("pos_tags", "chat", "exact_match")
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown key.*task.style; accepted: task.name, task.template"):
        apply_overrides({}, ["task.style=x"])


@pytest.mark.parametrize(
    "data, message",
    [
        ({"method": "lorra"}, "unknown method 'lorra'. Did you mean 'lora'?"),
        ({"train": {"steps": 0}}, "train.steps must be >= 1"),
        ({"train": {"batch_size": 0}}, "train.batch_size must be >= 1"),
        ({"train": {"steps": "ten"}}, "TrainConfig.steps must be int"),
        ({"train": {"stepz": 3}}, "unknown key(s) train.stepz"),
        ({"method_options": {"rank": 3}}, "unknown key(s) method.rank"),
        ({"method_options": {"r": 0}}, "method.r must be >= 1"),
        ({"method_options": {"r": 2.5}}, "LoraOptions.r must be int"),
        ({"colour": "red"}, "unknown config key(s) colour"),
        ({"train": {"dtype": "float16"}}, "train.dtype must be float32 or bfloat16"),
        ({"train": {"eval_metric": "bleu"}}, "train.eval_metric must be one of auto, loglik, exact_match"),
        ({"train": {"max_new_tokens": 0}}, "train.max_new_tokens (the generation length bound) must be >= 1"),
        ({"train": {"max_new_tokens": "long"}}, "must be >= 1 or 'auto', got 'long'"),
        ({"template": "alpaca"}, "task.template must be one of plain, chat, got 'alpaca'"),
    ],
)
def test_bad_values_raise_one_clear_error(data, message):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(data)
    assert message in str(info.value)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ConfigError, match="unknown --set section"):
        apply_overrides({}, ["optim.lr=1"])


def test_unreadable_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_toml(bad)

"""Run configuration: one dataclass per concern, validated on construction.

A run is described by a `RunConfig`: which model, task and method, plus `TrainConfig` (the loop),
`RecordConfig` (what is measured) and the method's own options dataclass (registered with the method).
Configs come from keyword arguments, a small TOML file and dotted `key=value` overrides
(`train.steps=20`, `method.r=16`); every path ends in `RunConfig.from_dict`, which rejects unknown keys
and wrong types with one clear `ConfigError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from workbench.errors import ConfigError
from workbench.store.schema import DEFAULT_RUNS_DIR
from workbench.validation import Validated, require

ATTENTION_KERNELS = ("sdpa", "eager")  # train.attn: transformers' attn_implementation
EVAL_METRICS = ("auto", "loglik", "exact_match")  # train.eval_metric
TASK_TEMPLATES = ("plain", "chat")  # task.template


@dataclass
class TrainConfig(Validated):
    """The training loop's settings, shared by every method."""

    steps: int = 60  # optimizer steps (each = grad_accum micro-batches)
    batch_size: int = 8  # examples per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float | None = None  # peak learning rate; None = the method's default (LoRA 2e-4, full 2e-5, ...)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_ratio: float = 0.1  # fraction of steps of linear warm-up, then linear decay to 0
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables
    max_length: int = 128  # tokens per example; the prompt is truncated from the left, never the answer
    seed: int = 0  # seeds the split, the batch order, initialisation and random selections
    eval_every: int = 0  # evaluate every k steps (0: only before and after training)
    eval_examples: int = 200  # held-out examples scored at each evaluation
    eval_batch_size: int = 16  # examples per evaluation forward (sequences per generation batch)
    # auto: exact_match for generative (free-text) tasks, loglik (argmax over candidates) otherwise
    eval_metric: str = "auto"
    max_new_tokens: int | str = "auto"  # generation bound; auto = the longest training answer + 8 tokens
    train_examples: int | None = None  # cap on training examples (None: all of the train split)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"  # float32 | bfloat16 (bf16 only on GPU)
    attn: str = "sdpa"  # attention kernel: sdpa (the practitioner's) | eager (keeps the (B, H, n, n) probs)
    # transformers' non-reentrant checkpointing of every decoder block (SAGE / TokenTune checkpoint their
    # sparse blocks, recomputing only the compact path); also in SMT's warm-up and SPSFT's importance
    gradient_checkpointing: bool = False
    flush_every: int = 10  # write buffered table rows to the store every k steps
    save_weights: bool = True  # save the trained tensors (adapter.safetensors) for `workbench export`

    def validate(self) -> None:
        require(self.steps >= 1, f"train.steps must be >= 1, got {self.steps}")
        require(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        require(self.grad_accum >= 1, f"train.grad_accum must be >= 1, got {self.grad_accum}")
        require(self.lr is None or self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        require(0 <= self.warmup_ratio < 1, f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        require(self.max_grad_norm >= 0, f"train.max_grad_norm must be >= 0, got {self.max_grad_norm}")
        require(self.max_length >= 2, f"train.max_length must be >= 2, got {self.max_length}")
        require(self.eval_every >= 0, f"train.eval_every must be >= 0, got {self.eval_every}")
        require(self.eval_examples >= 0, f"train.eval_examples must be >= 0, got {self.eval_examples}")
        require(self.eval_batch_size >= 1, f"train.eval_batch_size must be >= 1, got {self.eval_batch_size}")
        require(
            self.eval_metric in EVAL_METRICS,
            f"train.eval_metric must be one of {', '.join(EVAL_METRICS)}, got {self.eval_metric!r}",
        )
        bound = self.max_new_tokens
        require(
            bound == "auto" or (isinstance(bound, int) and bound >= 1),
            f"train.max_new_tokens (the generation length bound) must be >= 1 or 'auto', got {bound!r}",
        )
        require(
            self.train_examples is None or self.train_examples >= 1,
            f"train.train_examples must be >= 1 or None, got {self.train_examples}",
        )
        require(self.flush_every >= 1, f"train.flush_every must be >= 1, got {self.flush_every}")
        require(
            self.dtype in ("float32", "bfloat16"),
            f"train.dtype must be float32 or bfloat16, got {self.dtype!r}",
        )
        require(
            self.attn in ATTENTION_KERNELS,
            f"train.attn must be one of {', '.join(ATTENTION_KERNELS)}, got {self.attn!r}",
        )
        require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )


@dataclass
class RecordConfig(Validated):
    """What the run measures and records (workbench/recorders); recorders never change a gradient.

    Per-step recorders record on step 1 and then every k-th step (k = their `*_every`), so a short run is
    still seen at its start. The defaults keep the whole set within 15% of the step time
    (benchmarks/recorder_overhead.py).
    """

    # saved-activation bytes per block/module, static categories per block/module, device peaks; also the
    # largest forward of each selection phase (warmup, importance) and evaluation
    memory: bool = True
    memory_every: int = 1  # cheap (hooks during one forward): every step by default
    # seconds per step phase (forward, backward, optimizer, recording), selection phase and evaluation
    timing: bool = True
    # median / mean / max |grad| and grad norm per block and module of what trains, before clipping
    grads: bool = True
    grads_every: int = 10
    # also |dL/dW| of frozen dense projections (q..down under LoRA, SAGE, SMT, SPSFT) on grads steps, from
    # their output gradient and input (the SMT paper's Fig. 3); costs one weight-gradient GEMM per
    # projection on those steps, so it is opt-in
    grads_frozen: bool = False
    # per-block token scores and chosen tokens of fixed probe examples: the method's own selection (SAGE,
    # TokenTune), else what SAGE would choose (observation only)
    saliency: bool = True
    saliency_every: int = 10  # one no-grad forward of the probe examples per recorded step
    probe_examples: int = 4  # the first n training examples, the same at every recorded step
    # the gradient against the dense one (SAGE, TokenTune, VeLoRA: cosine and relative error from a dense
    # reference pass of the same batch; SMT, SPSFT: the share of the dense gradient in the chosen blocks /
    # rows, and an oracle's), and how the selection drifts (jaccard); recorders/fidelity.py
    fidelity: bool = True
    fidelity_every: int = 10
    blocks: bool = True  # SMT: block grid (score, chosen) and warm-up |grad| statistics, once after selection
    rows: bool = True  # SPSFT: importance and chosen flag per output row, once after selection

    def validate(self) -> None:
        for name in ("memory_every", "grads_every", "saliency_every", "fidelity_every"):
            require(getattr(self, name) >= 1, f"record.{name} must be >= 1, got {getattr(self, name)}")
        require(self.probe_examples >= 1, f"record.probe_examples must be >= 1, got {self.probe_examples}")
        require(
            self.grads or not self.grads_frozen,
            "record.grads_frozen needs record.grads = true (frozen weights are observed on grads steps)",
        )


@dataclass
class RunConfig(Validated):
    """Everything that defines a run; saved resolved into the run's manifest."""

    model: str = "smollm2-135m"  # built-in alias, local directory or hub id
    task: str = "polarity"  # built-in task name or a local .jsonl/.csv file
    method: str = "lora"  # a registered method (workbench.methods)
    name: str | None = None  # human-readable run name (default: method-model-task)
    runs_dir: str = DEFAULT_RUNS_DIR  # where the run store lives
    # task.template: plain (the task's own prompt) | chat (the prompt as a user turn of the model's chat
    # template, the answer as the assistant's, ended by its end-of-turn token)
    template: str = "plain"
    train: TrainConfig = field(default_factory=TrainConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    method_options: Any = None  # the method's options dataclass; filled from `method.*` keys

    def validate(self) -> None:
        from workbench.methods.registry import method_options_class

        require(
            self.template in TASK_TEMPLATES,
            f"task.template must be one of {', '.join(TASK_TEMPLATES)}, got {self.template!r}",
        )
        options_class = method_options_class(self.method)  # unknown method -> ConfigError
        if self.method_options is None:
            self.method_options = options_class()
        elif isinstance(self.method_options, dict):
            self.method_options = _build(options_class, self.method_options, "method")
        elif not isinstance(self.method_options, options_class):
            raise ConfigError(f"method options for {self.method!r} must be {options_class.__name__}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a nested dict (TOML layout: top-level keys, [train], [record], [method])."""
        data = dict(data)
        train = _build(TrainConfig, data.pop("train", {}) or {}, "train")
        record = _build(RecordConfig, data.pop("record", {}) or {}, "record")
        method_options = data.pop("method_options", None) or {}
        top = {f.name for f in dataclasses.fields(cls)} - {"train", "record", "method_options"}
        unknown = set(data) - top
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(sorted(unknown))}; accepted: {', '.join(sorted(top))}, "
                "train.*, record.*, method.*"
            )
        return cls(**data, train=train, record=record, method_options=method_options)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict; `from_dict(to_dict())` gives an equal config."""
        out = dataclasses.asdict(self)
        out["method_options"] = dataclasses.asdict(self.method_options)
        return out

    @property
    def display_name(self) -> str:
        model = Path(self.model).name if "/" in self.model else self.model
        task = Path(self.task).stem if "/" in self.task or "." in self.task else self.task
        return self.name or f"{self.method}-{model}-{task}"


def _build(klass: type, values: dict[str, Any], section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{section}] must be a table of key = value, got {values!r}")
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{section}.{k}' for k in sorted(unknown))}; "
            f"accepted: {', '.join(f'{section}.{n}' for n in sorted(names))}"
        )
    return klass(**values)


def parse_value(text: str) -> Any:
    """Parse the value of a `--set key=value` as TOML (numbers, booleans, lists), else keep it a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a run config file in the layout of `RunConfig.from_dict`.

    The file's `[method]` table holds `name = "..."` plus the method's options; it is returned as
    `method` (the name) and `method_options`. `task` is a name, or a `[task]` table of `name` and
    `template`. A missing or malformed file is one ConfigError.
    """
    data = _read_toml(Path(path))
    if isinstance(data.get("task"), dict):
        table = dict(data.pop("task"))
        data["task"] = table.pop("name", RunConfig.task)
        data.update(_task_keys(table))
    if isinstance(data.get("method"), dict):
        table = dict(data.pop("method"))
        data["method"] = table.pop("name", RunConfig.method)
        data["method_options"] = table
    return data


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted `key=value` overrides (e.g. `train.steps=10`, `method.r=16`) to a nested dict."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value (e.g. method.r=16), got {item!r}")
        parts = key.strip().split(".")
        if len(parts) > 2:
            raise ConfigError(f"--set key {key!r} is nested too deep; use section.key, e.g. train.steps")
        value = parse_value(raw.strip())
        if len(parts) == 1:
            data[parts[0]] = value
        else:
            section, name = parts
            if section == "task":
                data.update(_task_keys({name: value}))
                continue
            if section == "method":
                section = "method_options"
            if section not in ("train", "record", "method_options"):
                raise ConfigError(
                    f"unknown --set section {parts[0]!r}; accepted: task, train, record, method"
                )
            data.setdefault(section, {})
            data[section][name] = value
    return data


def _task_keys(table: dict[str, Any]) -> dict[str, Any]:
    """`task.*` keys (besides the name) as RunConfig fields: only `task.template` exists."""
    unknown = set(table) - {"template"}
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'task.{k}' for k in sorted(unknown))}; "
            "accepted: task.name, task.template"
        )
    return dict(table)

"""Run configuration: one dataclass per concern, validated on construction.

A run is described by a `RunConfig`: which model, task and method, plus `TrainConfig` (the loop),
`RecordConfig` (what is measured) and the method's own options dataclass (registered with the method).
Configs come from keyword arguments, a small TOML file and dotted `key=value` overrides
(`train.steps=20`, `method.r=16`); every path ends in `RunConfig.from_dict`, which rejects unknown keys
and wrong types with one clear `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from workbench.errors import ConfigError
from workbench.store.schema import DEFAULT_RUNS_DIR
from workbench.validation import Validated, require, resolve_aliases, shown

ATTENTION_KERNELS = ("sdpa", "eager")  # train.attn: transformers' attn_implementation
EVAL_METRICS = ("auto", "loglik", "exact_match")  # train.eval_metric
TASK_TEMPLATES = ("plain", "chat")  # task.template

# Upper bounds of the train settings: far above any real run, low enough that a typo (an extra zero or
# ten) fails here, before the run store, instead of hanging or overflowing later.
MAX_COUNT = 10**9  # steps, eval_every, flush_every, eval_examples, train_examples
MAX_BATCH = 65_536  # examples per micro-batch (batch_size, eval_batch_size) and micro-batches per step
MAX_LENGTH = 2**20  # tokens per example (max_length) and generated tokens (max_new_tokens)
# Training batches cycle through the train split across epochs (workbench.data.loader.train_batches),
# so a batch larger than the training set is legitimate; what is refused is a micro-batch whose token
# count could not fit in memory anyway: 4M tokens is 800 GB of float32 logits at a 49k vocabulary.
MAX_BATCH_TOKENS = 2**22  # batch_size x max_length
INT64 = (-(2**63), 2**63 - 1)  # train.seed: the range torch generators and the store's int columns hold


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
        """Range checks (bounds: MAX_COUNT, MAX_BATCH, MAX_LENGTH, MAX_BATCH_TOKENS above); every float
        must be finite.

        A batch_size above the number of training examples is allowed (and not checked against the task
        in `setup_run`): `train_batches` draws every batch's indices from a stream of seeded epochs, so
        a batch cycles through the training set. What is refused is a micro-batch of more than
        MAX_BATCH_TOKENS tokens (batch_size x max_length), which could not fit in memory anyway."""
        _in_range("steps", self.steps, 1, MAX_COUNT)
        _in_range("batch_size", self.batch_size, 1, MAX_BATCH)
        _in_range("grad_accum", self.grad_accum, 1, MAX_BATCH)
        require(
            self.lr is None or (_finite(self.lr) and self.lr > 0),
            f"train.lr must be a finite number > 0, got {shown(self.lr)} (unset: the method's default)",
        )
        require(
            _finite(self.weight_decay) and self.weight_decay >= 0,
            f"train.weight_decay must be a finite number >= 0, got {shown(self.weight_decay)}",
        )
        require(
            _finite(self.warmup_ratio) and 0 <= self.warmup_ratio < 1,
            f"train.warmup_ratio must be a number in [0, 1), got {shown(self.warmup_ratio)}",
        )
        require(
            _finite(self.max_grad_norm) and self.max_grad_norm >= 0,
            f"train.max_grad_norm must be a finite number >= 0 (0: no clipping), "
            f"got {shown(self.max_grad_norm)}",
        )
        _in_range("max_length", self.max_length, 2, MAX_LENGTH)
        tokens = self.batch_size * self.max_length
        require(
            tokens <= MAX_BATCH_TOKENS,
            f"train.batch_size x train.max_length must be <= {MAX_BATCH_TOKENS:,} tokens per micro-batch "
            f"(a larger batch could not fit in memory), got {self.batch_size} x {self.max_length} = "
            f"{tokens:,}; use a smaller batch and train.grad_accum",
        )
        require(
            INT64[0] <= self.seed <= INT64[1],
            f"train.seed must be a 64-bit integer, in [-2**63, 2**63 - 1], got {self.seed}",
        )
        _in_range("eval_every", self.eval_every, 0, MAX_COUNT)
        _in_range("eval_examples", self.eval_examples, 0, MAX_COUNT)
        _in_range("eval_batch_size", self.eval_batch_size, 1, MAX_BATCH)
        require(
            self.eval_metric in EVAL_METRICS,
            f"train.eval_metric must be one of {', '.join(EVAL_METRICS)}, got {self.eval_metric!r}",
        )
        bound = self.max_new_tokens
        require(
            bound == "auto" or (isinstance(bound, int) and bound >= 1),
            f"train.max_new_tokens (the generation length bound) must be >= 1 or 'auto', got {shown(bound)}",
        )
        require(
            bound == "auto" or bound <= MAX_LENGTH,
            f"train.max_new_tokens must be <= {MAX_LENGTH:,} or 'auto', got {bound}",
        )
        require(
            self.train_examples is None or 1 <= self.train_examples <= MAX_COUNT,
            f"train.train_examples must be in [1, {MAX_COUNT:,}] or None, got {self.train_examples}",
        )
        _in_range("flush_every", self.flush_every, 1, MAX_COUNT)
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
            bool(self.runs_dir.strip()),
            "runs_dir must not be empty: name the run store's directory (default ./runs)",
        )
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
        if not isinstance(data, dict):
            raise ConfigError(f"a run config must be a table of settings, got {type(data).__name__}")
        data = dict(data)
        train = _build(TrainConfig, _table(data.pop("train", None)), "train")
        record = _build(RecordConfig, _table(data.pop("record", None)), "record")
        method_options = data.pop("method_options", None)  # None: the method's defaults (validate)
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


def _table(value: Any) -> Any:
    """A section as given; None (absent) is an empty table. Anything else but a dict fails in `_build`."""
    return {} if value is None else value


def _build(klass: type, values: dict[str, Any], section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(
            f"{section} must be a table of key = value ([{section}] in TOML, --set {section}.KEY=VALUE), "
            f"got {shown(values)}"
        )
    values = resolve_aliases(klass, values, section)  # e.g. method.lora_alpha -> method.alpha
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - names
    if unknown:
        aliases = getattr(klass, "aliases", {})
        also = f" (aliases: {', '.join(f'{a} = {f}' for a, f in aliases.items())})" if aliases else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{section}.{k}' for k in sorted(unknown))}; "
            f"accepted: {', '.join(f'{section}.{n}' for n in sorted(names))}{also}"
        )
    return klass(**values)


def _finite(value: Any) -> bool:
    """True for a finite number (an int too large for a float is not)."""
    try:
        return math.isfinite(value)
    except (OverflowError, TypeError):
        return False


def _in_range(name: str, value: int, low: int, high: int) -> None:
    require(value >= low, f"train.{name} must be >= {low}, got {value}")
    require(value <= high, f"train.{name} must be <= {high:,}, got {value}")


def toml_value(value: Any) -> str:
    """`value` written as the TOML text `parse_value` reads back: JSON, except the non-finite floats,
    which JSON spells NaN / Infinity and TOML nan / inf (so `--lr nan` is a number, not a string), and
    strings keep their non-ASCII characters (TOML has no surrogate-pair escapes) and escape DEL."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def parse_value(text: str) -> Any:
    """Parse the value of a `--set key=value` as TOML (numbers, booleans, lists), else keep it a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except (ValueError, RecursionError) as exc:  # an integer of 4,300+ digits, lists nested too deep
        reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
        raise ConfigError(f"cannot read the value {shown(text)}: {reason}") from None


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
    except (OSError, ValueError) as exc:  # TOMLDecodeError, UnicodeDecodeError, an int of 4,300+ digits
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"cannot read config file {str(path)!r}: arrays or tables nested too deep for a config"
        ) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted `key=value` overrides (e.g. `train.steps=10`, `method.r=16`) to a nested dict."""
    if not isinstance(data, dict):
        raise ConfigError(f"a run config must be a table of settings, got {type(data).__name__}")
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
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                label = "method" if section == "method_options" else section
                raise ConfigError(
                    f"{label} must be a table of key = value to take --set {key.strip()}, "
                    f"got {label} = {shown(table)}"
                )
            table[name] = value
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

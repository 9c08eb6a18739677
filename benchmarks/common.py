"""Shared mechanism of the method benchmarks: memory and step time of a method relative to LoRA, in one run.

Every benchmark script (sage_vs_lora.py, smt_vs_lora.py, spsft_vs_lora.py) does the same thing with its
own list of methods:

    with Bench.open(settings) as bench:              # tokenizer, task, model shape (no model kept)
        batch = bench.batch(length)                  # ONE real polarity batch, every example `length` long
        prepared = [bench.prepare(spec, length) for spec in specs]   # a fresh model per method
        rows = measure(prepared, batch, repeats=5, baseline="lora")  # bytes + interleaved step times

What is measured, per method, on the same batch (DESIGN.md, "Memory: three sources"; source 1, logical):

- saved-activation bytes of one training forward (`track_saved_tensors`: storages autograd keeps for
  backward, parameters excluded), inside the method's `forward_context` (SAGE's sparse blocks are on);
- static bytes after one backward and one AdamW step (`static_bytes`): trainable parameters, gradients,
  optimizer state; "state bytes" below = their sum (the frozen base is the same for every method);
- step time: forward + backward + gradient clipping + AdamW step + zero_grad, the training loop's step.
  The machine is shared and noisy, so methods are *interleaved*: every round runs one step of each method
  (the order rotates per round), the ratio to the baseline is taken within each round and the median over
  rounds is reported (plus the median seconds). Wall time and the process's CPU time are both taken; the
  CPU-time ratio does not count the time other processes hold the cores. No timing is ever asserted.
- selection phases (SMT's warm-up, SPSFT's importance) are timed apart through `PrepareContext.phase`,
  with the saved bytes of their first forward; they are not part of the step time.

Every method runs the same attention kernel (the script's default, `--attn` to switch all of them; a
row's `train` may set its own) and
computes the LM head only at the answer positions (`workbench.lm.answer_loss`), as the training loop does.

Fixed lengths: polarity sentences are about 30 tokens, so a batch of them is not 64 or 128 tokens long.
`packed_examples` builds examples of exactly n tokens from real review text: several reviews of the same
label are concatenated into one prompt ("Review: <r1> <r2> ...\\nSentiment:"), the prompt is cut from the
left to fit (as the loader does), and the answer (that label's word) comes last. No padding, so n really
is the sequence length of every example.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.config import ATTENTION_KERNELS, RunConfig, TrainConfig
from workbench.data import (
    Batch,
    Example,
    TaskData,
    collate,
    encode_example,
    load_task,
    pad_token_id,
)
from workbench.data.tasks import stable_order
from workbench.lm import answer_loss
from workbench.memory import static_bytes, static_bytes_by_location, track_saved_tensors
from workbench.methods.base import HeldTensor
from workbench.models import LoadedModel, load_model
from workbench.orchestration.assembly import prepare_method, setup_run
from workbench.orchestration.timing_pass import interleaved_rounds, torch_threads

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_MODEL = "smollm2-135m"
SMOKE_MODEL = "tiny-llama"  # random-init, 4 blocks: the --smoke mode runs every code path in seconds
DEFAULT_TASK = "polarity"

# The LoRA every benchmark compares against (issues 3-5): rank 16, alpha 32, no dropout (dropout > 0
# would make every adapted layer keep an extra copy of its input), all seven linears of every block.
LORA_R16: dict[str, Any] = {"r": 16, "alpha": 32.0, "dropout": 0.0, "targets": "all"}
MIB = 2**20


# ---- settings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every benchmark shares: model, task, batch, repetitions (filled from the command line)."""

    model: str = DEFAULT_MODEL
    task: str = DEFAULT_TASK
    batch_size: int = 8
    repeats: int = 5  # interleaved timing rounds (one step of every method per round)
    seed: int = 0
    attn: str = "eager"  # attention kernel of every method alike: eager | sdpa
    out: Path = RESULTS_DIR  # where the JSON goes
    smoke: bool = False  # tiny-llama, few repeats: checks the script works, measures nothing useful
    threads: int | None = None  # torch CPU threads while the benchmark runs (None: torch's default)

    @property
    def label(self) -> str:
        return f"{self.model}, {self.task}, batch {self.batch_size}, {self.attn} attention"


def base_parser(description: str, *, attn: str = "eager") -> argparse.ArgumentParser:
    """The options every benchmark script accepts (`attn`: the script's default kernel); scripts add
    their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help=f"run on {SMOKE_MODEL} in seconds (a check)")
    parser.add_argument("--model", default=None, help=f"model (default {DEFAULT_MODEL}; smoke {SMOKE_MODEL})")
    parser.add_argument("--task", default=DEFAULT_TASK, help="task whose text fills the batch")
    parser.add_argument("--batch-size", type=int, default=None, help="examples per batch (default 8)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--attn", default=attn, choices=ATTENTION_KERNELS, help=f"kernel of every row that sets none ({attn})"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from `base_parser`'s options.

    --smoke: the tiny model, batch 2, one round, one thread (a tiny model on threads that other
    processes also want spends its time waiting for them).
    """
    smoke = args.smoke
    return Settings(
        model=args.model or (SMOKE_MODEL if smoke else DEFAULT_MODEL),
        task=args.task,
        batch_size=args.batch_size or (2 if smoke else 8),
        repeats=args.repeats or (1 if smoke else 5),
        seed=args.seed,
        attn=args.attn,
        out=args.out,
        smoke=smoke,
        threads=args.threads or (1 if smoke else None),
    )


def limited_threads(threads: int | None) -> contextlib.AbstractContextManager[None]:
    """torch's CPU thread count set to `threads` (None: unchanged) inside the block, restored after."""
    return torch_threads(threads) if threads else contextlib.nullcontext()


# ---- methods ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """One row of a benchmark: a registered method with its options, under a label."""

    label: str  # row name, e.g. "sage align 15"
    method: str  # registered method name (workbench.methods)
    options: Mapping[str, Any] = field(default_factory=dict)  # fields of the method's options dataclass
    # TrainConfig fields of this row only, e.g. {"gradient_checkpointing": True} or {"attn": "eager"}
    train: Mapping[str, Any] = field(default_factory=dict)

    def run_config(self, settings: Settings, length: int) -> RunConfig:
        """This method on the benchmark's model and task, on the CPU, `length` tokens per example, with
        the benchmark's attention kernel unless the row sets its own."""
        shared = {"attn": settings.attn}
        train = TrainConfig(
            batch_size=settings.batch_size,
            max_length=length,
            seed=settings.seed,
            device="cpu",
            **{**shared, **self.train},
        )
        return RunConfig(
            settings.model, settings.task, self.method, train=train, method_options=dict(self.options)
        )


@dataclass
class PhaseCost:
    """A selection phase (SMT warm-up, SPSFT importance): time, forwards run, saved bytes of one forward."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time (not counting the time other processes hold the cores)
    forwards: int = 0
    saved_bytes: int = 0  # of its first forward (every forward of a phase has the batch's shape)
    # its largest step's logical memory by category (parameters, gradients, optimizer state, fp32
    # masters, accumulators as the phase reports them, plus saved_bytes); empty if it reports no step
    peak: dict[str, int] = field(default_factory=dict)

    @property
    def peak_total(self) -> int:
        return sum(self.peak.values())


@dataclass
class Prepared:
    """A method prepared on its own fresh model, with its optimizer, ready for training steps."""

    spec: MethodSpec
    loaded: LoadedModel
    method: Any
    params: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer
    prepare_seconds: float  # the whole of method.prepare (module swaps + selection phases)
    phases: dict[str, PhaseCost]
    base_param_bytes: int  # parameters of the model before the method touched it (the SPSFT paper's mem_M)

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    @property
    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.params.values())


class _PhaseMeter:
    """`PrepareContext.phase` and `loss_fn` for a benchmark: times phases, measures their first forward."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.phases: dict[str, PhaseCost] = {}
        self.current: str | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        cost = self.phases.setdefault(name, PhaseCost())
        self.current, start, start_cpu = name, time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            cost.seconds += time.perf_counter() - start
            cost.cpu_seconds += time.process_time() - start_cpu
            self.current = None

    def step(self, held: list[HeldTensor]) -> None:
        """`PrepareContext.phase_step`: the step's logical memory; the largest step is kept."""
        cost = self.phases[self.current]
        categories: dict[str, int] = {}
        for (_, _, category), nbytes in static_bytes_by_location(self.model, held=held).items():
            categories[category] = categories.get(category, 0) + nbytes
        categories["saved_activations"] = cost.saved_bytes
        if sum(categories.values()) > cost.peak_total:
            cost.peak = categories

    def loss(self, batch: Batch) -> torch.Tensor:
        cost = self.phases.get(self.current) if self.current else None
        if cost is None:
            return answer_loss(self.model, batch)
        cost.forwards += 1
        if cost.forwards > 1:
            return answer_loss(self.model, batch)
        with track_saved_tensors(self.model) as tracker:
            loss = answer_loss(self.model, batch)
        cost.saved_bytes = tracker.total_bytes
        return loss


# ---- fixed-length batches of real text -------------------------------------------------------------------


def packed_examples(task: TaskData, tokenizer: Any, length: int, count: int, seed: int) -> list[Example]:
    """`count` examples of exactly `length` tokens made of real reviews (see the module docstring), or,
    for a generative task, of real worked examples (`packed_demonstrations`).

    Example i has label i % number-of-classes; its prompt concatenates shuffled train reviews of that
    label until it holds at least `length` tokens, and `encode_example` later cuts it from the left.
    """
    if task.generative:
        return packed_demonstrations(task, tokenizer, length, count, seed)
    if task.template is None or "{text}" not in task.template or task.classes is None:
        raise ValueError(f"task {task.name!r} has no '{{text}}' template with fixed classes to pack")
    prefix, _, suffix = task.template.partition("{text}")
    texts: dict[int, list[str]] = {label: [] for label in range(len(task.classes))}
    for i in stable_order(len(task.train), seed, "packed-reviews"):
        example = task.train[i]
        texts[example.label].append(example.prompt.removeprefix(prefix).removesuffix(suffix))
    cursor = dict.fromkeys(texts, 0)
    out = []
    for i in range(count):
        label = i % len(texts)
        pool, parts = texts[label], []
        while True:
            parts.append(pool[cursor[label] % len(pool)])
            cursor[label] += 1
            example = Example(prefix + " ".join(parts) + suffix, task.classes, label)
            if len(encode_example(tokenizer, example, max_length=10**9)[0]) >= length:
                break
        out.append(example)
    return out


def packed_demonstrations(
    task: TaskData, tokenizer: Any, length: int, count: int, seed: int
) -> list[Example]:
    """`count` generative examples of exactly `length` tokens: example i asks train example i's question
    (its answer, with its stop, is the answer trained on), after other train examples written out whole
    (prompt, answer, stop) as demonstrations until the prompt holds at least `length` tokens; the loader
    cuts it from the left. The few-shot layout of instruction data, with every answer token real."""
    order = stable_order(len(task.train), seed, "packed-demonstrations")
    if len(order) <= count:
        raise ValueError(f"task {task.name!r} has {len(order)} train examples; packing needs over {count}")
    queries, pool = order[:count], order[count:]
    cursor, out = 0, []
    for q in queries:
        query, demos = task.train[q], []
        while True:
            demo = task.train[pool[cursor % len(pool)]]
            cursor += 1
            demos.append(demo.prompt + demo.answer + demo.stop)
            example = dataclasses.replace(query, prompt="".join(demos) + query.prompt)
            if len(encode_example(tokenizer, example, max_length=10**9)[0]) >= length:
                break
        out.append(example)
    return out


def packed_batches(
    task: TaskData, tokenizer: Any, batch_size: int, length: int, seed: int
) -> Iterator[Batch]:
    """Endless batches of `batch_size` packed examples, each exactly `length` tokens (no padding)."""
    pad = pad_token_id(tokenizer)
    chunk = 0
    while True:
        examples = packed_examples(task, tokenizer, length, batch_size, seed=seed * 1000 + chunk)
        encoded = [encode_example(tokenizer, e, length) for e in examples]
        if any(len(ids) != length for ids, _ in encoded):  # the benchmark's premise: n really is `length`
            raise ValueError(f"packing gave lengths {[len(ids) for ids, _ in encoded]}, expected {length}")
        yield collate(encoded, pad)
        chunk += 1


# ---- the benchmark session -------------------------------------------------------------------------------


@dataclass
class Bench:
    """The model's tokenizer and shape, the task, and how to make batches and prepared methods."""

    settings: Settings
    task: TaskData
    tokenizer: Any
    num_blocks: int
    linear_shapes: dict[str, tuple[int, int]]

    @classmethod
    @contextlib.contextmanager
    def open(cls, settings: Settings) -> Iterator[Bench]:
        """The session, with torch's thread count set to `settings.threads` until it closes."""
        with limited_threads(settings.threads):
            loaded = load_model(settings.model, attn_implementation=settings.attn)
            shape = (loaded.anatomy.num_blocks, loaded.anatomy.linear_shapes())
            tokenizer = loaded.tokenizer
            del loaded  # only its tokenizer and shape are kept; each method loads its own model
            task = load_task(settings.task, seed=settings.seed)
            yield cls(settings, task, tokenizer, *shape)

    def batch(self, length: int) -> Batch:
        """The measurement batch: the first packed batch of the run's seed (the same for every method)."""
        return next(
            packed_batches(self.task, self.tokenizer, self.settings.batch_size, length, self.settings.seed)
        )

    def prepare(self, spec: MethodSpec, length: int) -> Prepared:
        """Load a fresh model, build and prepare `spec` (selection phases on other packed batches), through
        the assembly of every run (workbench.orchestration.assembly)."""
        s = self.settings
        setup = setup_run(spec.run_config(s, length), task=self.task)
        model = setup.loaded.model
        torch.manual_seed(s.seed)
        meter = _PhaseMeter(model)
        base = static_bytes(model)
        base_param_bytes = base["params_frozen"] + base["params_trainable"]

        def batches_for(examples: Sequence[Example]) -> Iterator[Batch]:
            subset = dataclasses.replace(self.task, train=list(examples))
            return packed_batches(subset, self.tokenizer, s.batch_size, length, s.seed + 2)

        start = time.perf_counter()
        prepare_method(
            setup,
            packed_batches(self.task, self.tokenizer, s.batch_size, length, s.seed + 1),
            phase=meter.phase,
            phase_step=meter.step,
            loss_fn=meter.loss,
            batches_for=batches_for,
        )
        prepare_seconds = time.perf_counter() - start
        params = setup.method.trainable_parameters()
        optimizer = torch.optim.AdamW(params.values(), lr=setup.lr, weight_decay=0.0)
        model.train()
        return Prepared(
            spec,
            setup.loaded,
            setup.method,
            params,
            optimizer,
            prepare_seconds,
            meter.phases,
            base_param_bytes,
        )


# ---- measurements ----------------------------------------------------------------------------------------


@dataclass
class Memory:
    """Logical bytes of one training step of a method on the measurement batch."""

    saved_bytes: int  # saved for backward by one forward
    # peak of the live saved bytes over forward and backward (recomputation under checkpointing included)
    saved_peak_bytes: int
    saved_by_kind: dict[str, int]  # the same, summed per module kind (q_proj, self_attn, mlp, ...)
    static: dict[str, int]  # params_frozen, params_trainable, gradients, optimizer_state

    @property
    def state_bytes(self) -> int:
        """Trainable parameters + gradients + optimizer state."""
        return sum(self.static[k] for k in ("params_trainable", "gradients", "optimizer_state"))


def train_step(p: Prepared, batch: Batch, *, measure: bool = False) -> Memory | None:
    """One training step as the loop runs it: forward in the method's context, backward, clip, AdamW.

    With `measure`, also the step's logical memory: the saved bytes of the forward, their live peak over
    forward and backward, and the static bytes after the AdamW step, while the gradients are still there
    and the optimizer state exists.
    """
    tracking = track_saved_tensors(p.model) if measure else contextlib.nullcontext()
    with tracking as tracker:
        with p.method.forward_context(batch):
            loss = answer_loss(p.model, batch)
        loss.backward()
    torch.nn.utils.clip_grad_norm_(p.params.values(), 1.0)
    p.optimizer.step()
    memory = None
    if measure:
        by_kind: dict[str, int] = {}
        for (_, kind), nbytes in tracker.by_location().items():
            by_kind[kind] = by_kind.get(kind, 0) + nbytes
        by_kind = dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))
        memory = Memory(
            tracker.total_bytes, tracker.peak_live_bytes, by_kind, static_bytes(p.model, p.optimizer)
        )
    p.optimizer.zero_grad(set_to_none=True)
    return memory


def time_steps(
    prepared: Sequence[Prepared], batch: Batch, repeats: int
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Wall and CPU seconds of one training step per method, `repeats` interleaved rounds of {label: s}
    (`workbench.orchestration.timing_pass.interleaved_rounds`: the study's timing pass does the same).

    CPU seconds (`time.process_time`, all threads of this process) do not count the time other
    processes hold the cores, so on a shared machine their ratios are the steadier of the two.
    """
    steps = {p.spec.label: functools.partial(train_step, p, batch) for p in prepared}
    return interleaved_rounds(steps, repeats)


def measure(
    prepared: Sequence[Prepared], batch: Batch, repeats: int, baseline: str = "lora"
) -> list[dict[str, Any]]:
    """Memory of every method, then interleaved step times; one row per method with ratios to `baseline`.

    The memory step also serves as each method's untimed first step (allocations, lazy init). Rows keep
    the seconds of every round (`step_seconds_all`), so `ratios_against` can use another baseline.
    """
    memory = {p.spec.label: train_step(p, batch, measure=True) for p in prepared}
    rounds, cpu_rounds = time_steps(prepared, batch, repeats)
    rows = []
    for p in prepared:
        m, label = memory[p.spec.label], p.spec.label
        rows.append(
            {
                "label": label,
                "method": p.spec.method,
                "options": dict(p.spec.options),
                "attn": p.model.config._attn_implementation,
                "checkpointing": p.model.is_activation_checkpointing,
                "trainable_params": p.trainable_count,
                "base_param_bytes": p.base_param_bytes,
                "saved_bytes": m.saved_bytes,
                "saved_peak_bytes": m.saved_peak_bytes,
                "saved_by_kind": m.saved_by_kind,
                "static": m.static,
                "state_bytes": m.state_bytes,
                "step_seconds": statistics.median(t[label] for t in rounds),
                "step_seconds_all": [t[label] for t in rounds],
                "step_cpu_seconds_all": [t[label] for t in cpu_rounds],
                "prepare_seconds": p.prepare_seconds,
                "phases": {name: dataclasses.asdict(c) for name, c in p.phases.items()},
            }
        )
    ratios = ratios_against(rows, baseline)
    for row in rows:
        row.update({f"{key}_ratio": value for key, value in ratios[row["label"]].items()})
    return rows


def ratios_against(rows: Sequence[Mapping[str, Any]], baseline: str) -> dict[str, dict[str, float]]:
    """{label: {"saved", "saved_peak", "state", "step", "step_cpu"}}: each method relative to the row
    `baseline`.

    Step (wall) and step_cpu: the median over rounds of the ratio within each round (both methods ran
    in the same round).
    """
    base = next(row for row in rows if row["label"] == baseline)

    def step_ratio(row: Mapping[str, Any], key: str) -> float:
        return statistics.median(t / b for t, b in zip(row[key], base[key], strict=True))

    return {
        row["label"]: {
            "saved": row["saved_bytes"] / base["saved_bytes"],
            "saved_peak": row["saved_peak_bytes"] / base["saved_peak_bytes"],
            "state": row["state_bytes"] / base["state_bytes"],
            "step": step_ratio(row, "step_seconds_all"),
            "step_cpu": step_ratio(row, "step_cpu_seconds_all"),
        }
        for row in rows
    }


def release(prepared: list[Prepared]) -> None:
    """Drop the prepared models (each holds a whole model) before the next configuration."""
    prepared.clear()
    gc.collect()


# ---- output ----------------------------------------------------------------------------------------------


Column = tuple[str, str, str]  # (header, row key, format spec)

MEMORY_COLUMNS: list[Column] = [
    ("method", "label", ""),
    ("trainable", "trainable_params", ",d"),
    ("saved MiB", "saved_mib", ".1f"),
    ("saved x", "saved_ratio", ".3f"),
    ("state MiB", "state_mib", ".2f"),
    ("state x", "state_ratio", ".3f"),
    ("step s", "step_seconds", ".2f"),
    ("step x", "step_ratio", ".3f"),
    ("cpu x", "step_cpu_ratio", ".3f"),
]


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A plain-text table; `saved_mib` / `state_mib` are derived from the byte columns."""

    def cell(row: Mapping[str, Any], key: str, spec: str) -> str:
        if key.endswith("_mib"):
            value: Any = row[key.removesuffix("_mib") + "_bytes"] / MIB
        else:
            value = row.get(key, "")
        return format(value, spec) if spec and isinstance(value, (int, float)) else str(value)

    cells = [[h for h, _, _ in columns]] + [[cell(r, k, s) for _, k, s in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU model (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Where the figures were taken (for the README table); `threads`: torch threads the run used."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "processor": cpu_name(),
        "cpus": os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def write_result(settings: Settings, name: str, payload: Mapping[str, Any]) -> Path:
    """Write `payload`, the settings and the machine as JSON to `<out>/<name>[-smoke].json` (its path)."""
    settings.out.mkdir(parents=True, exist_ok=True)
    path = settings.out / f"{name}{'-smoke' if settings.smoke else ''}.json"
    document = {
        "benchmark": name,
        "settings": dataclasses.asdict(settings),
        "machine": machine_info(settings.threads),
        **payload,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path

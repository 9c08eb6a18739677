"""How a run is assembled: load, check, build, prepare. The one path of every caller that needs a
prepared method (the training loop, the memory sweep, the method benchmarks, the recorder tests).

    setup = setup_run(config)                    # model + anatomy, method (checked), task; nothing written
    batches = train_stream(setup)                # the run's seeded training batches, on its device
    prepare_method(setup, batches, phase=...)    # PrepareContext -> method.prepare (swaps, selection phases)

`setup_run` raises every bad input (unknown model, method options the model cannot take, a max length
too short for the answers) before any caller touches the store.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from workbench.config import RunConfig
from workbench.data import Batch, EvalPlan, Example, TaskData, check_fits, load_task, train_batches
from workbench.data.chat import apply_template
from workbench.data.scoring import plan_evaluation
from workbench.lm import answer_loss
from workbench.methods import build_method
from workbench.methods.base import HeldTensor, Method, PhaseTraining, PrepareContext, check_method
from workbench.models import LoadedModel, load_model, resolve_device
from workbench.models.checkpointing import enable_gradient_checkpointing
from workbench.provenance import input_hashes, model_sha256

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class Setup:
    """Everything a run needs, loaded and validated; building it writes nothing."""

    config: RunConfig
    loaded: LoadedModel
    task: TaskData  # task.template applied
    method: Method
    device: torch.device
    lr: float  # the run's peak learning rate: train.lr, else the method's default
    inputs: dict[str, str]  # content hashes of the task and the model (workbench.provenance)
    evaluation: EvalPlan  # the metric every evaluation scores (train.eval_metric resolved) and its bound


def setup_run(config: RunConfig, *, task: TaskData | None = None) -> Setup:
    """Load the model (with train.attn, and checkpointing when train.gradient_checkpointing) and task and
    build the method; any bad input raises here, before the store.

    `task`: config.task already loaded with train.seed (the benchmarks prepare many methods on one task).
    """
    device = resolve_device(config.train.device)
    method = build_method(config.method, config.method_options)
    loaded = load_model(
        config.model,
        device=device,
        dtype=DTYPES[config.train.dtype],
        attn_implementation=config.train.attn,
    )
    model_hash = model_sha256(loaded.model)  # before checkpointing touches the model
    if config.train.gradient_checkpointing:
        enable_gradient_checkpointing(loaded.model, config.model)
    check_method(method, loaded.anatomy)  # the layout it needs (one error naming what lacks), its options
    task = task or load_task(config.task, seed=config.train.seed)
    inputs = input_hashes(model_hash, task)  # of the examples as read (the template is in the config)
    task = apply_template(task, loaded.tokenizer, config.template, model=config.model)
    check_fits(loaded.tokenizer, task.train + task.eval, config.train.max_length, task=task.name)
    t = config.train
    evaluation = plan_evaluation(task, loaded.tokenizer, t.eval_metric, t.max_new_tokens)
    lr = t.lr if t.lr is not None else method.default_lr
    return Setup(config, loaded, task, method, device, lr, inputs, evaluation)


def config_inputs(config: RunConfig) -> dict[str, str]:
    """The content hashes a run of `config` would record (its `environment.inputs`): its task loaded
    the way `setup_run` loads it, and its model's hash, computed once per (model, dtype) in a process
    (a sweep loads each model once to hash it)."""
    task = load_task(config.task, seed=config.train.seed)
    return input_hashes(_model_hash(config.model, config.train.dtype), task)


@functools.lru_cache(maxsize=8)
def _model_hash(model: str, dtype: str) -> str:
    return model_sha256(load_model(model, device="cpu", dtype=DTYPES[dtype]).model)


def train_stream(setup: Setup, examples: Sequence[Example] | None = None) -> Iterator[Batch]:
    """Endless seeded training batches on the run's device: of the task's train split (capped at
    train.train_examples), or of just `examples` (e.g. one class, for SPSFT's qm_taylor)."""
    cfg = setup.config.train
    if examples is None:
        task, limit = setup.task, cfg.train_examples
    else:
        task, limit = dataclasses.replace(setup.task, train=list(examples)), None
    batches = train_batches(task, setup.loaded.tokenizer, cfg.batch_size, cfg.max_length, cfg.seed, limit)
    return (b.to(setup.device) for b in batches)


def prepare_method(
    setup: Setup,
    batches: Iterator[Batch],
    *,
    phase: Callable[[str], AbstractContextManager[None]] | None = None,
    phase_step: Callable[[list[HeldTensor]], None] | None = None,
    loss_fn: Callable[[Batch], torch.Tensor] | None = None,
    batches_for: Callable[[Sequence[Example]], Iterator[Batch]] | None = None,
) -> None:
    """Build the PrepareContext and run `setup.method.prepare` (module swaps, selection phases).

    `batches`: the stream the selection phases draw from (the loop keeps drawing from it afterwards).
    `phase`: a context that times and measures each selection phase as its own phase (recorders,
    benchmarks), and `phase_step` receives each step of a phase with what it holds (recorders); none by
    default. `loss_fn`: the answer loss of the model by default. `batches_for`:
    batches of given examples, `train_stream(setup, examples)` by default.
    """
    model = setup.loaded.model
    model.train()  # selection phases train like the steps do (dropout, gradient checkpointing)
    timed = {} if phase is None else {"phase": phase}  # else PrepareContext's defaults: no phases
    if phase_step is not None:
        timed["phase_step"] = phase_step
    train = setup.config.train
    ctx = PrepareContext(
        model=model,
        anatomy=setup.loaded.anatomy,
        task=setup.task,
        batches=batches,
        loss_fn=loss_fn or (lambda batch: answer_loss(model, batch)),
        lr=setup.lr,
        seed=train.seed,
        batches_for=batches_for or (lambda examples: train_stream(setup, examples)),
        training=PhaseTraining(train.grad_accum, train.max_grad_norm, train.warmup_ratio, train.weight_decay),
        **timed,
    )
    setup.method.prepare(ctx)

"""THE training loop, shared by every method.

    config -> load model, task, method (all validation happens here, before anything is written)
           -> run store -> evaluate -> method.prepare (selection phases) -> steps -> evaluate -> save

Method behaviour enters only through the Method contract (workbench/methods/base.py); measurement
only through recorders (workbench/recorders). Reads top to bottom: `train` is the whole story.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from workbench.config import RunConfig
from workbench.data import TaskData, check_fits, evaluate, load_task, train_batches
from workbench.errors import RunStopped
from workbench.lm import answer_loss
from workbench.methods import build_method
from workbench.methods.base import PrepareContext
from workbench.models import LoadedModel, load_model, resolve_device
from workbench.recorders import default_recorders
from workbench.recorders.base import RecordingSession, StepInfo
from workbench.store import RunWriter, environment_info


@dataclass
class Setup:
    """Everything a run needs, loaded and validated; building it writes nothing."""

    config: RunConfig
    loaded: LoadedModel
    task: TaskData
    method: Any
    device: torch.device
    lr: float


@dataclass
class RunResult:
    """What `train` returns: where the run is and how it ended."""

    run_id: str
    run_dir: str
    status: str
    summary: dict[str, Any]


def setup_run(config: RunConfig) -> Setup:
    """Load the model and task and build the method; any bad input raises here, before the store."""
    device = resolve_device(config.train.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.train.dtype]
    method = build_method(config.method, config.method_options)
    loaded = load_model(config.model, device=device, dtype=dtype)
    method.check(loaded.anatomy)
    task = load_task(config.task, seed=config.train.seed)
    check_fits(loaded.tokenizer, task.train + task.eval, config.train.max_length, task=task.name)
    lr = config.train.lr if config.train.lr is not None else method.default_lr
    return Setup(config, loaded, task, method, device, lr)


def train(config: RunConfig, *, progress: bool = True, recorders: list | None = None) -> RunResult:
    """Fine-tune as `config` says, recording into a new run under `config.runs_dir`."""
    setup = setup_run(config)
    recorders = default_recorders(config.record) if recorders is None else recorders
    writer = RunWriter.create(
        config.runs_dir,
        name=config.display_name,
        config=config.to_dict(),
        environment=environment_info(setup.device),
    )
    with writer:
        summary = _run(setup, writer, recorders, progress)
        writer.update_summary(**summary)
        writer.finish("completed")
    return RunResult(writer.run_id, str(writer.run_dir), "completed", writer.summary)


def _run(setup: Setup, writer: RunWriter, recorders: list, progress: bool) -> dict[str, Any]:
    cfg, model, tok = setup.config.train, setup.loaded.model, setup.loaded.tokenizer
    torch.manual_seed(cfg.seed)
    batches = train_batches(setup.task, tok, cfg.batch_size, cfg.max_length, cfg.seed, cfg.train_examples)
    device_batches: Iterator = (b.to(setup.device) for b in batches)

    def run_eval(step: int) -> float:
        t0 = time.perf_counter()
        result = evaluate(
            model,
            tok,
            setup.task.eval[: cfg.eval_examples],
            max_length=cfg.max_length,
            batch_size=cfg.eval_batch_size,
            device=setup.device,
        )
        writer.add(
            "metrics", [{"step": step, "split": "eval", "name": "accuracy", "value": result["accuracy"]}]
        )
        writer.add("timing", [{"step": step, "phase": "eval", "seconds": time.perf_counter() - t0}])
        return result["accuracy"]

    accuracy_before = run_eval(0) if cfg.eval_examples else math.nan
    session = RecordingSession(model, setup.loaded.anatomy, setup.method, writer, setup.device)
    ctx = PrepareContext(
        model=model,
        anatomy=setup.loaded.anatomy,
        task=setup.task,
        batches=device_batches,
        loss_fn=lambda batch: answer_loss(model, batch),
        lr=setup.lr,
        seed=cfg.seed,
        phase=_phase_recorder(writer, recorders),
        batches_for=lambda examples: (
            b.to(setup.device)
            for b in train_batches(
                dataclasses.replace(setup.task, train=list(examples)),
                tok,
                cfg.batch_size,
                cfg.max_length,
                cfg.seed,
            )
        ),
    )
    for recorder in recorders:
        recorder.attach(session)
    setup.method.prepare(ctx)
    params = setup.method.trainable_parameters()
    optimizer = torch.optim.AdamW(params.values(), lr=setup.lr, weight_decay=cfg.weight_decay)
    session.optimizer = optimizer
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_linear_decay(cfg.steps, cfg.warmup_ratio)
    )

    model.train()
    accuracies, step_seconds = [accuracy_before], []
    bar = tqdm(range(1, cfg.steps + 1), desc=f"{setup.config.method} training", disable=not progress)
    for step in bar:
        seconds = {"forward": 0.0, "backward": 0.0}
        total_loss = 0.0
        with contextlib.ExitStack() as stack:
            for recorder in recorders:
                stack.enter_context(recorder.step_context(step))
            for _ in range(cfg.grad_accum):
                batch = next(device_batches)
                t0 = time.perf_counter()
                with setup.method.forward_context(batch):
                    loss = answer_loss(model, batch) / cfg.grad_accum
                t1 = time.perf_counter()
                loss.backward()
                seconds["forward"] += t1 - t0
                seconds["backward"] += time.perf_counter() - t1
                total_loss += loss.item()
                for recorder in recorders:
                    getattr(recorder, "micro_batch_done", lambda: None)()
        if not math.isfinite(total_loss):
            raise RunStopped(f"loss became {total_loss} at step {step}: the run was stopped (try a lower lr)")
        t0 = time.perf_counter()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        seconds["optimizer"] = time.perf_counter() - t0
        info = StepInfo(step, total_loss, scheduler.get_last_lr()[0], seconds)
        for recorder in recorders:
            recorder.on_step_end(info)
        optimizer.zero_grad(set_to_none=True)
        step_seconds.append(sum(seconds.values()))
        writer.add(
            "metrics",
            [
                {"step": step, "split": "train", "name": "loss", "value": total_loss},
                {"step": step, "split": "train", "name": "lr", "value": info.lr},
            ],
        )
        writer.add("timing", [{"step": step, "phase": p, "seconds": s} for p, s in seconds.items()])
        bar.set_postfix(loss=f"{total_loss:.4f}")
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            accuracies.append(run_eval(step))
        if step % cfg.flush_every == 0:
            writer.flush()
    accuracy_after = run_eval(cfg.steps) if cfg.eval_examples else math.nan
    accuracies.append(accuracy_after)
    for recorder in recorders:
        recorder.detach()
    if cfg.save_weights:
        writer.add_tensors(
            "adapter", {k: v.detach().cpu().contiguous() for k, v in setup.method.adapter_state().items()}
        )
    summary: dict[str, Any] = {
        "accuracy_before": accuracy_before,
        "accuracy_after": accuracy_after,
        "accuracy_best": max(a for a in accuracies if not math.isnan(a)) if cfg.eval_examples else None,
        "median_step_seconds": statistics.median(step_seconds),
        "trainable_parameters": sum(p.numel() for p in params.values()),
        "total_parameters": setup.loaded.num_parameters,
        "lr": setup.lr,
        "final_loss": total_loss,
    }
    for recorder in recorders:
        summary.update(recorder.summary())
    return summary


def _phase_recorder(writer: RunWriter, recorders: list) -> Callable[[str], contextlib.AbstractContextManager]:
    """ctx.phase(name): time a selection phase and let recorders measure it as its own phase."""

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        seconds = time.perf_counter() - t0
        writer.add("timing", [{"step": 0, "phase": name, "seconds": seconds}])
        for recorder in recorders:
            recorder.on_phase(name, seconds)

    return phase


def _warmup_linear_decay(steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over warmup_ratio * steps, then linear decay to 0 at `steps`."""
    warmup = int(warmup_ratio * steps)

    def factor(i: int) -> float:  # i = optimizer steps taken so far
        if i < warmup:
            return (i + 1) / (warmup + 1)
        return max(0.0, (steps - i) / max(1, steps - warmup))

    return factor

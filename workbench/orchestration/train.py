"""THE training loop, shared by every method.

    config -> setup_run (load model, task, method: all validation happens there, before anything is
              written) -> run store -> evaluate -> prepare_method (selection phases) -> steps -> evaluate
              -> save

Method behaviour enters only through the Method contract (workbench/methods/base.py); measurement
only through recorders (workbench/recorders); the assembly (workbench/orchestration/assembly.py) is
shared with the memory sweep and the benchmarks. Reads top to bottom: `train` is the whole story.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from workbench.config import RunConfig
from workbench.data import Example, evaluate
from workbench.errors import RunStopped, StoreError
from workbench.orchestration.assembly import Setup, prepare_method, setup_run, train_stream
from workbench.orchestration.distributed import RANK_RECORDERS, DataParallel, single_process
from workbench.orchestration.signals import raise_if_stopped, stop_on_signals
from workbench.recorders import Recording, RecordingSession, StepInfo, default_recorders
from workbench.schedule import warmup_linear_decay
from workbench.stats import wilson_interval
from workbench.store import RankWriter, RunWriter, environment_info


@dataclass
class RunResult:
    """What `train` returns: where the run is and how it ended."""

    run_id: str
    run_dir: str
    status: str
    summary: dict[str, Any]


def train(config: RunConfig, *, progress: bool = True, recorders: list | None = None) -> RunResult:
    """Fine-tune as `config` says, recording into a new run under `config.runs_dir`.

    `recorders` replaces the ones `config.record` switches on (workbench.recorders.default_recorders).
    Started by torchrun or accelerate launch (WORLD_SIZE > 1), every process runs this together as one
    data-parallel run (workbench.orchestration.distributed).
    """
    parallel = DataParallel.from_environment()
    if parallel is None:
        return _train(config, None, progress, recorders)
    parallel.start(config.train.device)
    try:
        return _train(config, parallel, progress and parallel.main, recorders)
    finally:
        parallel.stop()


def _train(
    config: RunConfig, parallel: DataParallel | None, progress: bool, recorders: list | None
) -> RunResult:
    setup = setup_run(config)
    recorders = default_recorders(config.record) if recorders is None else recorders
    environment = {**environment_info(setup.device), "inputs": setup.inputs}
    if parallel is not None:
        parallel.check_method(setup.method)
        environment["data_parallel"] = parallel.environment()
        if not parallel.main:
            recorders = [r for r in recorders if r.name in RANK_RECORDERS]
    writer = _open_writer(config, environment, parallel)
    with stop_on_signals(), writer:
        summary = _run(setup, writer, Recording(recorders), progress, parallel)
        if parallel is not None:  # every rank's rows on disk before rank 0 records the run completed
            writer.flush()
            parallel.barrier()
        writer.update_summary(**summary)
        writer.finish("completed")
    return RunResult(writer.run_id, str(writer.run_dir), "completed", writer.summary)


def _open_writer(config: RunConfig, environment: dict[str, Any], parallel: DataParallel | None) -> RunWriter:
    """A new run (rank 0 of a data-parallel run makes it and tells the others, who join it)."""

    def create() -> RunWriter:
        return RunWriter.create(
            config.runs_dir, name=config.display_name, config=config.to_dict(), environment=environment
        )

    if parallel is None:
        return create()
    if parallel.main:
        try:
            writer = create()
        except BaseException:
            parallel.share(None)
            raise
        parallel.share(str(writer.path))
        return writer
    path = parallel.share(None)
    if path is None:
        raise RunStopped("rank 0 could not create the run (its error says why)")
    return RankWriter(Path(path), parallel.rank)


def _run(
    setup: Setup, writer: RunWriter, recording: Recording, progress: bool, parallel: DataParallel | None
) -> dict[str, Any]:
    cfg, model, tok = setup.config.train, setup.loaded.model, setup.loaded.tokenizer
    scoring = bool(cfg.eval_examples) and (parallel is None or parallel.main)  # rank 0 evaluates
    torch.manual_seed(cfg.seed)
    device_batches = train_stream(setup)
    session = RecordingSession(
        model,
        setup.loaded.anatomy,
        setup.method,
        writer,
        setup.device,
        tokenizer=tok,
        task=setup.task,
        max_length=cfg.max_length,
        grad_accum=cfg.grad_accum,
    )

    scored: dict[int, dict[str, Any]] = {}  # step -> evaluation result (its counts give the intervals)

    def run_eval(step: int) -> float:
        examples = setup.task.eval[: cfg.eval_examples]

        def score() -> dict[str, Any]:
            return evaluate(
                model,
                tok,
                examples,
                max_length=cfg.max_length,
                batch_size=cfg.eval_batch_size,
                device=setup.device,
                metric=setup.evaluation.metric,
                max_new_tokens=setup.evaluation.max_new_tokens,
                progress=progress,
            )

        with recording.phase("eval", step):
            result = _evaluate_untrained(setup, score) if step == 0 else score()
        writer.add("metrics", _metric_rows(step, result))
        writer.add("predictions", _prediction_rows(step, result, examples))
        scored[step] = result
        return result["score"]

    with recording.attached(session):
        accuracy_before = run_eval(0) if scoring else math.nan
        # selection phases draw from the loop's own batches and are timed and measured as their own phases
        prepare_method(setup, device_batches, phase=recording.phase, phase_step=recording.phase_step)
        params = setup.method.trainable_parameters()
        if parallel is None:
            runner, batches = single_process(model), device_batches
        else:  # after the same selection on every rank: DDP, and each rank its share of the batches
            parallel.check_same_parameters(params)
            runner, batches = parallel.wrap(model, setup.device), parallel.deal(device_batches)
        optimizer = torch.optim.AdamW(params.values(), lr=setup.lr, weight_decay=cfg.weight_decay)
        session.optimizer = optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_linear_decay(cfg.steps, cfg.warmup_ratio)
        )
        recording.prepared()

        model.train()
        accuracies, step_seconds = [accuracy_before], []
        bar = tqdm(range(1, cfg.steps + 1), desc=f"{setup.config.method} training", disable=not progress)
        for step in bar:
            raise_if_stopped()
            seconds = {"forward": 0.0, "backward": 0.0}
            total_loss = 0.0
            with recording.step(step):
                for micro in range(cfg.grad_accum):
                    batch = next(batches)
                    with runner.context(sync=micro == cfg.grad_accum - 1):
                        t0 = time.perf_counter()
                        with setup.method.forward_context(batch):
                            loss = runner.loss(batch) / cfg.grad_accum
                        t1 = time.perf_counter()
                        loss.backward()
                    seconds["forward"] += t1 - t0
                    seconds["backward"] += time.perf_counter() - t1
                    total_loss += loss.item()
                    recording.micro_batch_end(step, batch)
            if parallel is not None:
                total_loss = parallel.mean(total_loss, setup.device)  # the step's loss over every rank
            if not math.isfinite(total_loss):
                raise RunStopped(
                    f"loss became {total_loss} at step {step}: the run was stopped (try a lower lr)"
                )
            recording.backward_end(step)  # gradients complete, not yet clipped
            t0 = time.perf_counter()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            seconds["optimizer"] = time.perf_counter() - t0
            step_seconds.append(sum(seconds.values()))
            info = StepInfo(step, total_loss, scheduler.get_last_lr()[0], dict(seconds))
            recording.step_end(info)  # before zero_grad: recorders may still read the gradients
            optimizer.zero_grad(set_to_none=True)
            writer.add("metrics", train_metric_rows(step, total_loss, info.lr))
            bar.set_postfix(loss=f"{total_loss:.4f}")
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                accuracies.append(run_eval(step))
            if step % cfg.flush_every == 0:
                flush_rows(writer, step)
        accuracy_after = run_eval(cfg.steps) if scoring else math.nan
        accuracies.append(accuracy_after)
        recorded = recording.summary()
    if cfg.save_weights and (parallel is None or parallel.main):
        writer.add_tensors(
            "adapter", {k: v.detach().cpu().contiguous() for k, v in setup.method.adapter_state().items()}
        )
    summary: dict[str, Any] = {
        # accuracy_* hold the score of the run's eval metric: "accuracy" (the most likely candidate) or
        # "exact_match" (a greedy generation equal to the reference after normalisation)
        "eval_metric": setup.evaluation.score_name,
        "max_new_tokens": (
            setup.evaluation.max_new_tokens if setup.evaluation.metric == "exact_match" else None
        ),
        "accuracy_before": accuracy_before,
        "accuracy_after": accuracy_after,
        # 95% Wilson intervals on the scored examples (None without evaluation)
        "accuracy_before_ci": _interval(scored.get(0)),
        "accuracy_after_ci": _interval(scored.get(cfg.steps)),
        "eval_examples_scored": scored[cfg.steps]["n"] if cfg.steps in scored else 0,
        "answer_loglik_per_token_before": scored[0]["answer_loglik_per_token"] if 0 in scored else None,
        "answer_loglik_per_token_after": (
            scored[cfg.steps]["answer_loglik_per_token"] if cfg.steps in scored else None
        ),
        "accuracy_best": max(a for a in accuracies if not math.isnan(a)) if scoring else None,
        "median_step_seconds": statistics.median(step_seconds),
        "trainable_parameters": sum(p.numel() for p in params.values()),
        "total_parameters": setup.loaded.num_parameters,
        "lr": setup.lr,
        "final_loss": total_loss,
        "method_resolved": setup.method.resolved_options(),  # e.g. SMT's block size, SPSFT's rows
    }
    summary.update(recorded)
    return summary


# Evaluations of untrained models: every run of a sweep or study on the same model, data, seed and
# kernel scores the same untrained model before training, so a process scores it once (the result is
# the same to the bit; the run records it like any other).
_UNTRAINED: dict[str, dict[str, Any]] = {}


def _evaluate_untrained(setup: Setup, score: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`score()` of the untrained model, remembered per (input hashes, evaluation settings)."""
    t = setup.config.train
    settings = (
        t.eval_examples,
        t.max_length,
        t.eval_batch_size,
        t.attn,
        t.dtype,
        str(setup.device),
        setup.config.template,
        setup.evaluation.metric,
        setup.evaluation.max_new_tokens,
    )
    key = json.dumps([setup.inputs, settings], sort_keys=True)
    if key not in _UNTRAINED:
        if len(_UNTRAINED) >= 8:
            _UNTRAINED.pop(next(iter(_UNTRAINED)))
        _UNTRAINED[key] = score()
    return _UNTRAINED[key]


def _metric_rows(step: int, result: dict[str, Any]) -> list[dict[str, Any]]:
    """An evaluation's score under its metric's name ("accuracy" or "exact_match"), its 95% Wilson
    interval (`<name>_low`, `<name>_high`) and the reference answer's log-likelihood per token."""
    name = result["metric"]
    low, high = _interval(result) or [math.nan, math.nan]
    values = {name: result["score"], f"{name}_low": low, f"{name}_high": high}
    values["answer_loglik_per_token"] = result["answer_loglik_per_token"]
    return [{"step": step, "split": "eval", "name": k, "value": v} for k, v in values.items()]


def _prediction_rows(step: int, result: dict[str, Any], examples: list[Example]) -> dict[str, list[Any]]:
    """Per example: correct, and the chosen candidate (loglik) or the generated answer (exact_match)."""
    n = len(examples)
    ranked = "predictions" in result
    return {
        "step": [step] * n,
        "example": list(range(n)),
        "label": [e.label for e in examples] if ranked else [None] * n,
        "predicted": result["predictions"] if ranked else [None] * n,
        "generated": result.get("generations") or [None] * n,
        "correct": result["correct_mask"],
    }


def _interval(result: dict[str, Any] | None) -> list[float] | None:
    """[low, high] of an evaluation's accuracy (`workbench.stats.wilson_interval`), None without one."""
    if not result or not result["n"]:
        return None
    return list(wilson_interval(result["correct"], result["n"]))


def train_metric_rows(step: int, loss: float | None, lr: float | None) -> list[dict[str, Any]]:
    """The metrics rows of a training step: its loss and learning rate (a value not known is left out)."""
    values = (("loss", loss), ("lr", lr))
    return [{"step": step, "split": "train", "name": n, "value": v} for n, v in values if v is not None]


def flush_rows(writer: RunWriter, step: int) -> None:
    """Write the buffered rows; a store that cannot take them (full disk, read-only) stops the run."""
    try:
        writer.flush()
    except StoreError as err:
        raise RunStopped(
            f"could not write the recorded rows at step {step} ({err}); the run was stopped so that no "
            "recorded data is lost silently"
        ) from err

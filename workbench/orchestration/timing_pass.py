"""Step times that survive a loaded machine: every configuration timed in interleaved rounds.

    result = run_timing_pass({"lora": lora_config, "sage": sage_config}, "runs/study", baseline="lora")
    result.ratios["sage"]            # {"wall": (median, low, high), "cpu": (...)}: per-round ratios to lora

Timing runs one after another (as training does) compares a quiet minute with a busy one. Here each
configuration is prepared on its own model (selection phases included, not timed), then `rounds`
rounds time one training step of each on the *same* batch, the order rotated every round, so a load
spike hits every method of a round alike. A ratio is taken within each round and the median over
rounds reported, with the lowest and highest round, for wall time and for process CPU time (which
does not count the time other processes hold the cores). torch runs on `threads` threads (default 1):
OpenMP threads spin-wait for each other, and on a machine whose cores other processes also use a
2-thread step was measured 13x slower than a 1-thread one.

The pass is recorded as its own run in the store (kind "timing-pass": its summary holds the medians
and ratios, `timing_pass.json` every round), reused by a later call with the same configurations,
rounds and threads.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from workbench.config import RunConfig
from workbench.errors import ConfigError
from workbench.orchestration.signals import stop_on_signals
from workbench.provenance import json_digest

KIND = "timing-pass"
DEFAULT_ROUNDS = 7
DEFAULT_THREADS = 1


@dataclass
class TimingPass:
    """Seconds per step of every label in every round, and the ratios to the baseline."""

    run_id: str
    baseline: str
    threads: int
    wall: list[dict[str, float]]  # per round: label -> seconds of one step
    cpu: list[dict[str, float]]  # the same in process CPU seconds
    configs: dict[str, dict[str, Any]]  # label -> the RunConfig dict it timed

    def seconds(self, label: str, clock: str = "wall") -> float:
        """Median seconds of one step of `label` over the rounds."""
        return statistics.median(r[label] for r in getattr(self, clock))

    def ratio(self, label: str, clock: str = "wall") -> tuple[float, float, float]:
        """(median, lowest, highest) over rounds of `label`'s step time / the baseline's, same round."""
        return round_ratios(getattr(self, clock), label, self.baseline)

    @property
    def labels(self) -> list[str]:
        return list(self.wall[0]) if self.wall else []

    def summary(self) -> dict[str, Any]:
        """The run summary: per label, median seconds and ratios (median, low, high) per clock."""
        return {
            "baseline": self.baseline,
            "threads": self.threads,
            "rounds": len(self.wall),
            "labels": {
                label: {
                    clock: {"seconds": self.seconds(label, clock), "ratio": list(self.ratio(label, clock))}
                    for clock in ("wall", "cpu")
                }
                for label in self.labels
            },
        }


def round_ratios(rounds: list[dict[str, float]], label: str, baseline: str) -> tuple[float, float, float]:
    """(median, lowest, highest) over `rounds` ({label: seconds} each) of `label`'s seconds / the
    baseline's seconds in the same round."""
    per_round = [r[label] / r[baseline] for r in rounds]
    return statistics.median(per_round), min(per_round), max(per_round)


def interleaved_rounds(
    steps: Mapping[str, Callable[[], None]], rounds: int
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Wall and process-CPU seconds of each callable, `rounds` rounds of {label: seconds}; round r starts
    with the r-th label (mod their count), so no label always runs first or after the same one."""
    labels = list(steps)
    wall: list[dict[str, float]] = []
    cpu: list[dict[str, float]] = []
    for r in range(rounds):
        wall.append({})
        cpu.append({})
        for i in range(len(labels)):
            label = labels[(r + i) % len(labels)]
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[label]()
            wall[-1][label] = time.perf_counter() - start
            cpu[-1][label] = time.process_time() - start_cpu
    return wall, cpu


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU thread count set to `threads` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pass_config(configs: Mapping[str, RunConfig], baseline: str, rounds: int, threads: int) -> dict[str, Any]:
    """The config a timing-pass run records: what it timed and how (its reuse key)."""
    return {
        "kind": KIND,
        "baseline": baseline,
        "rounds": rounds,
        "threads": threads,
        "configs": {label: {**c.to_dict(), "name": None, "runs_dir": None} for label, c in configs.items()},
    }


def pass_key(config: Mapping[str, Any]) -> str:
    return json_digest(config)


def check_pass_settings(rounds: Any, threads: Any) -> None:
    """One ConfigError for a round or thread count that is not a positive integer."""
    for name, value, least in (("timing rounds", rounds, 2), ("timing threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")


def run_timing_pass(
    configs: Mapping[str, RunConfig],
    runs_dir: str | os.PathLike[str],
    *,
    baseline: str,
    rounds: int = DEFAULT_ROUNDS,
    threads: int = DEFAULT_THREADS,
    rerun: bool = False,
    progress: bool = True,
) -> TimingPass:
    """Time one training step of every configuration (label -> RunConfig, e.g. each study entry at its
    first seed) in `rounds` interleaved rounds on one batch, on `threads` torch threads, and record the
    pass as a run in `runs_dir`; a completed pass with the same settings there is reused unless
    `rerun`."""
    check_pass_settings(rounds, threads)
    if baseline not in configs:
        raise ConfigError(
            f"timing baseline {baseline!r} is not among the configurations: {', '.join(configs)}"
        )
    config = pass_config(configs, baseline, rounds, threads)
    if not rerun:
        found = _finished_pass(runs_dir, pass_key(config))
        if found is not None:
            return found
    from workbench.models import resolve_device
    from workbench.store import RunWriter, environment_info

    first = next(iter(configs.values()))
    writer = RunWriter.create(
        runs_dir, name=f"timing pass ({len(configs)} configurations)", config=config,
        environment=environment_info(resolve_device(first.train.device)),
    )  # fmt: skip
    with stop_on_signals(), writer, torch_threads(threads):
        steps = prepared_steps(configs, baseline, progress)
        for step in steps.values():  # one untimed step each: first-call costs (allocation, caches)
            step()
        wall, cpu = interleaved_rounds(steps, rounds)
        result = TimingPass(writer.id, baseline, threads, wall, cpu, config["configs"])
        writer.write_json("timing_pass", {"wall": wall, "cpu": cpu})
        writer.update_summary(timing_pass=result.summary())
        writer.finish("completed")
    del steps
    gc.collect()
    return result


def prepared_steps(
    configs: Mapping[str, RunConfig], baseline: str, progress: bool
) -> dict[str, Callable[[], None]]:
    """label -> one training step of that configuration on the baseline's first training batch."""
    from tqdm.auto import tqdm

    from workbench.models.loading import no_loading_bars
    from workbench.orchestration.assembly import prepare_method, setup_run, train_stream

    steps: dict[str, Callable[[], None]] = {}
    batch = None
    labels: Sequence[str] = [baseline] + [label for label in configs if label != baseline]
    quiet = no_loading_bars() if progress else contextlib.nullcontext()  # the one bar: this one
    with quiet:
        for label in tqdm(labels, desc="timing pass: preparing", disable=not progress):
            setup = setup_run(configs[label])
            torch.manual_seed(setup.config.train.seed)
            stream = train_stream(setup)
            prepare_method(setup, stream)  # selection phases (SMT warm-up, SPSFT importance), untimed
            batch = batch if batch is not None else next(stream)
            steps[label] = _training_step(setup, batch)
    return {label: steps[label] for label in configs}


def _training_step(setup: Any, batch: Any) -> Callable[[], None]:
    """One step as the training loop takes it: forward in the method's context, backward, clip, AdamW."""
    from workbench.lm import answer_loss

    model, method, cfg = setup.loaded.model, setup.method, setup.config.train
    params = list(method.trainable_parameters().values())
    optimizer = torch.optim.AdamW(params, lr=setup.lr, weight_decay=cfg.weight_decay)
    model.train()

    def step() -> None:
        with method.forward_context(batch):
            loss = answer_loss(model, batch)
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _finished_pass(runs_dir: str | os.PathLike[str], key: str) -> TimingPass | None:
    """The newest completed timing pass in `runs_dir` with settings key `key`."""
    from workbench.errors import StoreError
    from workbench.store import list_runs

    found = None
    for entry in list_runs(runs_dir):
        run = entry.reader
        if run is None or run.status != "completed" or run.config.get("kind") != KIND:
            continue
        if pass_key(run.config) != key:
            continue
        try:
            rounds = run.json("timing_pass")
            c = run.config
            found = TimingPass(
                run.id, c["baseline"], c["threads"], rounds["wall"], rounds["cpu"], c["configs"]
            )
        except (StoreError, KeyError, TypeError):
            continue  # an unreadable pass is not reused: it runs again
    return found

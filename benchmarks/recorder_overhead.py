"""Recorder overhead: step time with all recorders on (default cadence) and all off, vs none (issue 6).

    python benchmarks/recorder_overhead.py                      # smollm2-135m on polarity, lora and sage
    python benchmarks/recorder_overhead.py --repeats 5 --steps 40 --threads 1
    python benchmarks/recorder_overhead.py --frozen             # also: on + record.grads_frozen
    python benchmarks/recorder_overhead.py --smoke              # tiny-llama, seconds: checks the script works

Variants, each training through the real loop (`workbench.orchestration.train.train`) with the same
seed, so the same batches in the same order:
- none: no recorder attached (only the benchmark's clock);
- off: every recorder attached (probe built, selections read) but never due (`every` = NEVER);
- on: every recorder at its RecordConfig default (memory and timing every step, gradients and saliency
  every 10 steps on 4 probe examples, blocks / rows once after selection);
- frozen (with --frozen): on, plus the opt-in gradients of the frozen dense projections (grads_frozen);
- nofidelity: on without the fidelity recorder (record.fidelity = false): `on / nofidelity` is what the
  fidelity recorder costs at its default cadence (issue 15's target: <= 1.25x). `--variants` picks a
  subset, e.g. `--variants none,on,nofidelity` (the interleaved "off" figure needs "off").
Step time = time between the ends of consecutive steps as a clock recorder placed after all the others
sees it: forward, backward, optimizer, every recorder hook, zero_grad, the loop's own rows and flushes.
Steps 2 .. steps+1 are timed (step 1 pays one-off costs in every variant); with the default 20 steps,
recorded steps 10 and 20 fall inside at exactly the 1-in-10 cadence. Two clocks: wall time, and this
process's CPU time, which other processes on a shared machine disturb far less (with one torch thread
it is the step's compute). Each repetition runs the variants back to back, rotating their order, the
ratio to `none` is taken within each repetition, and the median over repetitions is reported. A short
untimed run per method comes first, so one-off costs of the process hit no variant.
A third figure, `x hooks`, is 1 + (seconds per step inside the recorders' hooks, as the loop counts
them) / (the unrecorded step): what the recorders' own code adds, free of the run-to-run noise of
separate runs (several percent on a shared machine), but blind to indirect costs (caches, allocator).
And `off x interleaved`: one more run per method in which the "off" recorders stay attached but their
step hooks are called on odd steps only, on one batch repeated every step (train_examples = batch
size): the median over odd steps of the step's time over the mean of its two even neighbours. Adjacent
steps share the machine's state, so this end-to-end figure does not carry the drift between runs.
Targets: on <= 1.15x, off <= 1.02x (issue 6, before the fidelity recorder joined "on"); fidelity <= 1.25x.
Figures in benchmarks/results/recorder_overhead.json.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/x.py` from anywhere

import torch  # noqa: E402

import workbench.methods.sage  # noqa: E402,F401  (registers sage)
from benchmarks.common import Column, base_parser, format_table, settings_from_args, write_result  # noqa: E402
from workbench.config import RecordConfig, RunConfig, TrainConfig  # noqa: E402
from workbench.orchestration.train import train  # noqa: E402
from workbench.recorders import (  # noqa: E402
    NEVER,
    BlockRecorder,
    FidelityRecorder,
    GradRecorder,
    MemoryRecorder,
    RecorderBase,
    RowRecorder,
    SaliencyRecorder,
    StepInfo,
    TimingRecorder,
    default_recorders,
)
from workbench.store import RunReader  # noqa: E402

VARIANTS = ("none", "off", "on")  # + "frozen" with --frozen; "nofidelity" with --variants
CLOCKS = ("wall", "cpu")
TARGETS = {"on": 1.15, "off": 1.02}
FIDELITY_TARGET = 1.25  # on / nofidelity


class StepClock(RecorderBase):
    """Wall and CPU time at the end of every step, after every other recorder's hook (keep it last),
    and the seconds the step spent inside the other recorders' hooks (the loop's own count)."""

    name = "clock"

    def __init__(self) -> None:
        super().__init__()
        self.ends: dict[int, tuple[float, float]] = {}
        self.hooks: dict[int, float] = {}

    def on_step_end(self, info: StepInfo) -> None:
        self.ends[info.step] = (time.perf_counter(), time.process_time())
        self.hooks[info.step] = info.seconds.get("recording", 0.0)

    def mean_step(self, first: int, last: int) -> dict[str, float]:
        """{"wall": s, "cpu": s, "hooks": s}: mean seconds per step over steps first..last."""
        count = last - first + 1
        out = {c: (self.ends[last][i] - self.ends[first - 1][i]) / count for i, c in enumerate(CLOCKS)}
        out["hooks"] = sum(self.hooks[step] for step in range(first, last + 1)) / count
        return out


def recorders_for(variant: str) -> list:
    """The recorders of a variant (see the module docstring)."""
    if variant == "none":
        return []
    if variant == "on":
        return default_recorders(RecordConfig())
    if variant == "frozen":
        return default_recorders(RecordConfig(grads_frozen=True))
    if variant == "nofidelity":
        return default_recorders(RecordConfig(fidelity=False))
    return [
        SaliencyRecorder(every=NEVER),
        BlockRecorder(),
        RowRecorder(),
        GradRecorder(every=NEVER),
        MemoryRecorder(every=NEVER),
        FidelityRecorder(every=NEVER),
        TimingRecorder(every=NEVER),
    ]


class Alternating(RecorderBase):
    """The "off" recorders attached for the whole run, their step hooks called on odd steps only: off
    and none interleaved step by step in one run (set-up and phase hooks always reach them)."""

    name = "alternating"

    def __init__(self, inner: list[RecorderBase]) -> None:
        super().__init__()
        self.inner = inner
        self.active = False

    def _forward(self, hook: str, *args: Any, always: bool = False) -> None:
        if always or self.active:
            for recorder in self.inner:
                getattr(recorder, hook)(*args)

    def attach(self, session: Any) -> None:
        super().attach(session)
        self._forward("attach", session, always=True)

    def on_phase_start(self, name: str, step: int) -> None:
        self._forward("on_phase_start", name, step, always=True)

    def on_phase_end(self, name: str, step: int, seconds: float) -> None:
        self._forward("on_phase_end", name, step, seconds, always=True)

    def on_prepared(self) -> None:
        self._forward("on_prepared", always=True)

    def on_step_start(self, step: int) -> None:
        self.active = step % 2 == 1
        self._forward("on_step_start", step)

    def on_micro_batch_end(self, step: int, batch) -> None:
        self._forward("on_micro_batch_end", step, batch)

    def on_backward_end(self, step: int) -> None:
        self._forward("on_backward_end", step)

    def on_step_end(self, info: StepInfo) -> None:
        self._forward("on_step_end", info)

    def detach(self) -> None:
        self._forward("detach", always=True)


def interleaved_off(config: RunConfig, steps: int) -> dict[str, float]:
    """Off vs none step by step in one run on one repeated batch (train_examples = batch size): the
    median over odd steps of the step's time over the mean of its two even neighbours, per clock."""
    repeated = dataclasses.replace(config.train, steps=2 * steps + 2, train_examples=config.train.batch_size)
    clock = StepClock()
    train(
        dataclasses.replace(config, train=repeated),
        progress=False,
        recorders=[Alternating(recorders_for("off")), clock],
    )
    out: dict[str, float] = {}
    for i, c in enumerate(CLOCKS):
        ends = {step: end[i] for step, end in clock.ends.items()}
        length = {step: ends[step] - ends[step - 1] for step in ends if step - 1 in ends}
        odd = [step for step in length if step % 2 == 1 and step - 1 in length and step + 1 in length]
        out[c] = statistics.median(2 * length[k] / (length[k - 1] + length[k + 1]) for k in odd)
    return out


def timed_run(config: RunConfig, variant: str) -> dict[str, float]:
    """Mean wall / CPU seconds per step over steps 2..steps of one run; "recording" (from the timing
    table) for the variants that record timing."""
    clock = StepClock()
    result = train(config, progress=False, recorders=[*recorders_for(variant), clock])  # clock last
    out = clock.mean_step(2, config.train.steps)
    if variant in ("on", "frozen", "nofidelity"):
        timing = RunReader(result.run_dir).table("timing")
        out["recording"] = timing.query("phase == 'recording' and step >= 2")["seconds"].mean()
    return out


def measure_method(
    method: str, settings: Any, runs_dir: str, steps: int, repeats: int, variants: tuple[str, ...]
) -> dict[str, Any]:
    """Interleaved repetitions of the variants for one method; ratios within each repetition."""
    config = RunConfig(
        model=settings.model,
        task=settings.task,
        method=method,
        runs_dir=runs_dir,
        train=TrainConfig(steps=steps, batch_size=settings.batch_size, seed=settings.seed, eval_examples=0),
    )
    # one short untimed run first: the process's one-off costs (lazy imports, the first Parquet write)
    # must not land in whichever variant happens to run first
    warmup = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=3, flush_every=1))
    timed_run(warmup, "on")
    reps: list[dict[str, dict[str, float]]] = []
    for rep in range(repeats):
        k = rep % len(variants)
        reps.append({v: timed_run(config, v) for v in variants[k:] + variants[:k]})  # no variant always first
    row: dict[str, Any] = {"method": method, "repetitions": reps}
    for v in variants:
        row[f"{v}_seconds"] = statistics.median(r[v]["wall"] for r in reps)
        if v != "none":
            for c in CLOCKS:
                row[f"{v}_{c}_ratio"] = statistics.median(r[v][c] / r["none"][c] for r in reps)
            # what the recorders' hooks themselves add to a step (the loop's count of seconds inside
            # them) against the unrecorded step: free of run-to-run noise, but blind to indirect costs
            row[f"{v}_hooks_ratio"] = statistics.median(1 + r[v]["hooks"] / r["none"]["wall"] for r in reps)
    if "on" in variants:
        row["recording_seconds"] = statistics.median(r["on"]["recording"] for r in reps)
    if {"on", "nofidelity"} <= set(variants):
        for c in CLOCKS:
            row[f"fidelity_{c}_ratio"] = statistics.median(r["on"][c] / r["nofidelity"][c] for r in reps)
    if "off" in variants:
        row.update({f"off_interleaved_{c}_ratio": v for c, v in interleaved_off(config, steps - 1).items()})
    targets = {**{v: t for v, t in TARGETS.items() if v in variants}}
    if "fidelity_wall_ratio" in row:
        targets["fidelity"] = FIDELITY_TARGET
    met = [row[f"{v}_{c}_ratio"] <= target for v, target in targets.items() for c in CLOCKS]
    row["targets_met"] = "all" if all(met) else ("none" if not any(met) else "some")
    return row


def columns(variants: tuple[str, ...]) -> list[Column]:
    cols: list[Column] = [("method", "method", ""), ("none s/step", "none_seconds", ".3f")]
    for v in variants[1:]:
        cols += [(f"{v} x wall", f"{v}_wall_ratio", ".3f"), (f"{v} x cpu", f"{v}_cpu_ratio", ".3f")]
        cols += [(f"{v} x hooks", f"{v}_hooks_ratio", ".4f")]
    if "off" in variants:
        cols += [(f"off x interleaved {c}", f"off_interleaved_{c}_ratio", ".4f") for c in CLOCKS]
    if {"on", "nofidelity"} <= set(variants):
        cols += [(f"fidelity x {c}", f"fidelity_{c}_ratio", ".3f") for c in CLOCKS]
    return [*cols, ("recording s/step", "recording_seconds", ".4f"), ("targets met", "targets_met", "")]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--methods", default="lora,sage", help="comma-separated methods (default lora,sage)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 20; smoke 10)")
    parser.add_argument("--frozen", action="store_true", help="also time on + record.grads_frozen")
    parser.add_argument(
        "--variants",
        default=None,
        help="subset of none,off,on,frozen,nofidelity (comma-separated, none first)",
    )
    args = parser.parse_args()
    settings = settings_from_args(args)
    timed = args.steps or (10 if settings.smoke else 20)
    repeats = args.repeats or (1 if settings.smoke else 3)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    variants = VARIANTS + (("frozen",) if args.frozen else ())
    if args.variants:
        variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
        if variants[0] != "none" or not set(variants) <= {*VARIANTS, "frozen", "nofidelity"}:
            parser.error("--variants: none first, then any of off, on, frozen, nofidelity")
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="recorder-overhead-") as runs_dir:
            for method in methods:
                rows.append(measure_method(method, settings, runs_dir, timed + 1, repeats, variants))
                print(format_table(rows[-1:], columns(variants)), flush=True)
    finally:
        torch.set_num_threads(threads)
    print(f"\nrecorder overhead, {settings.label}, {timed} timed steps, median of {repeats} repetitions")
    print(format_table(rows, columns(variants)))
    payload = {"timed_steps": timed, "repeats": repeats, "targets": TARGETS, "rows": rows}
    print(f"written {write_result(settings, 'recorder_overhead', payload)}")


if __name__ == "__main__":
    main()

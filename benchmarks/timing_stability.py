"""Does the study's timing pass survive a loaded machine? (issue 13)

    python benchmarks/timing_stability.py           # the default study's configurations (smollm2-135m)
    python benchmarks/timing_stability.py --smoke   # tiny-llama, seconds: checks the script still works

Prepares every configuration of the study (`workbench.orchestration.study.study_points`, first seed) once,
as the study's timing pass does, then runs the pass's interleaved rounds twice: on the quiet machine,
and with `--hogs` CPU-bound processes (pure-Python busy loops, 2 by default: as many as this machine's
cores) running beside it. Each time: per configuration, the median over rounds of its step time / LoRA's
in the same round, in wall time and in process CPU time. The target: every wall ratio of the loaded pass
within 10% of the quiet one's. Also times one round of the loaded machine on 2 torch threads, to show
why the pass uses 1 (OpenMP threads spin-wait for each other while the hogs hold the cores).

Writes benchmarks/results/timing_stability.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS_DIR, machine_info  # noqa: E402
from workbench.comparisons import BASELINE  # noqa: E402
from workbench.orchestration.study import study_points  # noqa: E402
from workbench.orchestration.timing_pass import (  # noqa: E402
    DEFAULT_ROUNDS,
    interleaved_rounds,
    prepared_steps,
    round_ratios,
    torch_threads,
)

TARGET = 0.10  # loaded ratios within 10% of the quiet ones


def _spin() -> None:  # pragma: no cover - runs in the hog processes
    while True:
        pass


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """`count` processes each keeping one core busy, stopped when the block ends."""
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for hog in hogs:
        hog.start()
    time.sleep(1.0)  # let them take the cores
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join()


def ratios(rounds: list[dict[str, float]]) -> dict[str, float]:
    """label -> median over rounds of its seconds / the baseline's seconds in the same round."""
    return {label: round_ratios(rounds, label, BASELINE)[0] for label in rounds[0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny-llama, 2 rounds: checks the script")
    parser.add_argument(
        "--rounds", type=int, default=None, help=f"interleaved rounds (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside the loaded pass")
    parser.add_argument("--task", default=None, help="another task (the smoke test's local file)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    size = "smoke" if args.smoke else "default"
    rounds = args.rounds or (2 if args.smoke else DEFAULT_ROUNDS)
    points = study_points(size, task=args.task, seeds=1)
    configs = {p.label: p.config() for p in points}
    passes: dict[str, Any] = {}
    with torch_threads(1):
        steps = prepared_steps(configs, BASELINE, progress=not args.smoke)
        for step in steps.values():
            step()  # untimed: first-call costs
        wall, cpu = interleaved_rounds(steps, rounds)
        passes["quiet"] = {"wall": wall, "cpu": cpu}
        with cpu_hogs(args.hogs):
            wall, cpu = interleaved_rounds(steps, rounds)
            passes["loaded"] = {"wall": wall, "cpu": cpu}
    with torch_threads(2), cpu_hogs(args.hogs):  # why one thread: the same round on two
        wall, cpu = interleaved_rounds(steps, 1)
        passes["loaded, 2 threads (1 round)"] = {"wall": wall, "cpu": cpu}
    table = {
        name: {"wall": ratios(p["wall"]), "cpu": ratios(p["cpu"]), "lora_seconds": statistics.median(
            r[BASELINE] for r in p["wall"])}
        for name, p in passes.items()
    }  # fmt: skip
    spread = {label: table["loaded"]["wall"][label] / table["quiet"]["wall"][label] - 1 for label in configs}
    worst = max(abs(v) for v in spread.values())
    head = ("configuration", "quiet x", "loaded x", "change", "cpu quiet", "cpu loaded")
    lines = ["{:<20} {:>8} {:>9} {:>7} {:>10} {:>11}".format(*head)]
    for label in configs:
        q, lo = table["quiet"], table["loaded"]
        lines.append(
            f"{label:<20} {q['wall'][label]:>8.3f} {lo['wall'][label]:>9.3f} {spread[label]:>+7.1%} "
            f"{q['cpu'][label]:>10.3f} {lo['cpu'][label]:>11.3f}"
        )
    two = table["loaded, 2 threads (1 round)"]["lora_seconds"]
    quiet, loaded = table["quiet"]["lora_seconds"], table["loaded"]["lora_seconds"]
    lines.append(
        f"LoRA step: quiet {quiet:.2f} s, loaded {loaded:.2f} s (1 thread), loaded on 2 threads {two:.2f} s"
    )
    lines.append(f"largest change of a ratio under load: {worst:.1%} (target <= {TARGET:.0%}): "
                 + ("met" if worst <= TARGET else "NOT met"))  # fmt: skip
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"timing_stability{'-smoke' if args.smoke else ''}.json"
    document = {
        "benchmark": "timing_stability",
        "size": size,
        "rounds": rounds,
        "hogs": args.hogs,
        "machine": machine_info(1),
        "ratios": table,
        "change_under_load": spread,
        "largest_change": worst,
        "target": TARGET,
        "passes": passes,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return {"path": str(path), **document}


if __name__ == "__main__":
    main()

"""Wall time of one sweep grid on the serial engine and on the Ray engine (issue 18), in one run.

The grid: LoRA r in {8, 16} x full at two learning rates, each point `--steps` steps (4 points). Serial:
the points one after the other in this process on every core (torch's threads = the machine's CPUs).
Ray: a local Ray on this machine's cores, each point a task with `resources.cpus` = `--cpus-per-point`
(its torch threads), as many at once as fit. Each engine writes its own fresh runs dir; both make the
same runs (their accuracies are printed side by side). The ratio is Ray / serial wall time, Ray's
start-up included (a few seconds), so small points favour the serial engine.

    python benchmarks/sweep_engines.py                 # smollm2-135m, 10 steps a point (~5 min here)
    python benchmarks/sweep_engines.py --smoke         # tiny-llama, 3 steps: checks the script works
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import base_parser, format_table, settings_from_args, write_result
from workbench.orchestration.sweeps import run_grid, summary_rows


def grid(model: str, task: str, steps: int, batch_size: int, cpus: int) -> dict[str, Any]:
    return {
        "name": "engines",
        "model": model,
        "task": task,
        "resources": {"cpus": cpus},
        "train": {"steps": steps, "batch_size": batch_size, "max_length": 64, "eval_examples": 32},
        "record": {"saliency": False, "fidelity": False},
        "methods": {"lora": {"r": [8, 16]}, "full": {"train": {"lr": [1e-5, 3e-5]}}},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="steps a point (default 10; smoke 3)")
    parser.add_argument("--cpus-per-point", type=int, default=1, help="Ray: cores (torch threads) a point")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    steps = args.steps or (3 if settings.smoke else 10)
    data = grid(settings.model, settings.task, steps, settings.batch_size, args.cpus_per_point)
    seconds: dict[str, float] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as scratch:
        for engine in ("serial", "ray"):
            torch.set_num_threads((os.cpu_count() or 1) if engine == "serial" else threads)
            t0 = time.perf_counter()
            result = run_grid(data, Path(scratch) / engine, progress=False, engine=engine)
            seconds[engine] = time.perf_counter() - t0
            rows[engine] = summary_rows(result)
    torch.set_num_threads(threads)
    same = [r["accuracy"] for r in rows["serial"]] == [r["accuracy"] for r in rows["ray"]]
    report = [
        {"engine": engine, "seconds": seconds[engine], "points": len(rows[engine])} for engine in seconds
    ]
    print(f"{len(rows['serial'])} points of {steps} steps, {settings.model}, {os.cpu_count()} CPUs")
    print(
        format_table(
            report, [("engine", "engine", ""), ("wall s", "seconds", ".1f"), ("points", "points", "")]
        )
    )
    print(f"Ray / serial wall time: {seconds['ray'] / seconds['serial']:.2f}; same accuracies: {same}")
    ratios = {"ray_over_serial": seconds["ray"] / seconds["serial"]}
    payload = {"seconds": seconds, "ratios": ratios, "same_accuracies": same, "runs": rows}
    path = write_result(settings, "sweep_engines", payload)
    return {**payload, "path": str(path)}


if __name__ == "__main__":
    main()

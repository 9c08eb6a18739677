"""GPU check: every method (and LoRA / SAGE with gradient checkpointing) trains a few steps on CUDA in
bf16 through the real run pipeline; the allocator peaks and NVML figures are printed next to the logical
ones, in one table (issue 12).

    python benchmarks/gpu_check.py                     # CUDA: smollm2-135m, bf16, 3 steps of 8 x 128
    python benchmarks/gpu_check.py --device cpu --smoke   # tiny-llama on the CPU: checks the script

Each row is a real run (`workbench.api.run`, recorded like any other, in a temporary runs dir unless
`--runs-dir`): logical saved bytes (packed in the forward, and their live peak over forward and
backward), total logical bytes (parameters, gradients, optimizer state, saved activations), the CUDA
allocator's peak (`torch.cuda.max_memory_allocated` over a step) and NVML's used memory of the device, and
the median step time. Logical and allocator figures should agree up to the allocator's workspace
(kernels' scratch, rounding of blocks, the CUDA context is not in either); NVML adds the context and
the caching allocator's reserve. Under 5 minutes on one GPU (about 12 runs of a few seconds each plus
model loading). Without a CUDA device it prints a note and exits 0: nothing to check.
Writes benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/x.py` from anywhere

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    SMOKE_MODEL,
    Column,
    format_table,
    machine_info,
)
from workbench.methods import METHODS  # noqa: E402
from workbench.store.summary import memory_bytes  # noqa: E402

# extra rows beside every registered method: label -> (method, train settings)
CHECKPOINTED = {
    "lora + checkpointing": ("lora", {"gradient_checkpointing": True}),
    "sage + checkpointing": ("sage", {"gradient_checkpointing": True}),
}

COLUMNS: list[Column] = [
    ("method", "label", ""),
    ("saved MiB", "saved_activations_mib", ".1f"),  # format_table: <key>_mib = <key>_bytes / MiB
    ("peak MiB", "saved_peak_mib", ".1f"),
    ("logical MiB", "total_logical_mib", ".1f"),
    ("allocator MiB", "allocator_mib", ".1f"),
    ("alloc / logical", "allocator_vs_logical", ".3f"),
    ("device MiB", "device_mib", ".1f"),  # NVML used on a GPU, peak RSS on the CPU
    ("step s", "step_seconds", ".3f"),
]


def rows_to_run(methods: list[str] | None) -> dict[str, tuple[str, dict[str, Any]]]:
    """label -> (method, train overrides): every registered method (or `methods`), then CHECKPOINTED."""
    names = methods or list(METHODS)
    rows: dict[str, tuple[str, dict[str, Any]]] = {name: (name, {}) for name in names}
    rows.update({label: spec for label, spec in CHECKPOINTED.items() if spec[0] in names})
    return rows


def check_row(
    label: str, method: str, train: dict[str, Any], args: argparse.Namespace, runs_dir: str
) -> dict[str, Any]:
    """One short real run; its memory peaks (bytes) and median step time from the run's summary."""
    from workbench.api import run

    options = METHODS.get(method).tiny_options if args.smoke else {}
    settings = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "eval_examples": 8,
        "device": args.device,
        "dtype": args.dtype,
        "save_weights": False,
        **train,
    }
    if method == "smt":
        options = {**options, "warmup_steps": 2}
    result = run(
        args.model,
        args.task,
        method,
        progress=False,
        train=settings,
        method_options=options,
        runs_dir=runs_dir,
        name=f"gpu-check {label}",
    )
    summary = result.summary
    row: dict[str, Any] = {"label": label, "method": method, "status": result.status}
    for source in ("saved_activations", "saved_peak", "total_logical", "allocator", "device", "rss"):
        value = memory_bytes(summary, source)
        row[f"{source}_bytes"] = value if value is not None else float("nan")
    row["allocator_vs_logical"] = row["allocator_bytes"] / row["total_logical_bytes"]
    row["step_seconds"] = summary.get("median_step_seconds", float("nan"))
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the check; returns {"rows": [...], "path": ...} ({"skipped": reason} without CUDA)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a check of the script)")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_MODEL}, float32, small batches")
    parser.add_argument("--model", default=None, help="model (default smollm2-135m)")
    parser.add_argument("--task", default="polarity", help="task (default polarity)")
    parser.add_argument("--methods", nargs="*", default=None, help="methods (default: every one)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 (smoke 2)")
    parser.add_argument("--max-length", type=int, default=None, help="default 128 (smoke 32)")
    parser.add_argument("--runs-dir", default=None, help="keep the runs here (default: a temporary dir)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        reason = "no CUDA device here (torch.cuda.is_available() is False): nothing to check"
        print(f"gpu_check: {reason}; `--device cpu --smoke` runs the script on the CPU")
        return {"skipped": reason}
    args.model = args.model or (SMOKE_MODEL if args.smoke else "smollm2-135m")
    args.batch_size = args.batch_size or (2 if args.smoke else 8)
    args.max_length = args.max_length or (32 if args.smoke else 128)
    args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        runs_dir = args.runs_dir or scratch
        rows = [
            check_row(label, method, train, args, runs_dir)
            for label, (method, train) in rows_to_run(args.methods).items()
        ]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    shape = f"{args.steps} steps of {args.batch_size} x {args.max_length}"
    print(f"\n{args.model}, {args.task}, {args.dtype}, {device}, {shape}")
    print(format_table(rows, COLUMNS))

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_check{'-smoke' if args.smoke else ''}.json"
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    document = {"benchmark": "gpu_check", "device": device, "settings": settings, "rows": rows}
    path.write_text(json.dumps({**document, "machine": machine_info()}, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return {"rows": rows, "path": str(path)}


if __name__ == "__main__":
    main()

"""The default study: every method on smollm2-135m / polarity, one table of ratios to LoRA.

Writes analyses/out/study.md (the table the README shows) and study.csv: accuracy after training,
saved-activation bytes (packed, and their live peak), total logical memory, median step time and
trainable parameters of every registered method (full, lora, velora, sage, tokentune, smt, spsft) and of
LoRA and SAGE with gradient checkpointing, each as a ratio to LoRA on the same attention kernel (sdpa).

Run budget (default size): 9 runs x 30 steps of batch 8 (max length 128), 100 eval examples before and
after each, SMT with 10 warm-up batches: about 15 min on 2 CPU cores when the machine is quiet.
--smoke: 9 tiny-llama runs of 2 steps (seconds). --full (GPU): 9 runs x 300 steps of batch 16, 1000
eval examples. Same runs as `workbench study` (which also serves the app on them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from common import Analysis, run_script

from workbench.orchestration.study import run_study, study_markdown


def run(a: Analysis) -> list[Path]:
    result = run_study(a.size, a.runs_dir, model=a.model, task=a.task, progress=a.progress, rerun=a.rerun)
    a.out_root.mkdir(parents=True, exist_ok=True)
    command = "python analyses/study.py" + ("" if a.size == "default" else f" --{a.size}")
    page = a.out_root / "study.md"
    page.write_text(study_markdown(result, command=command), encoding="utf-8")
    table = a.out_root / "study.csv"
    result.table.to_csv(table, index=False)
    return [page, table]


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "study", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

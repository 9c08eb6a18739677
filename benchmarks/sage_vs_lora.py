"""SAGE and TokenTune vs LoRA: saved-activation bytes and step time on one real batch (issue 3).

    python benchmarks/sage_vs_lora.py            # smollm2-135m, polarity, batch 8, lengths 64 and 128
    python benchmarks/sage_vs_lora.py --smoke    # tiny-llama, seconds: checks the script still works

Methods, all with the same LoRA (r 16, alpha 32, dropout 0, all linears) and the same eager attention:
LoRA; SAGE at tau 0.9, n_min 8 with align_layers 0 (sparse backward only) and half the blocks (15 of 30:
sparse forward in the deepest half); SAGE at extra taus (default 0.8 and 0.5, align 0) to show where
the saved bytes go as the budget shrinks; TokenTune keeping a random 30% of each example's tokens.
Target (issue 3): SAGE at or below 0.5x LoRA's saved bytes. Also reported: the tokens SAGE keeps per
block (its budget p, from the method's selection after the timed steps on the same batch).
Writes benchmarks/results/sage_vs_lora.json.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/x.py` from anywhere

from benchmarks.common import (  # noqa: E402
    LORA_R16,
    MEMORY_COLUMNS,
    Bench,
    MethodSpec,
    Prepared,
    base_parser,
    format_table,
    measure,
    ratios_against,
    release,
    settings_from_args,
    write_result,
)

SAGE = {"n_min": 8, **LORA_R16}


def method_specs(num_blocks: int, tau: float, extra_taus: list[float], fraction: float) -> list[MethodSpec]:
    """LoRA, SAGE (align 0 and half the blocks), SAGE at the extra taus, TokenTune."""
    half = num_blocks // 2
    specs = [
        MethodSpec("lora", "lora", LORA_R16),
        MethodSpec(f"sage tau {tau} align 0", "sage", {**SAGE, "tau": tau, "align_layers": 0}),
        MethodSpec(f"sage tau {tau} align {half}", "sage", {**SAGE, "tau": tau, "align_layers": half}),
    ]
    specs += [
        MethodSpec(f"sage tau {t} align 0", "sage", {**SAGE, "tau": t, "align_layers": 0}) for t in extra_taus
    ]
    specs.append(MethodSpec(f"tokentune {fraction}", "tokentune", {**LORA_R16, "fraction": fraction}))
    return specs


def kept_tokens(p: Prepared, length: int) -> dict[str, Any] | None:
    """Per block: SAGE's budget p and the mean share of the n tokens kept (output tokens included)."""
    selections = p.method.selection()
    if not selections:
        return None
    return {
        "budget_per_block": [s.budget for s in selections],
        "kept_share_per_block": [
            round(float(s.selected.float().sum(-1).mean()) / length, 4) for s in selections
        ],
        "sparse_forward_blocks": [s.block for s in selections if s.sparse_forward],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns {"ratios": {length: {label: {saved, state, step}}}, "results": ...}."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="tokens (default 64 128)")
    parser.add_argument("--tau", type=float, default=0.9, help="SAGE's saliency mass (the issue's 0.9)")
    parser.add_argument("--extra-taus", type=float, nargs="*", default=None, help="default 0.8 0.5")
    parser.add_argument("--fraction", type=float, default=0.3, help="TokenTune's share of tokens kept")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    lengths = args.lengths or ([32] if settings.smoke else [64, 128])
    extra_taus = args.extra_taus if args.extra_taus is not None else ([0.5] if settings.smoke else [0.8, 0.5])

    results: dict[str, Any] = {}
    with Bench.open(settings) as bench:
        specs = method_specs(bench.num_blocks, args.tau, extra_taus, args.fraction)
        for length in lengths:
            batch = bench.batch(length)
            prepared = [bench.prepare(spec, length) for spec in specs]
            rows = measure(prepared, batch, settings.repeats)
            for row, p in zip(rows, prepared, strict=True):
                row["kept_tokens"] = kept_tokens(p, length)
            release(prepared)
            results[str(length)] = rows
            print(f"\n{settings.label}, {length} tokens per example, {settings.repeats} interleaved rounds")
            print(format_table(rows, MEMORY_COLUMNS))
            for row in rows:
                kept = row["kept_tokens"]
                if kept and row["method"] == "sage":
                    print(f"  {row['label']}: p per block {kept['budget_per_block']}")

    ratios = {length: ratios_against(rows, "lora") for length, rows in results.items()}
    path = write_result(settings, "sage_vs_lora", {"ratios": ratios, "results": results})
    print(f"\nwrote {path}")
    return {"ratios": ratios, "results": results, "path": str(path)}


if __name__ == "__main__":
    main()

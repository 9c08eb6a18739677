"""The SPSFT method: score rows, keep the top r per linear, train them as W_f through RowSparseLinear."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from workbench.methods.base import (
    MethodDefaults,
    PrepareContext,
    RowSelection,
    Selection,
    freeze,
    swap_linears,
    unswap_linears,
)
from workbench.methods.registry import register_method
from workbench.methods.spsft.config import SPSFTOptions
from workbench.methods.spsft.importance import compute_importance, top_rows, top_rows_global
from workbench.methods.spsft.layer import RowSparseLinear
from workbench.models.anatomy import PROJECTIONS, ModelAnatomy

# adapter_state keys: "<linear path>.<suffix>", e.g. "model.layers.3.mlp.down_proj.weight_f"
ROWS, WEIGHT_F, BIAS_F, SCORES = "rows", "weight_f", "bias_f", "scores"


@register_method
class SPSFT(MethodDefaults):
    """Structured-pruning sparse fine-tuning: per target linear, train only its top-r important rows."""

    name = "spsft"
    default_lr = 2e-5  # the paper's Llama setting (LoRA 1e-4 there), linear decay after 3% warm-up
    options_class = SPSFTOptions
    requires = (PROJECTIONS,)  # the q/k/v/o and MLP Linear layers by name
    gradient = "selected"  # the chosen rows' gradient is the dense one restricted to them
    table_options = ("rank", "ratio", "importance")
    color = "#CC79A7"
    tiny_options = {"rank": 4, "importance": "taylor", "importance_batches": 2}

    def __init__(self, options: SPSFTOptions) -> None:
        self.options = options
        self.model: nn.Module | None = None
        self.anatomy: ModelAnatomy | None = None
        self.swapped: dict[tuple[int, str], RowSparseLinear] = {}
        self.scores: dict[tuple[int, str], torch.Tensor] = {}  # (d_out,) fp32 on CPU, for the recorders

    # ---- contract ----------------------------------------------------------------------------------

    def check(self, anatomy: ModelAnatomy) -> None:
        self.options.check(anatomy)

    def prepare(self, ctx: PrepareContext) -> None:
        """Importance phase (ctx.phase("importance")), top-r selection, swap the targets, freeze the rest."""
        self.check(ctx.anatomy)
        targets = self._targets(ctx.anatomy)
        linears = {key: ctx.anatomy.blocks[key[0]].linear(key[1]) for key in targets}
        with ctx.phase("importance"):
            scores = compute_importance(ctx, linears, self.options)
        self.scores = {key: s.detach().float().cpu() for key, s in scores.items()}
        counts = {key: self.options.rows_for(s.numel()) for key, s in self.scores.items()}
        if self.options.ranking == "global":
            rows = top_rows_global(self.scores, counts)
        else:
            rows = {key: top_rows(s, counts[key]) for key, s in self.scores.items()}
        self._install(ctx.model, ctx.anatomy, rows, init=self.options.init)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        out = {}
        for key, module in self.swapped.items():
            out[f"{self._path(key)}.{WEIGHT_F}"] = module.weight_f
            if module.bias_f is not None:
                out[f"{self._path(key)}.{BIAS_F}"] = module.bias_f
        return out

    def selection(self) -> list[Selection]:
        """Every target linear's row scores and chosen rows (none for a linear a global ranking skipped)."""
        out: list[Selection] = []
        for block, name in self._targets(self.anatomy):
            width = self.anatomy.blocks[block].linear(name).out_features
            selected = torch.zeros(width, dtype=torch.bool)
            module = self.swapped.get((block, name))
            if module is not None:
                selected[module.rows.cpu()] = True
            scores = self.scores.get((block, name))
            if scores is None:  # restored from a state without scores
                scores = torch.full((width,), float("nan"))
            out.append(RowSelection(block=block, module=name, scores=scores, selected=selected))
        return out

    def resolved_options(self) -> dict[str, Any]:
        """Rows trained per target projection (`rank`, or `ratio` of its output features), as a list
        over blocks where the blocks differ."""
        rows: dict[str, list[int]] = {}
        for block, name in self._targets(self.anatomy):
            module = self.swapped.get((block, name))
            rows.setdefault(name, []).append(0 if module is None else int(module.rows.numel()))
        return {"rows": {name: r[0] if len(set(r)) == 1 else r for name, r in rows.items()}}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Per trained linear: `<path>.rows` (r,) long, `<path>.weight_f` (r, d_in), `<path>.bias_f` (r,)
        where it has a bias, `<path>.scores` (d_out,) fp32. A global ranking may leave a linear out."""
        state: dict[str, torch.Tensor] = {}
        for key, module in self.swapped.items():
            path = self._path(key)
            state[f"{path}.{ROWS}"] = module.rows.detach().contiguous()
            state[f"{path}.{WEIGHT_F}"] = module.weight_f.detach().contiguous()
            if module.bias_f is not None:
                state[f"{path}.{BIAS_F}"] = module.bias_f.detach().contiguous()
            if key in self.scores:
                state[f"{path}.{SCORES}"] = self.scores[key].contiguous()
        return state

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        """Rebuild the trained modules from `adapter_state()` on a fresh base model (no importance phase).

        Strict: every key must belong to a target linear; a linear with rows has its weight_f (and its
        bias_f where it has a bias); with ranking per_linear every target has rows.
        """
        paths = {anatomy.blocks[i].linear_path(n): (i, n) for i, n in self._targets(anatomy)}
        by_key: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
        for entry, tensor in state.items():
            path, _, part = entry.rpartition(".")
            if path not in paths or part not in (ROWS, WEIGHT_F, BIAS_F, SCORES):
                raise ValueError(f"SPSFT state has an unexpected key {entry!r}")
            by_key.setdefault(paths[path], {})[part] = tensor
        trained = {key: parts for key, parts in by_key.items() if ROWS in parts or WEIGHT_F in parts}
        if self.options.ranking == "per_linear" or not trained:  # a global ranking may skip linears
            missing = [path for path, key in paths.items() if key not in trained]
        else:
            missing = []
        if missing:
            raise ValueError(f"SPSFT state lacks the rows of {len(missing)} linears, e.g. {missing[:3]}")
        for key, parts in trained.items():
            has_bias = anatomy.blocks[key[0]].linear(key[1]).bias is not None
            needed = {ROWS, WEIGHT_F} | ({BIAS_F} if has_bias else set())
            lacking = sorted(needed - set(parts))
            path = anatomy.blocks[key[0]].linear_path(key[1])
            if lacking:
                raise ValueError(
                    f"SPSFT state for {path} lacks {', '.join(lacking)} (it has {', '.join(parts)})"
                )
            if BIAS_F in parts and not has_bias:
                raise ValueError(f"SPSFT state has a bias_f for {path}, which has no bias")
        self.scores = {key: p[SCORES].float().cpu() for key, p in by_key.items() if SCORES in p}
        rows = {key: parts[ROWS].long().cpu() for key, parts in trained.items()}
        self._install(model, anatomy, rows, init="zeros")
        with torch.no_grad():
            for key, module in self.swapped.items():
                for part, param in ((WEIGHT_F, module.weight_f), (BIAS_F, module.bias_f)):
                    if param is None:
                        continue
                    value = trained[key][part]
                    if value.shape != param.shape:
                        raise ValueError(
                            f"{self._path(key)}.{part} has shape {tuple(value.shape)}, "
                            f"expected {tuple(param.shape)}"
                        )
                    param.copy_(value)

    def merge(self) -> nn.Module:
        """Fold W_f into the selected rows and put plain nn.Linear modules back; returns the causal LM."""
        unswap_linears(self.anatomy, self.swapped)
        self.swapped = {}
        return self.model

    # ---- helpers -----------------------------------------------------------------------------------

    def _targets(self, anatomy: ModelAnatomy) -> list[tuple[int, str]]:
        return [(block.index, name) for block in anatomy.blocks for name in self.options.target_names]

    def _path(self, key: tuple[int, str]) -> str:
        return self.anatomy.blocks[key[0]].linear_path(key[1])

    def _install(
        self, model: nn.Module, anatomy: ModelAnatomy, rows: dict[tuple[int, str], torch.Tensor], init: str
    ) -> None:
        """Freeze the model, then replace each target by a RowSparseLinear on its selected rows."""
        self.model, self.anatomy = model, anatomy
        freeze(model)
        # kaiming init draws from the global RNG: the run's seed (set by the loop) makes it reproducible
        self.swapped = swap_linears(
            anatomy, list(rows), lambda linear, i, n: RowSparseLinear(linear, rows[(i, n)], init=init)
        )

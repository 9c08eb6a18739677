"""SMT's block allocation: the block grid of every target matrix, once, after selection (step 0).

Writes, from `method.selection()` (BlockGridSelection per target matrix) when the method is prepared:
- table blocks: one row per b x b block of every target matrix, chosen or not: step 0, layer, module
  (projection name), row_block, col_block, score, selected. The Q/K/V (o / MLP) shares per layer follow
  from it: chosen blocks per (layer, module) over the layer's chosen blocks (the paper's Fig. 5);
- table grads: the warm-up's gradient statistics per target matrix (each grid's `phase_grad_stats`):
  step 0, phase "warmup", stat median / mean (of |G| per warm-up step, averaged over the steps) and max;
- summary: "blocks_selected" = chosen blocks per projection name.
Methods without block grids write nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from workbench.methods.base import BlockGridSelection
from workbench.recorders.base import RecorderBase


class BlockRecorder(RecorderBase):
    """Block grid with scores and chosen flags, warm-up |grad| statistics (see the module docstring)."""

    name = "blocks"

    def __init__(self) -> None:
        super().__init__(every=1)  # once, at on_prepared: there is no cadence
        self.selected: dict[str, int] = {}

    def on_prepared(self) -> None:
        grids = [s for s in self.session.method.selection() if isinstance(s, BlockGridSelection)]
        if not grids:
            return
        self.session.writer.add("blocks", _grid_columns(grids))
        for grid in grids:
            self.selected[grid.module] = self.selected.get(grid.module, 0) + int(grid.selected.sum())
        stats = [
            {"step": 0, "layer": g.block, "module": g.module, "stat": stat, "value": value, "phase": "warmup"}
            for g in grids
            for stat, value in g.phase_grad_stats.items()
        ]
        if stats:
            self.session.writer.add("grads", stats)

    def summary(self) -> dict[str, Any]:
        return {"blocks_selected": dict(self.selected)} if self.selected else {}


def _grid_columns(grids: list[BlockGridSelection]) -> dict[str, Any]:
    """The blocks-table columns of all grids: each (R, C) grid flattened row-major."""
    layers, modules, rows, cols = [], [], [], []
    for grid in grids:
        r, c = grid.scores.shape
        layers.append(torch.full((r * c,), grid.block))
        modules += [grid.module] * (r * c)
        rows.append(torch.arange(r).repeat_interleave(c))
        cols.append(torch.arange(c).repeat(r))
    return {
        "step": 0,
        "layer": torch.cat(layers),
        "module": modules,
        "row_block": torch.cat(rows),
        "col_block": torch.cat(cols),
        "score": torch.cat([g.scores.detach().double().cpu().flatten() for g in grids]),
        "selected": torch.cat([g.selected.cpu().flatten() for g in grids]),
    }

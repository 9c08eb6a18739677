"""SPSFT's row importance: score and chosen flag of every output row of every target linear (step 0).

Writes, from `method.selection()` (RowSelection per target linear) when the method is prepared:
- table rows: step 0, layer, module (projection name), row, score (the importance metric), selected;
- summary: "rows_selected" = chosen rows per projection name.
Methods without row selections write nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from workbench.methods.base import RowSelection
from workbench.recorders.base import RecorderBase


class RowRecorder(RecorderBase):
    """Per target linear: importance and chosen flag of each output row (see the module docstring)."""

    name = "rows"

    def __init__(self) -> None:
        super().__init__(every=1)  # once, at on_prepared: there is no cadence
        self.selected: dict[str, int] = {}

    def on_prepared(self) -> None:
        selections = [s for s in self.session.method.selection() if isinstance(s, RowSelection)]
        if not selections:
            return
        modules: list[str] = []
        for sel in selections:
            modules += [sel.module] * sel.scores.numel()
            self.selected[sel.module] = self.selected.get(sel.module, 0) + int(sel.selected.sum())
        self.session.writer.add(
            "rows",
            {
                "step": 0,
                "layer": torch.cat([torch.full((s.scores.numel(),), s.block) for s in selections]),
                "module": modules,
                "row": torch.cat([torch.arange(s.scores.numel()) for s in selections]),
                "score": torch.cat([s.scores.detach().double().cpu() for s in selections]),
                "selected": torch.cat([s.selected.cpu() for s in selections]),
            },
        )

    def summary(self) -> dict[str, Any]:
        return {"rows_selected": dict(self.selected)} if self.selected else {}

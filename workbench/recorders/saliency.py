"""Saliency maps and chosen tokens per block, on the same probe examples at every recorded step.

SAGE / TokenTune: the method's own training-mode selection, run on the probe batch through its
forward context (selector, budget, aligned blocks) under `probe_forward`: no gradient, nothing updated,
random streams restored. Every other method (LoRA, full, SMT, SPSFT): a pure observation of what SAGE
*would* choose there, with SAGE's own functions (`attention_saliency`, the paper's tau / n_min budget at
SageOptions' defaults) from forward pre-hooks on the decoder layers during the probe forward.

A model without the LLaMA layout (GPT-2: no rotary q/k projections to score with) is not observed: the
recorder switches itself off at attach and says why in the summary (`saliency_note`).

Writes, on step 1 and every `every`-th step, before that step's forward (the weights it trains with):
- table saliency: one row per (probe sample, block, real token): step, sample (0..n-1), layer, position,
  token (its text), score (normalised over the block's candidate tokens), selected;
- table metrics: split "probe", name "saliency.p.block<i>" (see `budget_metric`), value = p, the
  top-scored tokens kept per example in block i (the batch maximum; output tokens come on top).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from workbench.lm import answer_logits
from workbench.methods.base import TokenSelection
from workbench.models.anatomy import LLAMA_LAYOUT
from workbench.recorders.base import RecorderBase, RecordingSession
from workbench.recorders.probe import Probe, build_probe, method_token_selection, probe_forward

BUDGET_METRIC = "saliency.p.block"  # metrics name prefix of the per-block budget p; the block index follows


def budget_metric(block: int) -> str:
    """The metrics-table name of block `block`'s budget p, e.g. "saliency.p.block3"."""
    return f"{BUDGET_METRIC}{block}"


class SaliencyRecorder(RecorderBase):
    """Per block: token scores and chosen tokens of the probe examples (see the module docstring)."""

    name = "saliency"

    def __init__(self, every: int = 10, probe_examples: int = 4) -> None:
        super().__init__(every)
        self.probe_examples = probe_examples
        self.probe: Probe | None = None
        self.observing: bool | None = None  # None until the first probe shows whether the method selects
        self.off = ""  # why the recorder is off on this model ("" when it records)
        self._columns: dict[str, Any] = {}

    def attach(self, session: RecordingSession) -> None:
        super().attach(session)
        if not session.anatomy.has(*LLAMA_LAYOUT):  # no method selects tokens there, nothing to observe
            anatomy = session.anatomy
            lacking = ", ".join(anatomy.missing)
            self.off = (
                f"off: the {anatomy.model_type} model lacks the LLaMA layout's {lacking} it scores with"
            )
            return
        self.probe = build_probe(session, self.probe_examples)
        real = self.probe.batch.attention_mask.bool().cpu()  # (B, n)
        sample, position = real.nonzero(as_tuple=True)  # (T,) each, row-major: sample, then position
        self._columns = {
            "sample": sample,
            "position": position,
            "token": [
                self.probe.tokens[s][p] for s, p in zip(sample.tolist(), position.tolist(), strict=True)
            ],
        }

    def on_step_start(self, step: int) -> None:
        if self.due(step) and not self.off:
            self._write(step, self._select())

    # -- what was chosen ---------------------------------------------------------------------------

    def _select(self) -> list[TokenSelection]:
        if self.observing is None:  # the first probe tells whether the method selects tokens itself
            chosen = self._method_selection()
            self.observing = not chosen
            if chosen:
                return chosen
        return self._observed_selection() if self.observing else self._method_selection()

    def _method_selection(self) -> list[TokenSelection]:
        """The method's own choice for the probe batch (empty for methods that select no tokens)."""
        return method_token_selection(self.session, self.probe.batch)

    def _observed_selection(self) -> list[TokenSelection]:
        """What SAGE (default tau, n_min) would choose in each block during a dense probe forward."""
        from workbench.methods.sage.config import SageOptions
        from workbench.methods.token_sparse.budget import paper_budget, top_selection
        from workbench.methods.token_sparse.saliency import BlockView

        s, batch = self.session, self.probe.batch
        defaults = SageOptions()
        real = batch.attention_mask.bool()  # (B, n)
        outputs = batch.output_mask & real  # (B, n) SAGE's output tokens Y
        found: dict[int, TokenSelection] = {}

        def observe(index: int, layer: nn.Module):
            def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                hidden = args[0] if args else kwargs["hidden_states"]  # (B, n, d) block input
                if "position_embeddings" not in kwargs:
                    raise RuntimeError(f"block {index} got no position_embeddings (not a LLaMA-family layer)")
                cos, sin = kwargs["position_embeddings"]
                scores = BlockView(layer, index, hidden, cos, sin, real, outputs).attention_scores()  # (B, n)
                p = int(paper_budget(scores, real, defaults.tau, defaults.n_min).max())
                found[index] = TokenSelection(index, scores, top_selection(scores, real, outputs, p), p)

            return hook

        handles = [
            block.module.register_forward_pre_hook(observe(block.index, block.module), with_kwargs=True)
            for block in s.anatomy.blocks
        ]
        try:
            with probe_forward(s.model, s.method, s.device):
                answer_logits(s.model, batch)
        finally:
            for handle in handles:
                handle.remove()
        return [found[i] for i in sorted(found)]

    # -- rows --------------------------------------------------------------------------------------

    def _write(self, step: int, selections: list[TokenSelection]) -> None:
        if not selections:
            return
        real = self.probe.batch.attention_mask.bool()
        count = len(self._columns["token"])
        scores = torch.cat([sel.scores[real].double().cpu() for sel in selections])  # (L * T,)
        chosen = torch.cat([sel.selected[real].cpu() for sel in selections])
        layers = torch.tensor([sel.block for sel in selections]).repeat_interleave(count)
        self.session.writer.add(
            "saliency",
            {
                "step": step,
                "sample": self._columns["sample"].repeat(len(selections)),
                "layer": layers,
                "position": self._columns["position"].repeat(len(selections)),
                "token": self._columns["token"] * len(selections),
                "score": scores,
                "selected": chosen,
            },
        )
        self.session.writer.add(
            "metrics",
            {
                "step": step,
                "split": "probe",
                "name": [budget_metric(sel.block) for sel in selections],
                "value": [float(sel.budget) for sel in selections],
            },
        )

    def summary(self) -> dict[str, Any]:
        if self.off:
            return {"saliency_note": self.off}
        if self.probe is None or self.observing is None:  # never recorded
            return {}
        source = "observed (what SAGE would choose)" if self.observing else "method"
        return {"saliency_probe_examples": self.probe.batch.size, "saliency_source": source}

"""Gradient magnitudes per block and module, for every method.

On step 1 and every `every`-th step, once the step's gradients are complete (after the last
micro-batch's backward, before clipping and the optimizer step, so the figures are the raw gradients),
for each group of trainable parameters with the same (layer, module) label: median, mean and max of
|g| over all its elements, and the L2 norm. Labels (`grad_label`): the projection or part name from the
model anatomy (q_proj ... down_proj, input_layernorm, embed_tokens, norm), plus what trains there when it
is not the dense weight: "q_proj.lora_A" / "q_proj.lora_B" (LoRA, SAGE), "v_proj.blocks" (SMT's
blocks), "down_proj.weight_f" (SPSFT's W_f), "q_proj.bias". Full fine-tuning's dense weights are plain
"q_proj", as are the frozen dense weights observed with `frozen=True` (dense_grads.py).

Table grads: step, layer (-1 outside the blocks), module, stat (median | mean | max | norm), value,
phase "train". All statistics of a step are computed on the device and copied to the host at once.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from workbench.data.batch import Batch
from workbench.memory import locate
from workbench.recorders.base import RecorderBase
from workbench.recorders.dense_grads import DenseGradObserver, abs_stats

STATS = ("median", "mean", "max", "norm")  # the order of abs_stats
_NOT_A_PART = frozenset({"default", "weight", "base_layer"})  # peft's adapter name, the dense weight


def grad_label(parameter: str) -> tuple[int, str]:
    """(block or -1, module label) of a trainable parameter's name.

    "...layers.3.self_attn.q_proj.lora_A.default.weight" -> (3, "q_proj.lora_A");
    "model.layers.3.self_attn.q_proj.weight" -> (3, "q_proj"); "model.norm.weight" -> (-1, "norm").
    """
    module_path = parameter.rpartition(".")[0]
    layer, kind = locate(module_path)
    parts = parameter.split(".")
    if kind not in parts:
        return layer, kind
    extra = [p for p in parts[parts.index(kind) + 1 :] if p not in _NOT_A_PART]
    return layer, ".".join([kind, *extra])


class GradRecorder(RecorderBase):
    """|grad| statistics per (block, module) of what trains; optionally of frozen dense projections."""

    name = "grads"

    def __init__(self, every: int = 10, frozen: bool = False) -> None:
        super().__init__(every)
        self.frozen = frozen
        self.groups: dict[tuple[int, str], list[torch.Tensor]] = {}  # label -> parameters
        self._observer: DenseGradObserver | None = None
        self._observing = False

    def on_prepared(self) -> None:
        groups: dict[tuple[int, str], list[torch.Tensor]] = defaultdict(list)
        for name, param in self.session.method.trainable_parameters().items():
            groups[grad_label(name)].append(param)
        self.groups = dict(sorted(groups.items()))
        if self.frozen:
            self._observer = DenseGradObserver(self.session.anatomy, self.session.grad_accum)

    def on_step_start(self, step: int) -> None:
        self._observing = self._observer is not None and self.due(step)
        if self._observing:
            self._observer.start()

    def on_micro_batch_end(self, step: int, batch: Batch | None) -> None:
        if self._observing:
            self._observer.micro_batch_end()

    def on_backward_end(self, step: int) -> None:
        stats: dict[tuple[int, str], torch.Tensor] = {}
        if self._observing:
            self._observing = False
            stats.update(self._observer.finish())
        if self.due(step):
            for label, params in self.groups.items():
                grads = [p.grad for p in params if p.grad is not None]
                if grads:
                    stats[label] = abs_stats(grads)
        if stats:
            self._write(step, stats)

    def _write(self, step: int, stats: dict[tuple[int, str], torch.Tensor]) -> None:
        labels = list(stats)
        values = torch.stack([stats[label] for label in labels]).double().cpu()  # (G, 4), one host copy
        self.session.writer.add(
            "grads",
            {
                "step": step,
                "layer": [layer for layer, _ in labels for _ in STATS],
                "module": [module for _, module in labels for _ in STATS],
                "stat": list(STATS) * len(labels),
                "value": values.reshape(-1),
                "phase": "train",
            },
        )

    def detach(self) -> None:
        if self._observer is not None:
            self._observer.stop()
        super().detach()

"""How far each method's gradient is from the dense one, and whether its selection stays right.

On step 1 and every `every`-th step (record.fidelity_every), on that step's own micro-batches, by the
method's `gradient` kind (workbench.methods.base.GRADIENT_KINDS):

- "exact" (LoRA, full): their gradient is the dense gradient of their parameters: written as cosine 1
  and rel_error 0 (no extra pass), so every run sits on the same axis.
- "approximate" (SAGE, TokenTune, VeLoRA): after the step's backward (before clipping), a reference pass
  (forward + backward of the same micro-batches outside the method's forward context, inside its
  `reference_context`: VeLoRA runs plain LoRA) gives the dense gradient of the same trainable
  parameters; per (layer, module) of what trains (the gradient recorder's labels) and for the whole
  model (layer -1, module "model"): `cosine` and `rel_error` = |g - g_dense| / |g_dense|. The random
  streams restart where the step began (the same dropout masks) and are restored after, the step's
  gradients are put back untouched, and the device peaks do not count the pass (`memory.uncounted`):
  training goes on bit for bit as without the recorder.
- "selected" (SMT, SPSFT): during the step's own backward the dense dL/dW of each target matrix
  (`DenseGradObserver`); `coverage` = the share of its squared norm in the chosen blocks / rows,
  `oracle_coverage` = the share the best choice of the same number of blocks / rows of that matrix would
  get at this step; per matrix and overall (layer -1, module "model").

Selection dynamics, stat `jaccard` per layer: SAGE / TokenTune: the tokens the method chooses on the
fixed probe examples (the first `probe_examples` training examples) against its choice at the first
recorded step, mean over the probe examples (module "tokens"); SMT / SPSFT, whose choice is fixed after
their selection phase: the chosen blocks / rows against the oracle's at this step (the matrix's module).

A method that declares no `gradient` kind has nothing to compare: the recorder writes nothing and says
so in the summary (`fidelity_note`). Table fidelity: step, layer, module, stat, value. Summary:
`fidelity_first` / `fidelity_last`: the whole-model figures ({stat: value}) at the first and last
recorded step.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from workbench.data.batch import Batch
from workbench.lm import answer_loss
from workbench.memory import uncounted
from workbench.methods.base import BlockGridSelection, RowSelection, gradient_kind, reference_context
from workbench.recorders.base import RecorderBase
from workbench.recorders.dense_grads import DenseGradObserver
from workbench.recorders.grads import grad_label
from workbench.recorders.probe import build_probe, method_token_selection

Key = tuple[int, str]
MODEL = (-1, "model")  # the whole-model row


class FidelityRecorder(RecorderBase):
    """Fidelity of the method's gradient to the dense one, and the drift of its selection."""

    name = "fidelity"

    def __init__(self, every: int = 10, probe_examples: int = 4) -> None:
        super().__init__(every)
        self.probe_examples = probe_examples
        self.kind: str | None = None
        self.note: str | None = None
        self._groups: dict[Key, list[tuple[str, torch.nn.Parameter]]] = {}
        self._targets: dict[Key, BlockGridSelection | RowSelection] = {}
        self._observer: DenseGradObserver | None = None
        self._batches: list[Batch] = []
        self._rng: list[torch.Tensor] = []
        self._probe = None
        self._first_tokens: dict[int, torch.Tensor] | None = None
        self._overall: dict[int, dict[str, float]] = {}

    def on_prepared(self) -> None:
        method = self.session.method
        self.kind = gradient_kind(method)
        if self.kind is None:
            self.note = (
                f"method {method.name!r} declares no gradient kind (Method.gradient): there is nothing to "
                "compare its gradient with, so no fidelity is recorded"
            )
            return
        groups: dict[Key, list[tuple[str, torch.nn.Parameter]]] = defaultdict(list)
        for name, param in method.trainable_parameters().items():
            groups[grad_label(name)].append((name, param))
        self._groups = dict(sorted(groups.items()))
        if self.kind == "selected":
            self._targets = {
                (s.block, s.module): s
                for s in method.selection()
                if isinstance(s, (BlockGridSelection, RowSelection))
            }
            if not self._targets:
                self.note = f"method {method.name!r} reports no chosen blocks or rows: no coverage recorded"
                self.kind = None

    def on_step_start(self, step: int) -> None:
        if self.kind is None or not self.due(step):
            return
        self._batches, self._rng = [], _rng_state(self.session.device)
        if self.kind == "selected":
            self._observer = DenseGradObserver(
                self.session.anatomy, self.session.grad_accum, keys=self._targets, reduce=self._coverage
            )
            self._observer.start()
        if self.kind == "approximate":
            self._token_dynamics(step)  # before the step's forward, on the weights it trains with

    def on_micro_batch_end(self, step: int, batch: Batch) -> None:
        if self.kind is None or not self.due(step):
            return
        self._batches.append(batch)
        if self._observer is not None:
            self._observer.micro_batch_end()

    def on_backward_end(self, step: int) -> None:
        if self.kind is None or not self.due(step):
            return
        if self.kind == "exact":
            values = {key: {"cosine": 1.0, "rel_error": 0.0} for key in [*self._groups, MODEL]}
        elif self.kind == "approximate":
            values = self._compare_with_reference()
        else:
            values = self._coverage_rows()
        self._batches = []
        self._overall[step] = values[MODEL]
        self._write(step, values)

    def summary(self) -> dict[str, Any]:
        if self.note:
            return {"fidelity_note": self.note}
        if not self._overall:
            return {}
        first, last = min(self._overall), max(self._overall)
        return {"fidelity_first": self._overall[first], "fidelity_last": self._overall[last]}

    def detach(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        super().detach()

    # -- approximate gradients: a dense reference pass ------------------------------------------------

    def _compare_with_reference(self) -> dict[Key, dict[str, float]]:
        s = self.session
        params = [p for members in self._groups.values() for _, p in members]
        kept = [p.grad for p in params]
        after = _rng_state(s.device)
        try:
            with uncounted(s.device):
                _set_rng_state(self._rng, s.device)  # the dropout masks of the step itself
                for p in params:
                    p.grad = None
                with reference_context(s.method):
                    for batch in self._batches:
                        (answer_loss(s.model, batch) / s.grad_accum).backward()
                dense = [p.grad for p in params]
        finally:
            for p, grad in zip(params, kept, strict=True):
                p.grad = grad
            _set_rng_state(after, s.device)
        by_param = {id(p): (g, d) for p, g, d in zip(params, kept, dense, strict=True)}
        values = {}
        for key, members in self._groups.items():
            values[key] = _compare([by_param[id(p)] for _, p in members])
        values[MODEL] = _compare(list(by_param.values()))
        return values

    # -- selected parts of dense matrices: coverage -----------------------------------------------------

    def _coverage(self, key: Key, dw: torch.Tensor) -> dict[str, float]:
        """Squared norms of the dense gradient: in the chosen parts, in the oracle's, in all; jaccard."""
        selection = self._targets[key]
        if isinstance(selection, BlockGridSelection):
            b = selection.block_size
            out, in_ = dw.shape
            parts = dw.pow(2).reshape(out // b, b, in_ // b, b).sum(dim=(1, 3))  # (out/b, in/b)
        else:
            parts = dw.pow(2).sum(dim=1)  # (out,)
        chosen = selection.selected.to(parts.device).reshape(-1)
        flat = parts.reshape(-1)
        oracle = torch.zeros_like(chosen)
        oracle[flat.topk(int(chosen.sum())).indices] = True
        union = (chosen | oracle).sum()
        return {
            "chosen": float(flat[chosen].sum()),
            "oracle": float(flat[oracle].sum()),
            "total": float(flat.sum()),
            "jaccard": float((chosen & oracle).sum() / union) if union else 1.0,
        }

    def _coverage_rows(self) -> dict[Key, dict[str, float]]:
        sums = self._observer.finish() if self._observer is not None else {}
        self._observer = None
        values: dict[Key, dict[str, float]] = {}
        totals = {"chosen": 0.0, "oracle": 0.0, "total": 0.0}
        for key, part in sorted(sums.items()):
            values[key] = {**_shares(part), "jaccard": part["jaccard"]}
            for name in totals:
                totals[name] += part[name]
        values[MODEL] = _shares(totals)
        return values

    # -- selection dynamics of token selections --------------------------------------------------------

    def _token_dynamics(self, step: int) -> None:
        """Jaccard per block of the method's probe choice now against the first recorded one."""
        if self._probe is None:
            self._probe = build_probe(self.session, self.probe_examples)
        chosen = {
            sel.block: sel.selected.clone() for sel in method_token_selection(self.session, self._probe.batch)
        }
        if not chosen:
            return
        if self._first_tokens is None:
            self._first_tokens = chosen
        real = self._probe.batch.attention_mask.bool()
        rows = []
        for block, now in chosen.items():
            first = self._first_tokens.get(block)
            if first is None:
                continue
            inter = (now & first & real).sum(-1).float()
            union = ((now | first) & real).sum(-1).float().clamp(min=1)
            rows.append((block, "tokens", "jaccard", float((inter / union).mean())))
        self._add(step, rows)

    # -- writing -------------------------------------------------------------------------------------

    def _write(self, step: int, values: dict[Key, dict[str, float]]) -> None:
        rows = [
            (layer, module, stat, value)
            for (layer, module), stats in values.items()
            for stat, value in stats.items()
        ]
        self._add(step, rows)

    def _add(self, step: int, rows: list[tuple[int, str, str, float]]) -> None:
        if rows:
            layer, module, stat, value = zip(*rows, strict=True)
            self.session.writer.add(
                "fidelity",
                {
                    "step": [step] * len(rows),
                    "layer": list(layer),
                    "module": list(module),
                    "stat": list(stat),
                    "value": list(value),
                },
            )


def _compare(pairs: list[tuple[torch.Tensor | None, torch.Tensor | None]]) -> dict[str, float]:
    """cosine and rel_error of the concatenated gradients (g, g_dense); a missing gradient is zeros."""
    dot = norm_g = norm_d = diff = 0.0
    for g, d in pairs:
        if g is None and d is None:
            continue
        g = g.float() if g is not None else torch.zeros_like(d, dtype=torch.float32)
        d = d.float() if d is not None else torch.zeros_like(g)
        dot += float((g.double() * d.double()).sum())
        norm_g += float(g.double().pow(2).sum())
        norm_d += float(d.double().pow(2).sum())
        diff += float((g.double() - d.double()).pow(2).sum())
    denominator = (norm_g * norm_d) ** 0.5
    return {
        "cosine": dot / denominator if denominator > 0 else float("nan"),
        "rel_error": (diff / norm_d) ** 0.5 if norm_d > 0 else float("nan"),
    }


def _rng_state(device: torch.device) -> list[torch.Tensor]:
    """The CPU generator's state, and the device's on a GPU (dropout draws from it there)."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def _set_rng_state(states: list[torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)


def _shares(part: dict[str, float]) -> dict[str, float]:
    total = part["total"]
    return {
        "coverage": part["chosen"] / total if total > 0 else float("nan"),
        "oracle_coverage": part["oracle"] / total if total > 0 else float("nan"),
    }

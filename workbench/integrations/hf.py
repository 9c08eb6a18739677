"""`WorkbenchCallback`: record a `transformers.Trainer` run into the workbench store (a `wb.profile`).

    from workbench.integrations.hf import WorkbenchCallback

    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[WorkbenchCallback(runs_dir="runs", name="trainer-lora")])
    trainer.train()                     # then: workbench app --runs-dir runs

The Trainer's own callback points come too late for the raw gradients: in transformers 5,
`on_pre_optimizer_step` runs after `_clip_grad_norm`. So the callback watches the backward itself: a
post-accumulate-grad hook on each trainable parameter queues one autograd callback per backward, which
runs when that backward has finished. Accelerate's `GradientState.sync_gradients` (set by the Trainer
before each micro-batch) tells the last micro-batch of a step from the others: after the last one the
gradients are complete and not yet clipped (`Profile.step`); after the others it is
`Profile.micro_batch_end`. The step's rows follow when the optimizer's `step()` returns, before the
Trainer zeroes the gradients, so memory holds the optimizer state and the gradients.

The run's config records the Trainer's settings (lr, seed, batch size, accumulation, clipping, max
steps: the app's progress bar); the loss is the `.loss` of the model's forward (the Trainer passes the
labels). A Trainer that stops on an exception leaves the run "interrupted" when the process exits.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from workbench.orchestration.profile import Profile
from workbench.store.schema import DEFAULT_RUNS_DIR


class BackwardEnds:
    """Calls `done()` once at the end of every backward that reaches the given parameters."""

    def __init__(self, parameters: Iterable[nn.Parameter], done: Any) -> None:
        self._done = done
        self._queued = False
        self._handles = [p.register_post_accumulate_grad_hook(self._reached) for p in parameters]

    def _reached(self, _parameter: torch.Tensor) -> None:
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._finished)

    def _finished(self) -> None:
        self._queued = False
        self._done()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _syncing() -> bool:
    """Whether the Trainer's current micro-batch is the last of its step (accelerate's shared state)."""
    from accelerate.state import GradientState

    return bool(GradientState().sync_gradients)


class WorkbenchCallback(TrainerCallback):
    """Records the Trainer's training as a workbench run (kind "profiled"); see the module docstring.

    Options as `wb.profile`: runs_dir, name (default: the Trainer's run_name), record (RecordConfig or a
    dict of its fields), tokenizer (default: the Trainer's processing class), method (a label such as
    "lora", or a workbench Method), probe (Examples or (prompt, answer) pairs for the saliency maps).
    """

    def __init__(
        self,
        *,
        runs_dir: str = DEFAULT_RUNS_DIR,
        name: str | None = None,
        record: Any = None,
        tokenizer: Any = None,
        method: Any = None,
        probe: Sequence[Any] | None = None,
        max_length: int = 128,
    ) -> None:
        self.options = dict(
            runs_dir=runs_dir, record=record, method=method, probe=probe, max_length=max_length
        )
        self.name, self.tokenizer = name, tokenizer
        self.profile: Profile | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._backward: BackwardEnds | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        settings = {
            "lr": args.learning_rate,
            "seed": args.seed,
            "batch_size": args.per_device_train_batch_size,
            "max_grad_norm": args.max_grad_norm,
            "weight_decay": args.weight_decay,
        }
        if state.max_steps and state.max_steps > 0:
            settings["steps"] = state.max_steps
        self.profile = Profile(
            model,
            name=self.name or _run_name(args),
            tokenizer=self.tokenizer or kwargs.get("processing_class"),
            grad_accum=args.gradient_accumulation_steps,
            settings={**settings, "task": "transformers.Trainer"},
            **self.options,
        ).start()
        self._optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch one
        trainable = self.profile.method.trainable_parameters().values()
        self._backward = BackwardEnds(trainable, self._backward_finished)
        atexit.register(self._abandoned)

    def _backward_finished(self) -> None:
        if self.profile is None:
            return
        if _syncing():
            self.profile.step(optimizer=self._optimizer)
        else:
            self.profile.micro_batch_end()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()

    def _abandoned(self) -> None:
        """At interpreter exit, a run the Trainer never ended (an exception, Ctrl-C) reads interrupted."""
        self.close(RuntimeError("the Trainer stopped before on_train_end (an exception or a stop signal)"))

    def close(self, exc: BaseException | None = None) -> None:
        """End the run: completed, or interrupted by `exc` (the Trainer calls this at on_train_end; after
        a Trainer that raised in a notebook, `callback.close(err)` records it at once)."""
        atexit.unregister(self._abandoned)
        if self._backward is not None:
            self._backward.remove()
            self._backward = None
        profile, self.profile = self.profile, None
        if profile is not None:
            profile.close(exc)


def _run_name(args: Any) -> str:
    name = getattr(args, "run_name", None)
    return name if isinstance(name, str) and name and name != getattr(args, "output_dir", None) else "trainer"


__all__ = ["BackwardEnds", "WorkbenchCallback"]

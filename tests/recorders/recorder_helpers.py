"""Helpers of the recorder tests: configs for tiny-llama runs of every method, a gradient-capturing
recorder, and a prepared session for driving recorder hooks by hand."""

from __future__ import annotations

from typing import Any

import torch

from workbench.config import RecordConfig, RunConfig, TrainConfig
from workbench.methods import METHODS as REGISTRY
from workbench.recorders import RecorderBase, default_recorders

METHODS = REGISTRY.names()  # every registered method
# each method's small, fast options that still exercise its selection (declared by the method)
OPTIONS: dict[str, dict[str, Any]] = {name: dict(cls.tiny_options) for name, cls in REGISTRY.items()}
STEPS = 4
EVERY = 2  # recorded steps: 1, 2, 4


def make_config(
    task: str,
    runs_dir: Any,
    method: str,
    record: dict[str, Any] | None = None,
    method_options: dict[str, Any] | None = None,
    **train_: Any,
) -> RunConfig:
    """A tiny-llama run of `method` on `task` (OPTIONS unless `method_options`); `train_` overrides."""
    train_options = dict(steps=STEPS, batch_size=4, max_length=32, eval_examples=4, flush_every=2, lr=1e-3)
    return RunConfig(
        model="tiny-llama",
        task=task,
        method=method,
        runs_dir=str(runs_dir),
        train=TrainConfig(**{**train_options, **train_}),
        record=RecordConfig(**(record or {})),
        method_options=dict(OPTIONS[method] if method_options is None else method_options),
    )


RECORD_ALL = dict(
    grads_every=EVERY, saliency_every=EVERY, memory_every=EVERY, fidelity_every=EVERY, grads_frozen=True
)


class GradCapture(RecorderBase):
    """Keeps a copy of every trainable gradient at the end of each step's backward (test-only recorder)."""

    name = "capture"

    def __init__(self) -> None:
        super().__init__()
        self.grads: dict[int, dict[str, torch.Tensor]] = {}

    def on_backward_end(self, step: int) -> None:
        params = self.session.method.trainable_parameters()
        self.grads[step] = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}


def all_recorders(every: int = 1) -> list:
    """Every recorder, each due at every step, frozen-weight gradients included."""
    return default_recorders(
        RecordConfig(
            grads_every=every,
            saliency_every=every,
            memory_every=every,
            fidelity_every=every,
            grads_frozen=True,
        )
    )


def prepared_session(config: RunConfig):
    """A recording session on a prepared method, outside the loop: (session, setup, training batches).

    For tests that drive recorder hooks by hand; the writer is a fresh run in `config.runs_dir`.
    """
    from workbench.orchestration.assembly import prepare_method, setup_run, train_stream
    from workbench.recorders import RecordingSession
    from workbench.store import RunWriter

    setup = setup_run(config)
    cfg, model, tok = config.train, setup.loaded.model, setup.loaded.tokenizer
    torch.manual_seed(cfg.seed)
    batches = train_stream(setup)
    prepare_method(setup, batches)
    writer = RunWriter.create(config.runs_dir, name="hand", config={}, environment={})
    session = RecordingSession(
        model, setup.loaded.anatomy, setup.method, writer, setup.device, tok, setup.task, cfg.max_length
    )
    return session, setup, batches

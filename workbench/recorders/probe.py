"""Fixed probe examples, and a side-effect-free forward for recorders that look at them (saliency).

The probe is the first n examples of the task's seeded train split, encoded as in training (prompt +
gold answer, the run's max length): the same examples at every recorded step, so what changes between
recorded steps comes from training alone.

A probe forward must leave training exactly as it was (tests compare gradients bit for bit): it runs
under no_grad, with dropout off (so drift between steps is not dropout noise), and restores every
random stream it might touch: the global CPU / CUDA generators and the generators the method declares
(`Method.generators()`: TokenTune's random selection draws from one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from workbench.data import Batch, collate, encode_example, pad_token_id
from workbench.lm import answer_logits
from workbench.methods.base import Method, TokenSelection
from workbench.recorders.base import RecordingSession


@dataclass
class Probe:
    """The probe batch on the run's device and the text of each of its tokens."""

    batch: Batch  # (B, n) padded on the right, example_ids 0..B-1
    tokens: list[list[str]]  # per example, the text of each real token, in position order


def build_probe(session: RecordingSession, n: int) -> Probe:
    """The first `n` training examples of the session's task (or of its `probe_source`) as a batch (fewer
    if there are fewer)."""
    source = (
        session.probe_source if session.probe_source is not None else getattr(session.task, "train", None)
    )
    if source is None or session.tokenizer is None:
        raise ValueError("the probe needs the session's tokenizer and its task or probe examples")
    tokenizer = session.tokenizer
    examples = list(source)[:n]
    encoded = [encode_example(tokenizer, e, session.max_length) for e in examples]
    batch = collate(encoded, pad_token_id(tokenizer)).to(session.device)
    tokens = [[tokenizer.decode([i]) for i in ids] for ids, _ in encoded]
    return Probe(batch, tokens)


@contextlib.contextmanager
def probe_forward(model: nn.Module, method: Method, device: torch.device) -> Iterator[None]:
    """Run forwards inside without any effect on training: no_grad, dropout off, RNG streams restored."""
    training = {module: module.training for module in model.modules()}
    generators = [(g, g.get_state()) for g in method.generators()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            yield
    finally:
        for module, mode in training.items():
            module.training = mode
        for generator, state in generators:
            generator.set_state(state)


def method_token_selection(session: RecordingSession, batch: Batch) -> list[TokenSelection]:
    """The method's own training-mode token choice on `batch` (SAGE, TokenTune), under `probe_forward`:
    nothing updated, random streams restored; empty for methods that select no tokens."""
    with probe_forward(session.model, session.method, session.device), session.method.forward_context(batch):
        answer_logits(session.model, batch)
    shape = tuple(batch.input_ids.shape)
    return [
        sel
        for sel in session.method.selection()
        if isinstance(sel, TokenSelection) and sel.selected.shape == shape
    ]

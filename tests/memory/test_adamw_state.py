"""AdamW's state bytes computed from the parameters' shapes equal the state of a real step, to the byte,
for every method's trainable parameters (the memory sweep's optimizer_state takes no step)."""

from __future__ import annotations

import pytest
import torch
from recorders.recorder_helpers import METHODS, make_config

from workbench.lm import answer_loss
from workbench.memory import static_bytes
from workbench.memory.static import adamw_state_bytes
from workbench.orchestration.assembly import prepare_method, setup_run, train_stream


@pytest.mark.parametrize("method", METHODS)
def test_adamw_state_bytes_equal_a_real_step(tiny_task, tmp_path, method):
    setup = setup_run(make_config(tiny_task, tmp_path, method))
    batches = train_stream(setup)
    prepare_method(setup, batches)
    params = setup.method.trainable_parameters()
    predicted = adamw_state_bytes(params.values())
    optimizer = torch.optim.AdamW(params.values(), lr=1e-3, weight_decay=0.01)
    batch = next(batches)
    with setup.method.forward_context(batch):
        answer_loss(setup.loaded.model, batch).backward()
    optimizer.step()
    assert static_bytes(setup.loaded.model, optimizer)["optimizer_state"] == predicted > 0

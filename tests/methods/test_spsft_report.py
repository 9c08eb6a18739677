"""The paper's Table 7 rows from memory accounting numbers."""

from __future__ import annotations

import pytest
import torch

from workbench.data.batch import IGNORE_INDEX, Batch
from workbench.lm import answer_loss
from workbench.memory.saved import track_saved_tensors
from workbench.memory.static import static_bytes
from workbench.methods.base import PrepareContext
from workbench.methods.spsft import SPSFT, SPSFTOptions
from workbench.methods.spsft.report import TABLE7_ROWS, table7_memory
from workbench.models.anatomy import anatomy_of
from workbench.models.tiny import tiny_model

GB = 10**9


def test_peft_rows_from_logical_categories() -> None:
    categories = {
        "params_frozen": 30 * GB,
        "params_trainable": 1 * GB,  # W_f: new parameters on top of the frozen base
        "gradients": 1 * GB,
        "optimizer_state": 2 * GB,
        "saved_activations": 5 * GB,
    }
    row = table7_memory(categories, mem_m=30 * GB)
    assert tuple(row) == TABLE7_ROWS
    assert row == {"mem_M": 30 * GB, "mem_FT": 2 * GB, "mem_Aux": 7 * GB, "mem_TTL": 39 * GB, "mem": 9 * GB}
    assert row["mem"] == row["mem_FT"] + row["mem_Aux"] == row["mem_TTL"] - row["mem_M"]


def test_measured_total_and_full_fine_tuning() -> None:
    # full fine-tuning: the trainables are the base's own weights, already inside mem_M
    categories = {"params_trainable": 8 * GB, "gradients": 8 * GB, "optimizer_state": 16 * GB}
    row = table7_memory(categories, mem_m=9 * GB, mem_ttl=40 * GB, base_params=8 * GB)
    assert row == {"mem_M": 9 * GB, "mem_FT": 8 * GB, "mem_Aux": 23 * GB, "mem_TTL": 40 * GB, "mem": 31 * GB}


@pytest.mark.parametrize(
    "categories, kwargs, message",
    [
        ({"gradients": -1}, {}, "gradients must be a non-negative int"),
        ({"gradients": 1.5}, {}, "gradients must be a non-negative int"),
        ({}, {"mem_ttl": -5}, "mem_ttl must be"),
        ({"params_trainable": 4}, {"base_params": 10}, "base_params .* exceeds"),
    ],
)
def test_bad_numbers(categories: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        table7_memory(categories, 0, **kwargs)


def test_tiny_model_mem_is_ft_plus_aux() -> None:
    model = tiny_model("llama")
    mem_m = static_bytes(model)["params_trainable"]  # logical inference memory: the weights only
    ids = torch.randint(3, 384, (2, 10))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -2:] = ids[:, -2:]
    batch = Batch(ids, torch.ones_like(ids), labels)
    method = SPSFT(SPSFTOptions(rank=4))
    loss_fn = lambda b: answer_loss(model, b)  # noqa: E731
    method.prepare(PrepareContext(model, anatomy_of(model), None, iter([]), loss_fn, lr=1e-3, seed=0))
    optimizer = torch.optim.AdamW(method.trainable_parameters().values())
    with track_saved_tensors(model) as tracker:
        loss = answer_loss(model, batch)
    loss.backward()
    optimizer.step()
    categories = {**static_bytes(model, optimizer), "saved_activations": tracker.total_bytes}
    row = table7_memory(categories, mem_m)
    w_f_bytes = sum(p.numel() * p.element_size() for p in method.trainable_parameters().values())
    assert categories["params_frozen"] == mem_m  # the base is intact and frozen
    assert row["mem_FT"] == 2 * w_f_bytes  # W_f and its gradient
    assert categories["optimizer_state"] >= 2 * w_f_bytes  # AdamW's two moments (+ step counters)
    assert row["mem_Aux"] == categories["optimizer_state"] + tracker.total_bytes
    assert row["mem"] == row["mem_TTL"] - mem_m

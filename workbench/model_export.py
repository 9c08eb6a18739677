"""Export a finished run's trained model as a normal transformers model: the training merged into plain
weights (`workbench export RUN --out DIR`). Figures are exported by `workbench.figures.export`.

With `peft=True` (`--peft`), a run of the LoRA family (lora, velora; sage and tokentune on base = lora)
is written instead as a peft adapter directory (adapter_config.json + adapter_model.safetensors, by peft's
own `save_pretrained` on the rebuilt PeftModel, plus the tokenizer), which
`PeftModel.from_pretrained(base, out)` loads; nothing is merged.

Export refuses (one `WorkbenchError`, nothing written) rather than write a model it did not rebuild
exactly as trained:

- the adapter: not empty, every tensor finite, and exactly what the method saves (the keys, shapes,
  dtypes and values that `method.adapter_state()` gives back after `method.restore`: a generic check,
  no per-method code);
- the base model: its content hash (`provenance.model_sha256`, in the run's train dtype) must be the
  one the run recorded (`environment.inputs.model_sha256`), so an edited manifest or a changed model
  never gets the adapter merged onto another base; runs that recorded no hash are not checked;
- the merged model: every parameter finite;
- the output directory: written as a hidden sibling first and renamed into place only when complete; a
  non-empty `out` is replaced only with `force`, and never when it holds subdirectories (a model export
  is flat).
"""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.config import RunConfig
from workbench.errors import ConfigError, StoreError, WorkbenchError
from workbench.methods import build_method
from workbench.models import load_model
from workbench.models.loading import DTYPES
from workbench.provenance import model_sha256
from workbench.store import RunReader

if TYPE_CHECKING:
    import torch
    from torch import nn

    from workbench.methods.lora import LoraAdapterMixin

# what a method's restore raises on a state that does not fit it (a missing key, a wrong shape, ...)
RESTORE_ERRORS = (KeyError, RuntimeError, ValueError, IndexError, TypeError)


def export_model(run: RunReader, out: str | Path, *, force: bool = False, peft: bool = False) -> Path:
    """Rebuild the run's trained model from the base model and its saved adapter, check it, merge, save.

    The saved `adapter.safetensors` holds what the method needs to rebuild its modules (indices and
    trained values); no selection phase runs again. The result loads with
    `AutoModelForCausalLM.from_pretrained(out)`; with `peft`, a LoRA-family run is saved unmerged as a
    peft adapter directory instead (`PeftModel.from_pretrained(base, out)`). A non-empty `out` is
    replaced only with `force` (and only when it holds no subdirectories). Any problem -> one
    WorkbenchError, and `out` is untouched.
    """
    target = check_out(out, force=force)
    config = RunConfig.from_dict(run.config)
    if peft and peft_adapters(build_method(config.method, config.method_options)) is None:
        raise ConfigError(
            f"run {run.id} used method {config.method!r}, which trains no peft LoRA adapters: --peft exports "
            "only LoRA-family runs (lora, velora; sage and tokentune with base = lora); export without "
            "--peft to merge the training into the weights"
        )
    if "adapter" not in run.tensor_names():
        raise StoreError(f"run {run.id} saved no weights (train.save_weights was off, or it did not finish)")
    state = run.tensors("adapter")
    check_adapter_tensors(run, state)
    loaded = load_model(config.model)
    dtype = DTYPES[config.train.dtype]
    if dtype != loaded.model.dtype:  # the base as the run trained on it (bf16 runs: fp32 load, cast)
        loaded.model.to(dtype)
    check_base_model(run, config.model, loaded.model)
    method = build_method(config.method, config.method_options)
    where = f"run {run.id}: adapter.safetensors does not fit method {config.method!r} on {config.model!r}"
    try:
        method.restore(loaded.model, loaded.anatomy, state)
        problem = adapter_problem(state, method.adapter_state())
    except WorkbenchError:
        raise
    except RESTORE_ERRORS as err:
        raise StoreError(f"{where}: {_one_line(err)}") from err
    if problem:
        raise StoreError(f"{where}: {problem}")
    if peft:
        return write_export(target, peft_adapters(method).peft_model, loaded.tokenizer, force=force)
    try:
        merged = method.merge()
    except WorkbenchError:
        raise
    except RESTORE_ERRORS as err:
        raise StoreError(f"run {run.id}: merging the adapter failed: {_one_line(err)}") from err
    check_finite_model(run, merged)
    return write_export(target, merged, loaded.tokenizer, force=force)


def peft_adapters(method) -> LoraAdapterMixin | None:
    """What holds a LoRA-family method's peft adapters (its `peft_model`, set by `restore`): the method
    itself, or its base for SAGE and TokenTune on base = lora; None for a method without peft adapters."""
    from workbench.methods.lora import LoraAdapterMixin

    for owner in (method, getattr(method, "base", None)):
        if isinstance(owner, LoraAdapterMixin):
            return owner
    return None


def _one_line(err: BaseException) -> str:
    """`err` as one line (load_state_dict's errors span several): its type and its words."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


# ---- the adapter and the base --------------------------------------------------------------------------


def check_adapter_tensors(run: RunReader, state: dict[str, torch.Tensor]) -> None:
    """The saved adapter holds tensors, and every floating one is finite (no NaN, no inf)."""
    import torch

    if not state:
        raise StoreError(
            f"run {run.id}: adapter.safetensors holds no tensors (exporting it would give the untrained base)"
        )
    bad = sorted(n for n, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if bad:
        raise StoreError(
            f"run {run.id}: adapter.safetensors has non-finite values (NaN or inf) in {len(bad)} of "
            f"{len(state)} tensors, e.g. {bad[:3]}"
        )


def check_base_model(run: RunReader, model_name: str, model: nn.Module) -> None:
    """The base model loaded here is the one the run trained: its sha256 equals the recorded one.

    Runs that recorded no model hash (older runs) are not checked."""
    inputs = (run.manifest.get("environment") or {}).get("inputs") or {}
    recorded = inputs.get("model_sha256")
    if not recorded:
        return
    actual = model_sha256(model)
    if actual != recorded:
        raise StoreError(
            f"run {run.id} was trained on a base model with sha256 {recorded}, but model {model_name!r} "
            f"loads here with sha256 {actual}: the model changed, or the run's config.model was edited; "
            "refusing to merge the adapter onto another base"
        )


def adapter_problem(saved: dict[str, torch.Tensor], rebuilt: dict[str, torch.Tensor]) -> str | None:
    """What differs between the saved adapter and what the method saves after restoring it (missing and
    unexpected keys, then shapes, dtypes and values), or None when they are the same."""
    import torch

    missing = sorted(set(rebuilt) - set(saved))
    unexpected = sorted(set(saved) - set(rebuilt))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        return "; ".join(parts)
    for name in sorted(saved):
        got, want = saved[name], rebuilt[name].detach().cpu()
        if tuple(got.shape) != tuple(want.shape):
            return f"{name} has shape {tuple(got.shape)}, the method saves {tuple(want.shape)}"
        if got.dtype != want.dtype:
            return f"{name} has dtype {got.dtype}, the method saves {want.dtype}"
        if not torch.equal(got, want):
            return f"{name} does not survive restoring (the method rebuilds other values)"
    return None


def check_finite_model(run: RunReader, model: nn.Module) -> None:
    """Every floating parameter of the merged model is finite."""
    import torch

    bad = [
        n for n, p in model.named_parameters() if p.is_floating_point() and not bool(torch.isfinite(p).all())
    ]
    if bad:
        raise StoreError(
            f"run {run.id}: the merged model has non-finite weights (NaN or inf) in {len(bad)} "
            f"parameters, e.g. {bad[:3]}"
        )


# ---- the output directory ------------------------------------------------------------------------------


def check_out(out: str | Path, *, force: bool) -> Path:
    """The absolute export directory, checked before any work: not empty as a name, not a file, not a
    non-empty directory unless `force`, never one with subdirectories, under a writable directory."""
    if not str(out).strip():
        raise ConfigError("the export directory (--out) is empty: give a directory for the model")
    path = Path(os.path.abspath(Path(out).expanduser()))
    if path.parent == path:
        raise StoreError(f"cannot export to {path}: give a directory for the model, not the root")
    if path.exists() and not path.is_dir():
        raise StoreError(f"--out {path} is a file, not a directory: give a directory for the model")
    if path.is_dir():
        try:
            entries = sorted(path.iterdir())
        except OSError as err:
            raise StoreError(f"cannot read the export directory {path}: {err}") from err
        subdirs = [e.name for e in entries if e.is_dir()]
        if subdirs:
            raise StoreError(
                f"--out {path} holds subdirectories (e.g. {subdirs[:3]}): it is not a model export; "
                "refusing to replace it, even with --force"
            )
        if entries and not force:
            names = [e.name for e in entries]
            raise StoreError(
                f"--out {path} is not empty ({len(names)} files, e.g. {names[:3]}): "
                "pass --force to replace it, or choose an empty or new directory"
            )
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StoreError(f"cannot export to {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot export to {path}: {ancestor} is not writable")
    return path


def write_export(path: Path, model: nn.Module, tokenizer, *, force: bool) -> Path:
    """Save into a hidden sibling of `path`, then rename it into place (an existing `path` is moved aside
    first and deleted after), so no failure leaves a half-written export."""
    created = _make_parents(path.parent)
    temp = path.parent / f".{path.name}.export-{secrets.token_hex(4)}"
    try:
        os.mkdir(temp)
    except OSError as err:
        _remove_dirs(created)
        raise StoreError(f"cannot export to {path}: {err}") from err
    try:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
        aside = _move_in(temp, path, force=force)
    except BaseException as err:
        shutil.rmtree(temp, ignore_errors=True)
        _remove_dirs(created)
        if isinstance(err, OSError):
            raise StoreError(f"cannot export to {path}: {err}") from err
        raise
    if aside is not None:
        try:
            if aside.is_symlink():
                aside.unlink()
            else:
                shutil.rmtree(aside)
        except OSError as err:
            message = f"exported to {path}, but could not delete the replaced export {aside}: {err}"
            warnings.warn(message, stacklevel=2)
    return path


def _move_in(temp: Path, path: Path, *, force: bool) -> Path | None:
    """Rename `temp` to `path`; a non-empty `path` (allowed by `force`) is moved aside first and put back
    if the rename fails. Returns where the old directory went, or None."""
    if not (path.is_dir() and any(path.iterdir())):
        os.rename(temp, path)  # a missing or empty directory: replaced at once
        return None
    if not force:  # appeared since check_out
        raise StoreError(f"--out {path} is not empty: pass --force to replace it")
    aside = path.parent / f".{path.name}.replaced-{secrets.token_hex(4)}"
    os.rename(path, aside)
    try:
        os.rename(temp, path)
    except OSError:
        os.rename(aside, path)
        raise
    return aside


def _make_parents(directory: Path) -> list[Path]:
    """Create `directory` and its missing parents; returns those created, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    created: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as err:
            _remove_dirs(created)
            raise StoreError(f"cannot create {d}: {err}") from err
        created.insert(0, d)
    return created


def _remove_dirs(directories: list[Path]) -> None:
    for d in directories:  # deepest first
        try:
            d.rmdir()
        except OSError:
            pass

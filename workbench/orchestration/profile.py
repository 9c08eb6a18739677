"""`wb.profile`: a run recorded around your own training loop, in the same tables as a workbench run.

    import workbench as wb

    with wb.profile(model, runs_dir="runs", name="my-loop") as prof:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            prof.step(loss=loss, optimizer=optimizer)   # after the backward, before clipping
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()                            # the step's rows are written when this returns
            optimizer.zero_grad()

The same recorders as the workbench loop (workbench/recorders), driven from the events of your loop:
- a step starts at its first forward with gradients on: a forward pre-hook on the module that runs the
  embedding and the blocks (LLaMA's `model.model`), which every entry point calls (`model(...)`, a peft
  wrapper's forward, workbench.lm.answer_logits); the memory recorder starts tracking saved tensors
  there, before the embedding;
- `micro_batch_end()` after each micro-batch's backward when you accumulate gradients (`step` ends the
  last one itself): memory is tracked over the step's first micro-batch, as in the workbench loop;
- `step(loss=..., optimizer=...)` after the step's last backward and before clipping: the gradient
  statistics are the raw gradients. The step ends when `optimizer.step()` returns (a step post-hook), so
  the memory rows hold the optimizer state and the gradients; without an optimizer it ends at once.
- timing: forward = the first such call to the last LM-head call of each micro-batch; backward =
  from there to the micro-batch's end (the loss computation included); optimizer = from `step` to the
  end of `optimizer.step()` (clipping included); recording = the recorders' own hooks.
- loss: `loss=` (a tensor or a number; with accumulation, the step's loss as you log it), else the mean
  of the `.loss` your model's forward returned during the step.
- saliency (what SAGE would choose, per block) on `probe` examples, when a tokenizer is given.

Not recorded: gradient fidelity (it replays the workbench's own batches through a reference pass) and
accuracy (the workbench's evaluation); the summary's `profile_note` says so. The run's config has kind
"profiled". Leaving the block records it completed; an exception or a stop signal in your loop leaves it
"interrupted" with that reason and every step recorded so far; a recorder that fails leaves it "failed".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn

from workbench.config import RecordConfig
from workbench.data.example import Example
from workbench.errors import ConfigError, RunStopped, WorkbenchError
from workbench.methods.base import MethodDefaults
from workbench.models.anatomy import ModelAnatomy, anatomy_of
from workbench.orchestration.signals import raise_if_stopped, stop_on_signals
from workbench.orchestration.train import flush_rows, train_metric_rows
from workbench.recorders import Recording, RecordingSession, StepInfo, default_recorders
from workbench.store import RunWriter, environment_info
from workbench.store.schema import DEFAULT_RUNS_DIR

KIND = "profiled"  # manifest config["kind"] of a profiled run
CUSTOM = "custom"  # the method label of a loop that names none
NOT_HERE = ("fidelity",)  # recorders that replay the workbench's own batches: not around a loop of yours


class ProfileError(WorkbenchError):
    """`wb.profile` used out of order (a step with no backward, a micro-batch end with no forward)."""


class OwnTraining(MethodDefaults):
    """What the recorders need of a method, for a model trained by your own loop: its parameters with
    requires_grad train, nothing is selected, the forward is the model's own."""

    gradient = "exact"

    def __init__(self, model: nn.Module, label: str = CUSTOM) -> None:
        self.model = model
        self.name = label
        self.options = None

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.model.named_parameters() if p.requires_grad}


def probe_examples(probe: Sequence[Any] | None) -> list[Example] | None:
    """`probe` as Examples: each an `Example` or a (prompt, answer) pair of strings."""
    if probe is None:
        return None
    if isinstance(probe, (str, bytes)) or not isinstance(probe, Sequence) or not probe:
        raise ConfigError("probe must be a non-empty list of Examples or (prompt, answer) pairs of strings")
    examples = []
    for item in probe:
        if isinstance(item, Example):
            examples.append(item)
        elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(t, str) for t in item):
            prompt, answer = item
            if not answer.strip():
                raise ConfigError(f"probe example {item!r}: the answer is empty")
            examples.append(Example(prompt, (answer,), 0))
        else:
            raise ConfigError(
                f"probe examples are workbench Examples or (prompt, answer) pairs of strings, got {item!r}"
            )
    return examples


def _record_config(record: RecordConfig | Mapping[str, Any] | None) -> RecordConfig:
    if record is None:
        return RecordConfig()
    if isinstance(record, RecordConfig):
        return record
    if isinstance(record, Mapping):
        try:
            return RecordConfig(**record)
        except TypeError as err:
            raise ConfigError(f"record: {err} (the fields of workbench.config.RecordConfig)") from err
    raise ConfigError(f"record must be a RecordConfig or a dict of its fields, got {type(record).__name__}")


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(
        getattr(config, "_name_or_path", "") or getattr(config, "model_type", "") or type(model).__name__
    )


def _model_settings(model: nn.Module) -> dict[str, Any]:
    """The model's attention kernel, checkpointing and dtype, as a workbench run's `train` config has them."""
    config = getattr(model, "config", None)
    first = next(model.parameters(), None)
    settings: dict[str, Any] = {
        "gradient_checkpointing": bool(
            getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x
            if hasattr(model, "is_activation_checkpointing")
            else getattr(model, "is_gradient_checkpointing", False)
        ),
        "dtype": str(first.dtype).removeprefix("torch.") if first is not None else "float32",
    }
    attn = getattr(config, "_attn_implementation", None)
    if isinstance(attn, str):
        settings["attn"] = attn
    return settings


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _stack_owner(anatomy: ModelAnatomy) -> nn.Module:
    """The module that runs the embedding and the blocks (LLaMA's `model.model`): every entry point calls
    it, a wrapper's forward included (a peft model's forward skips its LoraModel's hooks)."""
    if anatomy.layers_path and "." in anatomy.layers_path:
        return anatomy.model.get_submodule(anatomy.layers_path.rpartition(".")[0])
    return anatomy.decoder


def _scalar(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ConfigError(f"loss must be one number, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach().float().item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"loss must be a tensor or a number, got {type(value).__name__}")


class Profile:
    """A run recorded around your own training loop; see the module docstring (and `profile`)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        runs_dir: str = DEFAULT_RUNS_DIR,
        name: str | None = None,
        record: RecordConfig | Mapping[str, Any] | None = None,
        tokenizer: Any = None,
        method: Any = None,
        probe: Sequence[Any] | None = None,
        max_length: int = 128,
        grad_accum: int = 1,
        flush_every: int = 10,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"wb.profile needs the model you train (an nn.Module), got {type(model).__name__}"
            )
        for label, value in (
            ("max_length", max_length),
            ("grad_accum", grad_accum),
            ("flush_every", flush_every),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
        if (
            not isinstance(runs_dir, (str, bytes))
            and not hasattr(runs_dir, "__fspath__")
            or not str(runs_dir)
        ):
            raise ConfigError(f"runs_dir must be a directory path, got {runs_dir!r}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"name must be a non-empty string (the run's name), got {name!r}")
        self.model = model  # what the loop calls: its output's loss is read from here
        # what the recorders look at: a peft wrapper's model (the same modules, which workbench.lm calls)
        self.trained: nn.Module = (
            model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
        )
        self.record = _record_config(record)
        self.probe = probe_examples(probe)
        if self.probe is not None and tokenizer is None:
            raise ConfigError("probe examples need the model's tokenizer (tokenizer=...)")
        if method is None or isinstance(method, str):
            if method is not None and not method.strip():
                raise ConfigError("method must be a label (e.g. 'lora') or a workbench Method, got ''")
            self.method = OwnTraining(self.trained, method or CUSTOM)
        elif callable(getattr(method, "trainable_parameters", None)):
            self.method = method
        else:
            raise ConfigError(
                "method must be a label (e.g. 'lora'), a workbench Method or None, "
                f"got {type(method).__name__}"
            )
        self.anatomy = anatomy_of(self.trained)  # ConfigError for anything but a causal LM
        self.runs_dir = runs_dir
        self.name = name or f"profile-{self.method.name}"
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.grad_accum = grad_accum
        self.flush_every = flush_every
        self.settings = dict(settings or {})
        try:
            json.dumps(self.settings, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"settings must map names to JSON values (numbers, strings, lists): {err}"
            ) from None
        self.device = _device(model)
        self.writer: RunWriter | None = None
        self.steps = 0  # steps recorded (closed)
        self._stack: contextlib.ExitStack | None = None
        self._recording: Recording | None = None
        self._session: RecordingSession | None = None
        self._state = "idle"  # idle -> forward (micro-batches) -> closing (waiting for optimizer.step)
        self._in_micro_batch = False
        self._busy = False  # inside a recorder hook: its own forwards (the saliency probe) are not steps
        self._t: dict[str, float] = {}
        self._seconds: dict[str, float] = {}
        self._losses: list[float] = []
        self._pending: tuple[float | None, float | None] = (None, None)  # (loss, lr) of the closing step
        self._step_seconds: list[float] = []
        self._last_loss: float | None = None
        self._optimizer_hooks: dict[int, Any] = {}
        self._notes: list[str] = []

    # -- the run -------------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._writer().id

    @property
    def run_dir(self) -> str:
        return str(self._writer().path)

    def _writer(self) -> RunWriter:
        if self.writer is None:
            raise ProfileError("the profile has not started: use `with wb.profile(...) as prof:`")
        return self.writer

    def _recorders(self) -> list[Any]:
        recorders = [r for r in default_recorders(self.record) if r.name not in NOT_HERE]
        for name in NOT_HERE:
            if getattr(self.record, name, False):
                self._notes.append(f"{name}: not recorded (it replays the workbench's own batches)")
        if self.record.saliency and self.probe is None:
            recorders = [r for r in recorders if r.name != "saliency"]
            self._notes.append("saliency: not recorded (give tokenizer= and probe= examples)")
        return recorders

    def start(self) -> Profile:
        """Open the run in the store and attach the recorders and hooks (what `with` does)."""
        if self.writer is not None:
            raise ProfileError("this profile has already started; make a new one for another run")
        config = {
            "kind": KIND,
            "name": self.name,
            "model": _model_name(self.trained),
            "task": str(self.settings.pop("task", "own loop")),
            "method": self.method.name,
            "method_options": {},
            "train": {
                "grad_accum": self.grad_accum,
                "flush_every": self.flush_every,
                **_model_settings(self.trained),
                **self.settings,
            },
            "record": dataclasses.asdict(self.record),
            "runs_dir": str(self.runs_dir),
        }
        recorders = self._recorders()
        self.writer = RunWriter.create(
            self.runs_dir,
            name=self.name,
            config=config,
            environment={**environment_info(self.device), "inputs": None},
        )
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(stop_on_signals())
            self._session = RecordingSession(
                self.trained,
                self.anatomy,
                self.method,
                self.writer,
                self.device,
                tokenizer=self.tokenizer,
                probe_source=self.probe,
                max_length=self.max_length,
                grad_accum=self.grad_accum,
            )
            self._recording = Recording(recorders)
            with self._quiet():
                stack.enter_context(self._recording.attached(self._session))
                self._recording.prepared()
            self._hook(stack)
        except BaseException as exc:
            stack.__exit__(type(exc), exc, exc.__traceback__)
            self._finish(exc)
            raise
        self._stack = stack
        return self

    def _hook(self, stack: contextlib.ExitStack) -> None:
        model, head = self.model, self.trained.get_output_embeddings()
        stack.callback(
            _stack_owner(self.anatomy).register_forward_pre_hook(lambda *_: self._forward_start()).remove
        )
        stack.callback(head.register_forward_hook(lambda *_: self._forward_end()).remove)
        stack.callback(model.register_forward_hook(lambda _m, _i, out: self._model_output(out)).remove)
        stack.callback(self._remove_optimizer_hooks)

    @contextlib.contextmanager
    def _quiet(self):
        """Forwards run by the recorders (probes) are not steps of the loop."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    # -- events of the loop --------------------------------------------------------------------------

    def _forward_start(self) -> None:
        if self._busy or not torch.is_grad_enabled() or self._stack is None:
            return
        if self._state == "closing":  # optimizer.step() never came (skipped, e.g. by a grad scaler)
            self._close_step(None)
        if self._state == "idle":
            raise_if_stopped()
            self._state = "forward"
            self._seconds = {"forward": 0.0, "backward": 0.0}
            self._losses = []
            with self._quiet():
                self._recording.step_start(self.steps + 1)
        if not self._in_micro_batch:
            self._in_micro_batch = True
            self._t["micro_batch"] = self._t["forward_end"] = time.perf_counter()

    def _forward_end(self) -> None:
        if self._in_micro_batch and not self._busy:
            self._t["forward_end"] = time.perf_counter()

    def _model_output(self, output: Any) -> None:
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, Mapping):
            loss = output.get("loss")
        if self._in_micro_batch and not self._busy and isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(float(loss.detach().float().item()))

    def micro_batch_end(self) -> None:
        """After a micro-batch's backward, when the step accumulates several (`step` ends the last one)."""
        self._require_started()
        if not self._in_micro_batch:
            raise ProfileError(
                "micro_batch_end() with no forward since the last one: call it after each micro-batch's "
                "backward (a forward with gradients on starts a micro-batch)"
            )
        now = time.perf_counter()
        self._seconds["forward"] += self._t["forward_end"] - self._t["micro_batch"]
        self._seconds["backward"] += now - self._t["forward_end"]
        self._in_micro_batch = False
        with self._quiet():
            self._recording.micro_batch_end(self.steps + 1, None)

    def step(self, loss: Any = None, optimizer: torch.optim.Optimizer | None = None) -> None:
        """After the step's last backward, before clipping: records the raw gradients; the step's other
        rows follow when `optimizer.step()` returns (at once without an optimizer)."""
        self._require_started()
        if self._state != "forward":
            raise ProfileError(
                "step() with no forward and backward since the last step: call it once per optimizer step, "
                "after loss.backward() and before clipping, optimizer.step() and zero_grad()"
            )
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        value = _scalar(loss)
        if self._in_micro_batch:
            self.micro_batch_end()
        trainable = self.method.trainable_parameters().values()
        if not any(p.grad is not None for p in trainable):
            raise ProfileError(
                "step() found no gradients on the trainable parameters: call it after loss.backward() and "
                "before optimizer.zero_grad()"
            )
        step = self.steps + 1
        with self._quiet():
            self._recording.backward_end(step)
        if value is None and self._losses:
            value = statistics.fmean(self._losses)
        lr = (
            float(optimizer.param_groups[0]["lr"])
            if optimizer is not None and optimizer.param_groups
            else None
        )
        self._pending = (value, lr)
        if optimizer is None:
            self._close_step(None)
            return
        self._session.optimizer = optimizer
        if id(optimizer) not in self._optimizer_hooks:
            self._optimizer_hooks[id(optimizer)] = optimizer.register_step_post_hook(
                lambda *_: self._optimizer_stepped()
            )
        self._state = "closing"
        self._t["optimizer"] = time.perf_counter()

    def _optimizer_stepped(self) -> None:
        if self._state == "closing":
            self._close_step(time.perf_counter() - self._t["optimizer"])

    def _close_step(self, optimizer_seconds: float | None) -> None:
        step = self.steps + 1
        loss, lr = self._pending
        seconds = dict(self._seconds)
        if optimizer_seconds is not None:
            seconds["optimizer"] = optimizer_seconds
        self._step_seconds.append(sum(seconds.values()))
        info = StepInfo(step, math.nan if loss is None else loss, math.nan if lr is None else lr, seconds)
        self._state = "idle"
        self.steps = step
        with self._quiet():
            self._recording.step_end(info)
        self.writer.add("metrics", train_metric_rows(step, loss, lr))
        self._last_loss = loss
        if step % self.flush_every == 0:
            flush_rows(self.writer, step)

    def _require_started(self) -> None:
        if self._stack is None:
            raise ProfileError("the profile is not running: use `with wb.profile(...) as prof:`")

    def _remove_optimizer_hooks(self) -> None:
        for handle in self._optimizer_hooks.values():
            handle.remove()
        self._optimizer_hooks.clear()

    # -- the end -------------------------------------------------------------------------------------

    def close(self, exc: BaseException | None = None) -> None:
        """Detach everything and record how the run ended (what leaving the `with` block does)."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        if exc is None and self._state == "closing":
            self._close_step(None)  # step() came but optimizer.step() did not
        try:
            stack.__exit__(*((type(exc), exc, exc.__traceback__) if exc else (None, None, None)))
        except BaseException as err:  # a recorder failed while detaching
            exc = exc or err
            self._finish(exc)
            raise
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        writer = self.writer
        if writer is None or writer.finished:
            return
        try:
            summary: dict[str, Any] = self._recording.summary() if self._recording else {}
            summary.update(
                steps_recorded=self.steps,
                median_step_seconds=statistics.median(self._step_seconds) if self._step_seconds else None,
                final_loss=self._last_loss,
                trainable_parameters=sum(p.numel() for p in self.method.trainable_parameters().values()),
                total_parameters=sum(p.numel() for p in self.model.parameters()),
                profile_note="; ".join(self._notes) or None,
            )
            writer.update_summary(**summary)
        except WorkbenchError:
            if exc is None:
                raise
        if exc is None:
            writer.finish("completed")
            return
        # the loop was yours: its exception interrupted the recording; a recorder's own failure failed it
        writer.end_with(exc, "failed" if isinstance(exc, RunStopped) else "interrupted")

    def __enter__(self) -> Profile:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(exc)


def profile(model: nn.Module, **options: Any) -> Profile:
    """Record your own training loop of `model` as a workbench run (a context manager; module docstring).

    Options: runs_dir, name, record (RecordConfig or a dict of its fields), tokenizer, method (a label
    such as "lora", or a workbench Method), probe (Examples or (prompt, answer) pairs for the saliency
    maps), max_length (of the probe), grad_accum (micro-batches per step, for frozen-gradient
    statistics), flush_every, settings (extra values for the run's `train` config: lr, seed, ...).

    >>> import tempfile, torch, workbench as wb
    >>> from workbench.models import load_model
    >>> loaded = load_model("tiny-llama")
    >>> model = loaded.model
    >>> optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    >>> ids = torch.randint(0, model.config.vocab_size, (2, 16))
    >>> runs = tempfile.mkdtemp()
    >>> with wb.profile(model, runs_dir=runs, name="doc", record={"grads_every": 1}) as prof:
    ...     for _ in range(2):
    ...         loss = model(input_ids=ids, labels=ids).loss
    ...         loss.backward()
    ...         prof.step(optimizer=optimizer)
    ...         optimizer.step()
    ...         optimizer.zero_grad()
    >>> run = wb.open_run(prof.run_dir)
    >>> run.status, sorted(set(run.tables["grads"]["step"]))
    ('completed', [1, 2])
    """
    return Profile(model, **options)

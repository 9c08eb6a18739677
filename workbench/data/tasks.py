"""Tasks: the registry of built-in tasks, `TaskData`, and the seeded train/eval split.

A built-in task is a function registered with `@TASKS.register(name)` that returns a `Corpus` (all
examples plus provenance); `load_task` splits it. A name ending in .jsonl or .csv is a local file
(see workbench.data.local).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workbench.data.example import Corpus, Example
from workbench.data.local import load_local
from workbench.data.order import stable_order
from workbench.errors import ConfigError
from workbench.registry import Registry

LOCAL_SUFFIXES = (".jsonl", ".csv")


TASKS: Registry[Callable[[Path | None], Corpus]] = Registry("task")


@dataclass
class TaskData:
    """A task split into train and eval examples, with its provenance."""

    name: str  # built-in task name or the local file path as given
    train: list[Example]
    eval: list[Example]
    classes: tuple[str, ...] | None  # fixed label words (= every example's candidates); None if they vary
    source: str = ""  # provenance of the examples (package member or file path)
    sha256: str = ""  # of the file the examples were read from
    seed: int = 0  # the seed of the split
    template: str | None = None  # prompt template, for display
    meta: dict[str, object] = field(default_factory=dict)  # anything else a source wants to record
    generative: bool = False  # free-text answers (one reference each): generation and exact match

    @property
    def num_examples(self) -> int:
        return len(self.train) + len(self.eval)

    @property
    def kind(self) -> str:
        """ "classification" (fixed label words), "multiple_choice" (choices vary) or "generative"."""
        if self.generative:
            return "generative"
        return "classification" if self.classes is not None else "multiple_choice"

    @property
    def chance_accuracy(self) -> float:
        """Expected accuracy of uniform guessing on the eval split (0 for a generative task)."""
        if self.generative:
            return 0.0
        return sum(1 / len(e.candidates) for e in self.eval) / max(len(self.eval), 1)


def is_local_task(name_or_path: str) -> bool:
    """True if `name_or_path` names a local task file (by its suffix)."""
    return name_or_path.lower().endswith(LOCAL_SUFFIXES)


def load_task(
    name_or_path: str,
    *,
    seed: int = 0,
    eval_size: int | float = 0.2,
    cache_dir: str | Path | None = None,
) -> TaskData:
    """Load a built-in task or a local .jsonl/.csv file and split it (stratified by label, seeded).

    `eval_size` is a number of examples (int) or a fraction in (0, 1). The same seed gives the same
    split in every process. Built-in tasks are fetched once into the cache (see workbench.cache).
    """
    if is_local_task(name_or_path):
        corpus = load_local(name_or_path)
    elif name_or_path in TASKS:
        corpus = TASKS.get(name_or_path)(Path(cache_dir) if cache_dir is not None else None)
    else:
        hint = f" Local task files must end in {' or '.join(LOCAL_SUFFIXES)}."
        raise ConfigError(TASKS.unknown_message(name_or_path) + hint)
    train, eval_ = split_examples(corpus.examples, seed=seed, eval_size=eval_size, name=name_or_path)
    return TaskData(
        name=name_or_path,
        train=train,
        eval=eval_,
        classes=corpus.classes,
        source=corpus.source,
        sha256=corpus.sha256,
        seed=seed,
        template=corpus.template,
        meta=dict(corpus.meta),
        generative=corpus.generative,
    )


def split_examples(
    examples: Sequence[Example], *, seed: int, eval_size: int | float, name: str = "task"
) -> tuple[list[Example], list[Example]]:
    """Seeded split into (train, eval), stratified by gold label; both lists come in shuffled order.

    Each label group gives the eval split its share (largest remainder), so the label mix of eval
    matches the task's; any prefix of eval is a random, roughly balanced sample.
    """
    n = len(examples)
    if n < 2:
        raise ConfigError(f"task {name!r} has {n} example(s); at least 2 are needed for a train/eval split")
    n_eval = _eval_count(eval_size, n, name)
    groups: dict[int, list[int]] = {}
    for i in stable_order(n, seed, "split"):
        groups.setdefault(examples[i].label, []).append(i)
    shares = {label: n_eval * len(idx) / n for label, idx in groups.items()}
    counts = {label: int(share) for label, share in shares.items()}
    by_remainder = sorted(shares, key=lambda label: (-(shares[label] - counts[label]), label))
    for label in by_remainder[: n_eval - sum(counts.values())]:
        counts[label] += 1
    eval_idx = {i for label, idx in groups.items() for i in idx[: counts[label]]}
    order = stable_order(n, seed, "order")
    train = [examples[i] for i in order if i not in eval_idx]
    eval_ = [examples[i] for i in order if i in eval_idx]
    return train, eval_


def _eval_count(eval_size: int | float, n: int, name: str) -> int:
    if isinstance(eval_size, bool) or not isinstance(eval_size, (int, float)):
        raise ConfigError(f"eval_size must be a count or a fraction, got {eval_size!r}")
    if isinstance(eval_size, int):
        if not 1 <= eval_size < n:
            raise ConfigError(f"eval_size {eval_size} must be in [1, {n - 1}] for task {name!r}")
        return eval_size
    if not 0 < eval_size < 1:
        raise ConfigError(f"eval_size {eval_size} must be a fraction in (0, 1) or a count of examples")
    return min(max(round(eval_size * n), 1), n - 1)

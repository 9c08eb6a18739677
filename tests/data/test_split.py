"""The seeded, stratified train/eval split."""

from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys

import pytest

from workbench.data import Example, split_examples
from workbench.data.order import stable_order
from workbench.errors import ConfigError

CLASSES = (" no", " yes")


def _examples(n: int = 100, positive_every: int = 4) -> list[Example]:
    return [Example(f"p{i}", CLASSES, int(i % positive_every == 0)) for i in range(n)]


def _digest(train, eval_) -> str:
    return hashlib.sha256(repr(([e.prompt for e in train], [e.prompt for e in eval_])).encode()).hexdigest()


def test_same_seed_same_split_and_different_seed_differs():
    examples = _examples()
    a = split_examples(examples, seed=3, eval_size=0.2)
    b = split_examples(examples, seed=3, eval_size=0.2)
    c = split_examples(examples, seed=4, eval_size=0.2)
    assert a == b
    assert a != c


def test_split_is_identical_across_processes():
    # Python's hash() is salted per process; the split must not depend on it.
    here = _digest(*split_examples(_examples(), seed=7, eval_size=0.25))
    code = (
        "import hashlib\n"
        "from workbench.data import Example, split_examples\n"
        "ex = [Example(f'p{i}', (' no', ' yes'), int(i % 4 == 0)) for i in range(100)]\n"
        "tr, ev = split_examples(ex, seed=7, eval_size=0.25)\n"
        "print(hashlib.sha256(repr(([e.prompt for e in tr], [e.prompt for e in ev])).encode()).hexdigest())\n"
    )
    env = {"PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here


def test_split_partitions_and_stratifies():
    examples = _examples(100, positive_every=4)  # 25 positive, 75 negative
    train, eval_ = split_examples(examples, seed=0, eval_size=20)
    assert len(train) == 80 and len(eval_) == 20
    assert sorted(e.prompt for e in train + eval_) == sorted(e.prompt for e in examples)
    assert collections.Counter(e.label for e in eval_) == {0: 15, 1: 5}  # the task's 3:1 mix, exactly


def test_split_is_shuffled():
    train, eval_ = split_examples(_examples(), seed=0, eval_size=0.5)
    assert [e.prompt for e in train] != sorted((e.prompt for e in train), key=lambda p: int(p[1:]))


def test_eval_size_fraction_and_count():
    assert len(split_examples(_examples(10), seed=0, eval_size=0.3)[1]) == 3
    assert len(split_examples(_examples(10), seed=0, eval_size=0.01)[1]) == 1  # at least one
    assert len(split_examples(_examples(10), seed=0, eval_size=9)[1]) == 9


@pytest.mark.parametrize("bad", [0, 10, 1.0, 0.0, -0.5, True, "0.2"])
def test_bad_eval_size(bad):
    with pytest.raises(ConfigError, match="eval_size"):
        split_examples(_examples(10), seed=0, eval_size=bad)


def test_too_few_examples():
    with pytest.raises(ConfigError, match="at least 2"):
        split_examples(_examples(1), seed=0, eval_size=0.5)


def test_stable_order_is_a_fixed_permutation():
    assert sorted(stable_order(50, 1, "x")) == list(range(50))
    assert stable_order(5, 0, "split") == stable_order(5, 0, "split")
    assert stable_order(50, 0, "a") != stable_order(50, 0, "b")

"""Tasks and data: built-in real tasks and local files, prompt templates, label masks, batches, scoring.

task = load_task("polarity", seed=0)                      # or "my_data.jsonl" / "my_data.csv"
batches = train_batches(task, tokenizer, batch_size=8, max_length=128, seed=0)
result = evaluate(model, tokenizer, task.eval[:200], max_length=128, batch_size=16, device="cpu")
result = evaluate(..., metric="exact_match", max_new_tokens=32)  # generative tasks ("spelling", ...)
"""

from workbench.cache import cache_root, fetch_package, fetch_sdist_members, sha256_file
from workbench.data import builtin as _builtin  # noqa: F401  (registers the built-in tasks)
from workbench.data.batch import IGNORE_INDEX, Batch
from workbench.data.encoding import check_fits, encode_example
from workbench.data.example import Corpus, Example
from workbench.data.formatting import TEMPLATES, Template
from workbench.data.generation import exact_match, normalize_answer
from workbench.data.loader import collate, pad_token_id, train_batches
from workbench.data.scoring import EvalPlan, evaluate, plan_evaluation
from workbench.data.tasks import TASKS, TaskData, load_task, split_examples

__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "TEMPLATES",
    "Batch",
    "Corpus",
    "EvalPlan",
    "Example",
    "TaskData",
    "Template",
    "cache_root",
    "check_fits",
    "collate",
    "encode_example",
    "evaluate",
    "exact_match",
    "fetch_package",
    "fetch_sdist_members",
    "load_task",
    "normalize_answer",
    "pad_token_id",
    "plan_evaluation",
    "sha256_file",
    "split_examples",
    "train_batches",
]

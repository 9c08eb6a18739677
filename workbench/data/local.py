"""Users' own tasks from a local JSONL or CSV file with named columns.

Two layouts (extra columns are ignored):

- `prompt` + `choices` + `label`: multiple choice. `choices` is a list (in CSV a JSON list or a
  `|`-separated string); `label` is the gold choice's index (a JSON integer) or its text (a string is
  matched against the choices first, then read as an index, so CSV labels may be "2" or "Paris").
- `prompt` + `answer`: a free-text answer. With at most MAX_CLASSES distinct answers in the file the
  task is a classification: every example is scored on all distinct answers (sorted), label words.
  With more, the task is generative: each answer is trained on (followed by a newline, where generation
  stops) and evaluated by greedy generation and exact match (workbench.data.generation); there is
  nothing to rank, so no distractor answers are made up.

Prompts are used as written, minus trailing whitespace; each candidate gets one leading space.

Files must be UTF-8 (a BOM is fine). A file that is not (binary, another encoding), JSON nested too deep
or a CSV field over MAX_FIELD_BYTES is one ConfigError naming the file and the line. CSV fields of any
size up to that bound are read (the csv module's own limit is 128 KiB); a long prompt is then truncated
from the left by train.max_length like any other.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from workbench.cache import sha256_file
from workbench.data.example import Corpus, Example
from workbench.data.formatting import ANSWER_STOP, answer_text
from workbench.errors import ConfigError

MAX_CLASSES = 20  # up to this many distinct free-text answers they are label words; more: generative
MAX_FIELD_BYTES = 16 * 2**20  # the longest CSV field read (csv.field_size_limit is raised to it)

LAYOUTS = "prompt + answer (free-text answer) or prompt + choices + label (multiple choice)"


def load_local(path: str | Path) -> Corpus:
    """Read a local .jsonl or .csv task file into a Corpus; any problem is one ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task file {str(path)!r} does not exist (accepted layouts: {LAYOUTS})")
    try:
        rows = _read_jsonl(path) if path.suffix.lower() == ".jsonl" else _read_csv(path)
    except OSError as exc:
        raise ConfigError(f"cannot read task file {str(path)!r}: {exc.strerror or exc}") from None
    if not rows:
        raise ConfigError(f"task file {str(path)!r} has no examples")
    columns = set(rows[0][1])
    if {"prompt", "choices", "label"} <= columns:
        examples, classes, meta = _multiple_choice(rows, path), None, {"layout": "prompt+choices+label"}
    elif {"prompt", "answer"} <= columns:
        examples, classes, meta = _free_text(rows, path)
        meta["layout"] = "prompt+answer"
    else:
        raise ConfigError(
            f"task file {str(path)!r} has columns {sorted(columns)}; accepted layouts: {LAYOUTS}"
        )
    generative = meta.get("answers") == "free text"
    return Corpus(examples, classes, str(path), sha256_file(path), None, meta, generative=generative)


Row = tuple[str, dict[str, Any]]  # (where, e.g. "line 3", fields)


def _text(path: Path) -> str:
    """The file's text (UTF-8, a BOM dropped); not UTF-8 is one ConfigError naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"task file {str(path)!r} is not UTF-8 text (line {line}: byte 0x{data[exc.start]:02x} is not "
            "valid UTF-8); save it as UTF-8 .jsonl or .csv"
        ) from None


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    for number, line in enumerate(io.StringIO(_text(path), newline=None), 1):  # lines as open() splits
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        except ValueError as exc:  # an integer of 4,300+ digits
            raise ConfigError(
                f"{path}: line {number} is not usable JSON ({str(exc).split(':')[0]})"
            ) from None
        except RecursionError:
            raise ConfigError(f"{path}: line {number} is JSON nested too deep for a task record") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}: line {number} must be a JSON object with named fields")
        rows.append((f"line {number}", record))
    return rows


def _read_csv(path: Path) -> list[Row]:
    if csv.field_size_limit() < MAX_FIELD_BYTES:
        csv.field_size_limit(MAX_FIELD_BYTES)  # process-wide, only ever raised
    rows = []
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    start = 2  # the first row after the header; quoted fields may span lines, so count physical lines
    try:
        for row in reader:
            rows.append((f"line {start}", {str(k).strip(): v for k, v in row.items() if k is not None}))
            start = reader.line_num + 1
    except csv.Error as exc:  # a field over MAX_FIELD_BYTES, ... (reader.reader: the line that failed)
        reason = str(exc)
        if "field larger than field limit" in reason:
            reason = f"a field is longer than {MAX_FIELD_BYTES // 2**20} MiB"
        raise ConfigError(
            f"{path}: line {reader.reader.line_num} is not readable CSV ({reason}); accepted: UTF-8 CSV with "
            f"a header row, fields up to {MAX_FIELD_BYTES // 2**20} MiB"
        ) from None
    return rows


def _field(row: Row, name: str, path: Path) -> Any:
    where, fields = row
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(f"{path}: {where} has no {name!r} (accepted layouts: {LAYOUTS})")
    texts = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:  # JSON's "\ud800": an unpaired surrogate, which no tokenizer takes
        raise ConfigError(
            f"{path}: {where}: {name!r} holds an unpaired surrogate (\\udXXX), not text"
        ) from None
    return value


def _prompt(row: Row, path: Path) -> str:
    value = _field(row, "prompt", path)
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {row[0]}: 'prompt' must be a string, got {value!r}")
    return value.rstrip()


def _multiple_choice(rows: list[Row], path: Path) -> list[Example]:
    examples = []
    for row in rows:
        where = f"{path}: {row[0]}"
        choices = _choices(_field(row, "choices", path), where)
        label = _label(_field(row, "label", path), choices, where)
        examples.append(Example(_prompt(row, path), tuple(answer_text(c) for c in choices), label))
    return examples


def _choices(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):  # JSONDecodeError, 4,300+ digit ints, nesting too deep
                raise ConfigError(f"{where}: 'choices' starts with '[' but is no valid JSON list") from None
        else:
            value = text.split("|")
    if not isinstance(value, list) or not all(isinstance(c, (str, int, float)) for c in value):
        raise ConfigError(f"{where}: 'choices' must be a list of strings (or a '|'-separated string)")
    choices = [str(c).strip() for c in value]
    if len(choices) < 2 or "" in choices or len(set(choices)) != len(choices):
        raise ConfigError(f"{where}: 'choices' needs at least 2 distinct, non-empty choices, got {choices!r}")
    return choices


def _label(value: Any, choices: list[str], where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: 'label' must be a choice index or a choice's text, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text in choices:  # the text first: choices may themselves be numbers
            return choices.index(text)
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{where}: label {text!r} is none of the choices {choices!r}") from None
    if not isinstance(value, int) or not 0 <= value < len(choices):
        raise ConfigError(f"{where}: label {value!r} is not an index into {len(choices)} choices")
    return value


def _free_text(rows: list[Row], path: Path) -> tuple[list[Example], tuple[str, ...] | None, dict[str, Any]]:
    prompts, answers = [], []
    for row in rows:
        answer = _field(row, "answer", path)
        if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
            raise ConfigError(f"{path}: {row[0]}: 'answer' must be text, got {answer!r}")
        prompts.append(_prompt(row, path))
        answers.append(answer_text(str(answer)))
    distinct = sorted(set(answers))
    if len(distinct) < 2:
        raise ConfigError(f"{path}: every answer is {distinct[0]!r}; scoring needs 2+ distinct answers")
    pairs = list(zip(prompts, answers, strict=True))
    if len(distinct) <= MAX_CLASSES:
        classes = tuple(distinct)
        examples = [Example(p, classes, classes.index(a)) for p, a in pairs]
        return examples, classes, {"answers": "label words"}
    examples = [Example(p, (a,), 0, stop=ANSWER_STOP) for p, a in pairs]
    return examples, None, {"answers": "free text"}

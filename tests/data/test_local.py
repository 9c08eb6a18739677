"""Local JSONL/CSV tasks in both layouts, and the errors for bad inputs."""

from __future__ import annotations

import json

import pytest

from workbench.data import load_task
from workbench.data.local import MAX_CLASSES
from workbench.errors import ConfigError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _all(task):
    return task.train + task.eval


def test_jsonl_free_text_answers_become_classes(tmp_path):
    rows = [{"prompt": f"Is {i} even?\nAnswer: ", "answer": "yes" if i % 2 == 0 else "no"} for i in range(10)]
    task = load_task(_jsonl(tmp_path / "even.jsonl", rows), eval_size=2)
    assert task.classes == (" no", " yes")  # sorted distinct answers, with their leading space
    assert task.kind == "classification" and task.num_examples == 10 and task.name.endswith("even.jsonl")
    example = next(e for e in _all(task) if e.prompt.startswith("Is 3 even?"))
    assert example.prompt == "Is 3 even?\nAnswer:"  # trailing whitespace moves into the answer's space
    assert example.answer == " no"
    assert len(task.sha256) == 64 and task.meta["layout"] == "prompt+answer"


def test_jsonl_many_free_text_answers_make_a_generative_task(tmp_path):
    rows = [{"prompt": f"{i} + 1 =", "answer": i + 1} for i in range(MAX_CLASSES + 5)]  # numbers are text
    task = load_task(_jsonl(tmp_path / "add.jsonl", rows))
    assert task.generative and task.classes is None and task.kind == "generative"
    assert task.chance_accuracy == 0.0 and task.meta == {"layout": "prompt+answer", "answers": "free text"}
    for example in _all(task):  # the reference only: nothing made up to rank it against
        assert example.candidates == (" " + str(int(example.prompt.split()[0]) + 1),)
        assert example.label == 0 and example.stop == "\n"


def test_jsonl_multiple_choice_label_as_index_or_text(tmp_path):
    rows = [
        {"prompt": "Capital of France?", "choices": ["Rome", "Paris"], "label": 1, "id": 7},
        {"prompt": "2 + 2?", "choices": ["3", "4", "5"], "label": "4"},  # text first: choices are numbers
        {"prompt": "Pick b", "choices": "a|b", "label": "1"},
    ]
    task = load_task(_jsonl(tmp_path / "mc.jsonl", rows), eval_size=1)
    by_prompt = {e.prompt: e for e in _all(task)}
    assert by_prompt["Capital of France?"].candidates == (" Rome", " Paris")
    assert by_prompt["Capital of France?"].answer == " Paris"
    assert by_prompt["2 + 2?"].answer == " 4"
    assert by_prompt["Pick b"].answer == " b"
    assert task.classes is None


def test_csv_multiple_choice_json_list_and_pipes(tmp_path):
    path = tmp_path / "mc.csv"
    path.write_text(
        "prompt,choices,label\n"
        '"Line one\nline two?","[""x"", ""y, z""]","y, z"\n'
        "Sky colour?,red|blue|green,1\n"
        "Grass colour?,red | blue | green,green\n",
        encoding="utf-8-sig",
    )
    task = load_task(str(path), eval_size=1)
    by_prompt = {e.prompt: e for e in _all(task)}
    assert by_prompt["Line one\nline two?"].candidates == (" x", " y, z")
    assert by_prompt["Line one\nline two?"].answer == " y, z"
    assert by_prompt["Sky colour?"].answer == " blue"
    assert by_prompt["Grass colour?"].answer == " green"


def test_csv_free_text(tmp_path):
    path = tmp_path / "sent.csv"
    path.write_text("prompt,answer,extra\nGreat!,positive,1\nAwful.,negative,2\nFine.,positive,3\n")
    task = load_task(str(path), eval_size=1)
    assert task.classes == (" negative", " positive")
    assert {e.prompt: e.answer for e in _all(task)}["Awful."] == " negative"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "question,answer\nq,a\n",
            r"has columns \['answer', 'question'\]; accepted layouts: prompt \+ answer",
        ),
        ("prompt,choices\nq,a|b\n", "prompt \\+ choices \\+ label"),
        ("prompt,answer\n", "has no examples"),
        ("prompt,answer\nq,\nr,s\n", "line 2 has no 'answer'"),
        ("prompt,choices,label\nq,a|b,c\n", "label 'c' is none of the choices"),
        ("prompt,choices,label\nq,a|b,2\n", "label 2 is not an index into 2 choices"),
        ("prompt,choices,label\nq,a,0\n", "at least 2 distinct"),
        ("prompt,choices,label\nq,[a,0\n", "not a valid JSON list|no valid JSON list"),
        ("prompt,answer\nq,a\nr,a\n", "2\\+ distinct answers"),
    ],
)
def test_bad_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_task(str(path))


def test_csv_errors_name_the_line_where_the_row_starts(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('prompt,choices,label\n"two\nlines",a|b,0\nq,a|b,7\n')
    with pytest.raises(ConfigError, match="line 4: label 7"):
        load_task(str(path))


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "q", "answer": "a"}\n{not json}\n')
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        load_task(str(path))
    path.write_text('["prompt", "answer"]\n')
    with pytest.raises(ConfigError, match="JSON object"):
        load_task(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"task file '.*nope\.jsonl' does not exist"):
        load_task(str(tmp_path / "nope.jsonl"))


def test_unknown_task_suggests_and_lists():
    with pytest.raises(
        ConfigError, match=r"unknown task 'polarty'\. Did you mean 'polarity'\? Available: .*strategyqa"
    ):
        load_task("polarty")
    with pytest.raises(ConfigError, match=r"must end in \.jsonl or \.csv"):
        load_task("data/mine.json")

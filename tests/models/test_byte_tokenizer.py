"""The offline byte-level tokenizer of the tiny models."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from workbench.models.tiny import TINY_VOCAB
from workbench.models.tokenizers import BYTE_VOCAB_SIZE, byte_tokenizer

TEXTS = ["", "hello world", "Héllo wörld!\n\ttabs  and  spaces ", "日本語 🙂 ümlaut"]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trips_any_text(text):
    tok = byte_tokenizer()
    ids = tok(text)["input_ids"]
    assert ids == [b + 3 for b in text.encode()]  # one token per UTF-8 byte, no BOS/EOS added
    assert tok.decode(ids) == text


def test_specials_and_vocabulary_fit_the_tiny_models():
    tok = byte_tokenizer()
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert len(tok) == BYTE_VOCAB_SIZE == 259 <= TINY_VOCAB
    assert tok.decode([1, 3 + ord("A"), 2, 0], skip_special_tokens=True) == "A"


def test_pads_on_the_right():
    batch = byte_tokenizer()(["ab", "abcd"], padding=True)
    assert batch["input_ids"][0] == [3 + ord("a"), 3 + ord("b"), 0, 0]
    assert batch["attention_mask"][0] == [1, 1, 0, 0]


def test_survives_save_and_reload(tmp_path):
    byte_tokenizer().save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "zürich 🙂"
    assert reloaded(text)["input_ids"] == byte_tokenizer()(text)["input_ids"]
    assert reloaded.decode(reloaded(text)["input_ids"]) == text

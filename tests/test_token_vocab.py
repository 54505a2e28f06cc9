"""The restricted token vocabulary (issue 18): only a deployment's phrases' rows, the same answers, and one clear
line for a phrase outside the list."""

from __future__ import annotations

import pytest
import torch

from sam3m4.export.token_table import (RestrictedTokenizer, UnknownTokenError, Vocabulary, int8_row_tables,
                                       restricted_token_table)
from sam3m4.models import build_student
from sam3m4.models.tokenizer import EOT_ID, PAD_ID, SOT_ID, get_tokenizer
from sam3m4.quantize.modes import apply_mode

PHRASES = ["red circle", "blue square", "person"]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory) -> Vocabulary:
    path = tmp_path_factory.mktemp("vocab") / "phrases.txt"
    path.write_text("# deployment phrases\nred circle\n\nblue square\nperson\n", encoding="utf-8")
    return Vocabulary.from_file(path)


def test_vocabulary_keeps_the_phrases_tokens_and_specials(vocab, tmp_path):
    tok = get_tokenizer()
    want = {PAD_ID, SOT_ID, EOT_ID} | {i for p in PHRASES for i in tok.encode(p)}
    assert set(vocab.ids) == want and list(vocab.ids) == sorted(want)
    vocab.save(tmp_path / "v.vocab.json")
    assert Vocabulary.from_file(tmp_path / "v.vocab.json").ids == vocab.ids


def test_unknown_token_is_one_clear_line(vocab):
    with pytest.raises(UnknownTokenError) as err:
        RestrictedTokenizer(vocab)(["red circle", "green triangle"])
    msg = str(err.value)
    assert "\n" not in msg and "'green triangle'" in msg and "phrases.txt" in msg and "not in the deployment" in msg


@pytest.mark.parametrize("mode", ["fp16", "int4"])
def test_restricted_table_gives_the_same_prompt(vocab, mode):
    torch.manual_seed(0)
    student = apply_mode(build_student("tiny").eval(), mode)
    enc = get_tokenizer()(PHRASES)
    small = RestrictedTokenizer(vocab)(PHRASES)
    with torch.no_grad():
        full = student.encode_text(enc["input_ids"], enc["attention_mask"]).tokens
        with restricted_token_table(student, vocab) as n:
            table = student.text_encoder.token_embedding
            assert n == 1 and table.weight.shape[0] == len(vocab.ids)
            assert torch.equal(student.encode_text(small["input_ids"], small["attention_mask"]).tokens, full)
            if mode != "fp16":  # XNNPACK's int8-row rewrite applies to the small table too
                with int8_row_tables(student) as rows:
                    assert rows == 1 and student.text_encoder.token_embedding.qdata.shape[0] == len(vocab.ids)
                    assert torch.equal(student.encode_text(small["input_ids"], small["attention_mask"]).tokens, full)
    assert student.text_encoder.token_embedding.weight.shape[0] == 49408  # restored

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
from sam3m4.results import schema

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


def test_export_with_a_vocabulary_ships_the_map_and_answers_like_the_full_table(vocab, tmp_path, monkeypatch):
    """``sam3m4 export --vocabulary``: the ``.pte`` holds only the phrases' token rows, ``<stem>.vocab.json`` lies
    next to it, and its ``encode_text`` fed remapped ids gives the full-table student's prompt tokens; the records
    say so. Exporting again without it removes the map (it would misread a full table)."""
    from sam3m4.checkpoint import atomic_torch_save
    from sam3m4.cli import main
    from sam3m4.export.runtime import load_program
    from sam3m4.results import ResultsStore

    torch.manual_seed(0)
    student = build_student("tiny").eval()
    atomic_torch_save({"model": student.state_dict(), "preset": "tiny", "phase": 2, "epoch": 1, "step": 1},
                      tmp_path / "phase2.pt")
    (tmp_path / "phrases.txt").write_text("\n".join(PHRASES) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the store lives under ./reports/<run>
    argv = ["export", "--backend", "xnnpack", "--mode", "fp16", "--ckpt", "phase2.pt", "--out", "out", "--runs", "1",
            "--run", "t"]
    assert main([*argv, "--vocabulary", "phrases.txt"]) == 0
    pte, vocab_file = tmp_path / "out" / "sam3m4_tiny_xnnpack_fp16.pte", tmp_path / "out" / "sam3m4_tiny_xnnpack_fp16.vocab.json"
    assert Vocabulary.from_file(vocab_file).ids == vocab.ids
    small = RestrictedTokenizer(Vocabulary.from_file(vocab_file))(PHRASES[:1])
    enc = get_tokenizer()(PHRASES[:1])
    tokens = load_program(pte).load_method("encode_text").execute([small["input_ids"], small["attention_mask"]])[0]
    with torch.no_grad():
        want = apply_mode(student, "fp16").encode_text(enc["input_ids"], enc["attention_mask"]).tokens
    assert float((tokens - want).abs().max()) < 5e-3  # XNNPACK's rounding; a wrong row is off by O(1)
    store = ResultsStore("t")
    latest = {m: store.latest(stage=schema.STAGE5, subject="xnnpack/fp16", metric=m)
              for m in ("pte_mb", "max_abs_error/encode_text", "host_image_latency_ms")}
    assert f"restricted to {len(vocab.ids)} of 49408 rows" in latest["pte_mb"].provenance
    assert latest["max_abs_error/encode_text"].value < 5e-3  # checked against eager with the restricted table
    assert latest["host_image_latency_ms"].value > 0
    assert main([*argv, "--vocabulary", "absent.txt"]) == 2  # checked before anything loads
    assert vocab_file.exists()

"""``quantize_compare`` / ``quantize_mode``: the library calls behind ``sam3m4 quantize`` save, judge, decide, record."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sam3m4.checkpoint import save_checkpoint
from sam3m4.models import build_student
from sam3m4.quantize import stage
from sam3m4.quantize.compare import ModeResult
from sam3m4.results import ResultsStore, schema

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
MIOU = {"fp16": 0.50, "int4": 0.49, "int8_int4": 0.30}  # int4 loses 1 point (passes <= 2), int8_int4 20 (fails)
SIZE = {"fp16": 8.0, "int4": 2.0, "int8_int4": 2.0}


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    state = {"model": build_student("tiny").state_dict(), "preset": "tiny"}
    return save_checkpoint(tmp_path / "ck", phase=2, epoch=0, step=1, state=state,
                           data_root=ROOT / "fixtures" / "synth")["path"]


@pytest.fixture
def scored(monkeypatch):
    """compare.measure replaced by fixed rows (the real one is tested in test_quantize.py): the modes it saw."""
    seen = []

    def measure(model, mode, val, num_val, **kw):
        seen.append(mode)
        return ModeResult(mode=mode, size_mb=SIZE[mode], miou=MIOU[mode], presence_f1=0.9, avg_ms=1.0,
                          num_pairs=min(num_val, len(val)), sizes={"quantized_params": 1, "fp16_params": 1})

    monkeypatch.setattr(stage.compare, "measure", measure)
    return seen


def test_quantize_compare_saves_every_ptq_mode_decides_and_records(ckpt, scored, tmp_path):
    store = ResultsStore("t", root=tmp_path / "reports")
    lines = []
    r = stage.quantize_compare(ckpt, out_dir=tmp_path / "q", num_val=3, store=store, progress=False,
                               echo=lines.append)
    assert scored == ["fp16", "int4", "int8_int4"] and not r.qat_ran  # int4 passed: QAT not needed
    assert (r.chosen_mode, r.criterion_met) == ("int4", True) and r.decision["failing"] == ["int8_int4"]
    assert [row.passed for row in r.rows] == [None, True, False] and r.rows[1].miou_drop == pytest.approx(1.0)
    assert all((tmp_path / "q" / m / "quantized.json").is_file() for m in scored) and len(lines) == 3
    assert "int4 (gate <= 2" in r.summary and "int8_int4" in r.table
    by = {(x.subject, x.metric): x for x in store.records()}
    assert by[(schema.DECISION, schema.CHOSEN_MODE)].value == "int4"
    assert by[("int8_int4", schema.MIOU_DROP)].passed is False and ("fp16", schema.MIOU_DROP) not in by
    # per backend, among the modes each lowers: XNNPACK's only quantized mode failed, so it ships fp16
    assert {b: d.mode for b, d in r.backends.items()} == {"coreml": "int4", "qnn": "int4", "xnnpack": "fp16"}
    assert r.decision_file == tmp_path / "q" / "decision.json" and "xnnpack: fp16" in r.summary
    xnn = by[(schema.decision_subject("xnnpack"), schema.CHOSEN_MODE)]
    assert (xnn.value, xnn.note, xnn.artifact) == ("fp16", "sam3m4_tiny_xnnpack_fp16.pte", str(r.decision_file))
    assert xnn.sha256 and "fp16 shipped" in xnn.provenance


def test_quantize_mode_saves_one_mode_and_records_no_gate(ckpt, scored, tmp_path):
    store = ResultsStore("t", root=tmp_path / "reports")
    r = stage.quantize_mode(ckpt, "int4", out_dir=tmp_path / "q", num_val=3, store=store, progress=False, echo=None)
    assert scored == ["int4"] and r.path == tmp_path / "q" / "int4" and (r.path / "model.safetensors").is_file()
    metrics = {x.metric for x in store.records()}
    assert schema.MIOU in metrics and schema.MIOU_DROP not in metrics and schema.CHOSEN_MODE not in metrics


def test_bad_arguments_name_the_flag_before_anything_loads(tmp_path):
    with pytest.raises(stage.ConfigError, match="--qat 'sometimes'"):
        stage.quantize_compare(tmp_path / "no.pt", out_dir=tmp_path, qat="sometimes")
    with pytest.raises(stage.ConfigError, match="no such checkpoint"):
        stage.quantize_mode(tmp_path / "no.pt", "int4", out_dir=tmp_path)


def test_the_real_measure_records_the_score_of_the_model_it_saved(ckpt, tmp_path):
    """No mock: ``quantize_mode`` scores with the real ``compare.measure``; the recorded mIoU / Presence F1 must be
    those of the saved model, reloaded from disk and scored here on the same pairs through the predictor."""
    from sam3m4.data import SacoImageDataset
    from sam3m4.eval.image import evaluate_pairs
    from sam3m4.predict import Predictor
    from sam3m4.quantize.storage import load_quantized

    store = ResultsStore("t", root=tmp_path / "reports")
    r = stage.quantize_mode(ckpt, "int4", out_dir=tmp_path / "q", num_val=4, store=store, progress=False, echo=None)
    model, meta = load_quantized(r.path)
    val = SacoImageDataset(ROOT / "fixtures" / "synth" / "saco_image" / "val.json")
    again = evaluate_pairs(val, Predictor(model), num=4, progress=False)
    by = {x.metric: x for x in store.records() if x.subject == "int4"}
    assert meta["mode"] == "int4" and again.num_pairs == 4
    assert by[schema.MIOU].value == pytest.approx(again.miou, abs=1e-6)
    assert by[schema.PRESENCE_F1].value == pytest.approx(again.presence.f1, abs=1e-6)
    # 4 pairs are too few to fit a presence threshold: SAM 3's 0.5 is recorded as the one shipped, and said so
    assert by[schema.PRESENCE_THRESHOLD].value == 0.5 and "default presence threshold" in by[schema.PRESENCE_THRESHOLD].provenance

"""Deployed accuracy: a ``.pte`` scored through the ExecuTorch runtime, and Stage 4's per-backend decision.

One tiny tracker (seeded random weights, fp16 mode) is exported to XNNPACK with all three methods (lowering is
the slow part, once per module); the fixture data's val pairs and videos score it. The decision tests need no
export.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.errors import DataFormatError
from sam3m4.export.flows import FLOWS
from sam3m4.quantize.compare import ModeResult, judge
from sam3m4.quantize.decision import BACKEND_MODES, decide_per_backend, read_decision, write_decision
from sam3m4.results import ResultsStore, schema
from sam3m4.results.targets import load_targets

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
SYNTH = ROOT / "fixtures" / "synth"


def _rows(miou: dict, size: dict) -> list[ModeResult]:
    rows = [ModeResult(mode=m, size_mb=size[m], miou=v, presence_f1=0.8, avg_ms=1.0, num_pairs=40)
            for m, v in miou.items()]
    judge(rows, load_targets()["quant_miou_drop"])
    return rows


# --- Stage 4's decision per backend (no export) ----------------------------------------------------------------
def test_each_backend_ships_its_own_smallest_passing_mode():
    rows = _rows({"fp16": 0.50, "int4": 0.49, "int8_int4": 0.40, "qat_int4": 0.495, "qat_int8_int4": 0.495},
                 {"fp16": 8.0, "int4": 2.0, "int8_int4": 2.2, "qat_int4": 2.0, "qat_int8_int4": 2.2})
    got = decide_per_backend(rows, load_targets()["quant_miou_drop"])
    # Core ML / QNN: int4 and qat_int4 pass at the same size, qat_int4 loses less (0.5 vs 1.0 point);
    # XNNPACK: int8_int4 fails (10 points), so its QAT mode ships, whatever Core ML's choice
    assert {b: d.mode for b, d in got.items()} == {"coreml": "qat_int4", "qnn": "qat_int4", "xnnpack": "qat_int8_int4"}
    assert got["coreml"].candidates == ["fp16", "int4", "qat_int4"] and got["xnnpack"].passing == ["qat_int8_int4"]
    assert all(d.criterion_met for d in got.values()) and got["coreml"].miou_drop == pytest.approx(0.5)


def test_a_backend_whose_modes_all_fail_ships_fp16_and_says_so():
    rows = _rows({"fp16": 0.50, "int4": 0.49, "int8_int4": 0.30}, {"fp16": 8.0, "int4": 2.0, "int8_int4": 2.0})
    got = decide_per_backend(rows, load_targets()["quant_miou_drop"])
    assert (got["xnnpack"].mode, got["xnnpack"].criterion_met, got["xnnpack"].passing) == ("fp16", False, [])
    assert (got["coreml"].mode, got["qnn"].mode) == ("int4", "int4")


def test_decision_file_round_trips_and_names_the_pte(tmp_path):
    rows = _rows({"fp16": 0.50, "int4": 0.49, "int8_int4": 0.30}, {"fp16": 8.0, "int4": 2.0, "int8_int4": 2.0})
    target = load_targets()["quant_miou_drop"]
    path = write_decision(tmp_path, decide_per_backend(rows, target), rows=rows, target=target, preset="tiny",
                          source="ck.pt")
    d = read_decision(tmp_path)  # the folder or the file
    assert d.path == path and d.cases() == [("coreml", "int4"), ("qnn", "int4"), ("xnnpack", "fp16")]
    assert d.backends["coreml"].pte_name == "sam3m4_tiny_coreml_int4.pte" and d.num_pairs == 40
    assert d.scores["int8_int4"] == {"miou": 0.30, "presence_f1": 0.8, "num_pairs": 40}
    doc = json.loads(path.read_text())
    doc["backends"]["xnnpack"]["mode"] = "int4"  # XNNPACK does not lower weight-only int4
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"decision\.json: backends\.xnnpack\.mode: 'int4' is not a mode"):
        read_decision(path)
    with pytest.raises(DataFormatError, match=r"nothing\.json: no such file"):
        read_decision(tmp_path / "nothing.json")


def test_backend_modes_are_the_flows_supported_modes():
    assert BACKEND_MODES == {n: tuple(m for m, s in f.modes.items() if s.supported) for n, f in FLOWS.items()}


# --- a .pte scored through the runtime -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from sam3m4.export.export import export_pte
    from sam3m4.models import build_student
    from sam3m4.models.video import StudentTracker
    from sam3m4.quantize.modes import apply_mode

    torch.manual_seed(0)
    tracker = apply_mode(StudentTracker(build_student("tiny")).eval(), "fp16").eval()
    result = export_pte(tracker.student, backend="xnnpack", mode="fp16", out_dir=tmp_path_factory.mktemp("pte"),
                        model_name="tiny", tracker=tracker)
    assert result.ok, (result.failed_stage, result.error)
    return result, tracker


@pytest.fixture(scope="module")
def data():
    return SacoImageDataset(SYNTH / "saco_image" / "val.json"), SacoVideoDataset(SYNTH / "saco_video" / "val.json")


@pytest.mark.slow
@pytest.mark.xnnpack
def test_the_pte_scores_what_eager_scores_pair_by_pair(exported, data, tmp_path):
    from sam3m4.eval import saco
    from sam3m4.eval.image import evaluate_pairs
    from sam3m4.eval.video import evaluate_videos
    from sam3m4.export.deployed import PteStudent, PteTracker, evaluate_deployed
    from sam3m4.predict import Predictor, VideoPredictor

    result, tracker = exported
    val, videos = data
    pte = PteStudent(result.path, tracker.student.image_size)
    got = evaluate_deployed(pte, val, 50, videos=videos, tracker_state=tracker.init_state(1),
                            saco_out=tmp_path if saco.available() is None else None)
    eager = evaluate_pairs(val, Predictor(tracker.student), num=50, progress=False)
    assert got.num_pairs == len(val) == eager.num_pairs and got.sha256 == result.sha256
    assert got.miou == pytest.approx(eager.miou, abs=1e-3) and got.presence.f1 == pytest.approx(eager.presence.f1)
    presence, best, present = got.pairs.arrays()  # kept per pair, for a calibration of the shipped file
    want = np.array([Predictor(tracker.student).predict(val[i].image, val[i].phrase).presence for i in range(len(val))])
    assert presence.shape == best.shape == (len(val),) and np.allclose(presence, want, atol=1e-3)
    assert list(present) == [bool(val[i].present) for i in range(len(val))] and (best <= presence + 1e-6).all()
    jf = evaluate_videos(videos, VideoPredictor(tracker), progress=False).jf_mean
    assert got.jf == pytest.approx(jf, abs=1e-3) and got.num_videos > 0
    if got.saco is not None:
        assert got.saco[schema.SACO_CGF1] == pytest.approx(got.saco[schema.SACO_PMF1] * got.saco[schema.SACO_IL_MCC],
                                                           abs=1e-6)
    else:
        assert got.saco_reason
    with pytest.raises(ValueError, match="no 'track' method"):
        PteTracker(PteStudent(result.path, 224, methods=_without_track(pte.methods)), tracker.init_state(1))


def _without_track(methods):
    class NoTrack:
        path = methods.path

        def names(self):
            return methods.names() - {"track"}

    return NoTrack()


@pytest.mark.slow
@pytest.mark.xnnpack
def test_deployed_records_carry_the_pte_sha_and_the_gaps_to_eager(exported, data, tmp_path):
    from sam3m4.export.accuracy import EagerRef, ShippedPresence, score_case

    result, tracker = exported
    val, videos = data
    store = ResultsStore("t", root=tmp_path / "reports")
    # a made-up eager reference 5 points above the .pte: both gaps must read 5 points
    probe = score_case(result, tracker.student, None, mode="fp16", val=val, num_val=4, videos=None,
                       refs={"fp16": EagerRef(0.0, 0.0, 4, "probe")}, out_dir=store.dir, record=store.record,
                       echo=lambda line: None)
    store.path.unlink()
    refs = {"fp16": EagerRef(probe.miou + 0.05, 0.5, 4, "Stage 4 (made up)")}
    shipped = ShippedPresence(0.3, "fixed", "the test")  # the threshold the .pte ships with reaches its evaluation
    d = score_case(result, tracker.student, tracker, mode="fp16", val=val, num_val=4, videos=videos, refs=refs,
                   out_dir=store.dir, record=store.record, echo=lambda line: None, shipped=shipped)
    by = {r.metric: r for r in store.records()}
    assert d.threshold == by[schema.PRESENCE_THRESHOLD].value == 0.3
    assert by[schema.PRESENCE_F1_SHIPPED].value == d.presence_shipped.f1 and by[schema.MIOU_SHIPPED].value == d.miou_shipped
    assert by[schema.PRESENCE_F1].value == d.presence.f1 == probe.presence.f1   # at 0.5: unchanged by the threshold
    assert by[schema.PRESENCE_F1_GAP].value >= 0 and "on all 4 pairs" in by[schema.PRESENCE_F1_GAP].provenance
    assert schema.PRESENCE_ECE in by and schema.PRESENCE_F1_BEST in by
    assert by[schema.DEPLOYED_MIOU_DROP].value == pytest.approx(5.0) and by[schema.EXPORT_MIOU_GAP].value == pytest.approx(5.0)
    assert by[schema.MIOU].value == d.miou and by[schema.JF].value == d.jf
    assert all(r.sha256 == result.sha256 and r.subject == "xnnpack/fp16" for r in by.values() if r.artifact)
    pairs = json.loads((store.dir / "deployed" / "xnnpack_fp16.json").read_text())
    assert pairs["sha256"] == result.sha256 and len(pairs["pairs"]["presence"]) == 4
    with pytest.raises(ValueError, match="eager reference on 9 pairs"):
        score_case(result, tracker.student, None, mode="fp16", val=val, num_val=4, videos=None,
                   refs={"fp16": EagerRef(0.5, 0.5, 9, "wrong n")}, out_dir=store.dir, record=store.record,
                   echo=lambda line: None)

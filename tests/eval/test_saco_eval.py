"""SA-Co official metrics: official-format predictions, Meta's evaluators through ``sam3m4 saco-eval``, the checks
that turn bad GT / prediction files into one line naming file and field, and ``sam3m4 data check`` on a Gold
triple and on video files (frames read once per video).

The round trips need Meta's ``sam3`` package (tooling/setup.sh installs it) and are skipped with the reason
without it; the bad-input tests fail before the evaluator is imported and run everywhere.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from sam3m4.cli import main
from sam3m4.data import SacoImageDataset
from sam3m4.eval import saco
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval.saco_format import ImagePredictions, category_ids, image_predictions, video_prediction
from sam3m4.results import schema

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "synth"
IMAGE_GT = FIXTURES / "saco_image" / "train.json"     # 43 pairs, 24 instances
VIDEO_GT = FIXTURES / "saco_video" / "train.json"     # 1 video, 11 pairs (8 present), 10 masklets

needs_sam3 = pytest.mark.skipif(saco.available() is not None, reason=f"{saco.available()}")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _gt_preds(gt_path: Path) -> list[dict]:
    """The ground truth of an image GT file written as predictions (score 1)."""
    ds, cats = SacoImageDataset(gt_path), category_ids(gt_path)
    return [rec for i in range(len(ds)) for rec in
            image_predictions(ds.pairs[i]["id"], cats[ds.pairs[i]["id"]], ds.masks(i), np.ones(len(ds.masks(i))))]


# --- round trips through Meta's evaluators -------------------------------------------------------------------
@needs_sam3
def test_image_ground_truth_round_trip_scores_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preds = tmp_path / "preds.json"
    code, out, err = _cli(capsys, "eval", "--model", "gt", "--data", FIXTURES, "--split", "train", "--no-video",
                          "--saco-preds", preds, "--run", "t")
    assert code == 0, err
    code, out, err = _cli(capsys, "saco-eval", "image", "--gt", IMAGE_GT, "--pred", preds, "--out", tmp_path / "r.json")
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result) >= {key for key, _ in saco.IMAGE_HEADLINE.values()}    # the evaluator's own key names
    assert result["cgF1_eval_segm_cgF1"] == pytest.approx(1.0, abs=1e-3)       # 1 up to its 1e-4 smoothing
    assert result["cgF1_eval_segm_IL_MCC"] == pytest.approx(1.0, abs=1e-6)
    assert "cgF1" in out and "IL_MCC" in out and "1.0000" in out


@needs_sam3
def test_video_ground_truth_round_trip_scores_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preds = tmp_path / "video_preds.json"
    code, out, err = _cli(capsys, "eval", "--model", "gt", "--video", "--data", FIXTURES, "--split", "train",
                          "--saco-preds", preds, "--run", "t")
    assert code == 0, err
    records = json.loads(preds.read_text())
    assert len(records) == 10 and all(len(r["segmentations"]) == 16 and r["score"] == 1.0 for r in records)
    code, out, err = _cli(capsys, "saco-eval", "video", "--gt", VIDEO_GT, "--pred", preds, "--out", tmp_path / "r.json")
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result) == {"dataset_results", "video_np_results"}
    res = result["dataset_results"]
    assert res["video_mask_demo_cgf1_micro_50_95"] == pytest.approx(1.0, abs=1e-3)
    assert res["video_mask_demo_ilmcc_50_95"] == pytest.approx(1.0, abs=1e-6)
    assert res["video_mask_all_phrase_HOTA"] == pytest.approx(1.0, abs=1e-6)
    assert len(result["video_np_results"]) == 11                                  # every pair, negatives too


@needs_sam3
def test_video_without_a_confident_masklet_scores_zero(tmp_path):
    """Every masklet below 0.5: the evaluators that filter by score see nothing (SAM 3's TETA code cannot load
    that and is left out); cgF1, IL_MCC and pHOTA are 0, not an error."""
    path = _write(tmp_path / "vp.json", [{**_video_pred(), "score": 0.3}])
    res = saco.evaluate_video(VIDEO_GT, path)["dataset_results"]
    assert res["video_mask_demo_cgf1_micro_50_95"] == 0 and res["video_mask_demo_ilmcc_50_95"] == 0
    assert res["video_mask_all_phrase_HOTA"] == 0 and "video_mask_teta" not in res


def _imperfect(sample):
    """Ground truth with mistakes: every 3rd positive pair missed, every 2nd negative given a false detection,
    every 5th pair an extra detection below the 0.5 threshold (it must not count)."""
    k = sample.pair_id
    masks, scores = sample.masks, np.ones(len(sample.masks))
    if sample.present and k % 3 == 0:
        masks, scores = masks[:0], scores[:0]
    if not sample.present and k % 2 == 0:
        fake = np.zeros((1, *sample.image.shape[:2]), dtype=bool)
        fake[0, 10:30, 10:30] = True
        masks, scores = np.concatenate([masks, fake]), np.append(scores, 0.9)
    if k % 5 == 0:
        low = np.zeros((1, *sample.image.shape[:2]), dtype=bool)
        low[0, :5, :5] = True
        masks, scores = np.concatenate([masks, low]), np.append(scores, 0.3)
    return masks, scores


@needs_sam3
def test_presence_f1_equals_official_il_f1(tmp_path):
    ds = SacoImageDataset(IMAGE_GT)
    preds = ImagePredictions(category_ids(IMAGE_GT))
    res = evaluate_pairs(ds, _imperfect, progress=False, sink=preds)
    assert 0.3 < res.presence.f1 < 0.95                                          # a case that can disagree
    out = saco.evaluate_image([IMAGE_GT], preds.write(tmp_path / "p.json"))
    assert out["cgF1_eval_segm_IL_F1"] == pytest.approx(res.presence.f1, abs=1e-4)
    assert out["cgF1_eval_segm_IL_MCC"] == pytest.approx(res.presence.il_mcc, abs=1e-4)
    assert out["cgF1_eval_segm_cgF1"] < 0.9


def _annotator_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A Gold-style triple from the fixture: a = the GT, b = a with the instances of one positive pair removed,
    c = a again."""
    data = json.loads(IMAGE_GT.read_text())
    drop = data["annotations"][0]["image_id"]
    b = copy.deepcopy(data)
    b["annotations"] = [a for a in b["annotations"] if a["image_id"] != drop]
    return (_write(tmp_path / "gold_x_merged_a_test.json", data), _write(tmp_path / "gold_x_merged_b_test.json", b),
            _write(tmp_path / "gold_x_merged_c_test.json", data))


@needs_sam3
def test_several_gt_files_score_the_best_annotator(tmp_path):
    a, b, c = _annotator_files(tmp_path)
    b_preds = _write(tmp_path / "p.json", _gt_preds(b))             # exactly annotator b's view
    assert saco.evaluate_image([a], b_preds)["cgF1_eval_segm_cgF1"] < 0.99
    assert saco.evaluate_image([a, b, c], b_preds)["cgF1_eval_segm_cgF1"] == pytest.approx(1.0, abs=1e-3)


# --- bad inputs: one line naming file and field, exit 2 ----------------------------------------------------------
def _bad_image_preds():
    good = _gt_preds(IMAGE_GT)
    first = good[0]
    return {
        "not a list": ({"predictions": good}, "<top level>: expected a list"),
        "no segmentation": ([{k: v for k, v in first.items() if k != "segmentation"}], "[0].segmentation: missing key"),
        "unknown pair": ([{**first, "image_id": 99999}], "[0].image_id: 99999 is not a pair"),
        "string score": ([{**first, "score": "high"}], "[0].score: expected number"),
        "rle size": ([{**first, "segmentation": {**first["segmentation"], "size": [5, 5]}}], "[0].segmentation.size"),
        "corrupt counts": ([{**first, "segmentation": {**first["segmentation"], "counts": "zz"}}],
                           "[0].segmentation.counts: corrupt"),
        "short bbox": ([{**first, "bbox": [1, 2]}], "[0].bbox: expected [x, y, w, h]"),
    }


@pytest.mark.parametrize("case", ["not a list", "no segmentation", "unknown pair", "string score", "rle size",
                                  "corrupt counts", "short bbox"])
def test_bad_image_prediction_file_is_one_line(tmp_path, capsys, case):
    obj, expected = _bad_image_preds()[case]
    pred = _write(tmp_path / "bad_preds.json", obj)
    code, _, err = _cli(capsys, "saco-eval", "image", "--gt", IMAGE_GT, "--pred", pred, "--out", tmp_path / "r.json")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"sam3m4: error: {pred}: ") and expected in err
    assert not (tmp_path / "r.json").exists()


def _gt_edit(tmp_path: Path, edit) -> Path:
    data = json.loads(IMAGE_GT.read_text())
    edit(data)
    return _write(tmp_path / "bad_gt.json", data)


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["annotations"][2].pop("iscrowd"), "annotations[2].iscrowd: missing key"),
    (lambda d: d["images"][4].pop("is_instance_exhaustive"), "images[4].is_instance_exhaustive: missing key"),
    (lambda d: d["annotations"][1].pop("id"), "annotations[1].id: missing key"),
    (lambda d: d.pop("categories"), "categories: missing key"),
    (lambda d: d["annotations"][0].__setitem__("segmentation", None), "annotations[0].segmentation: null"),
    (lambda d: [im.__setitem__("is_instance_exhaustive", 0) for im in d["images"]],
     "no pair has is_instance_exhaustive"),
], ids=["iscrowd", "exhaustive", "ann-id", "categories", "null-rle", "none-exhaustive"])
def test_bad_image_gt_is_one_line(tmp_path, capsys, edit, expected):
    gt = _gt_edit(tmp_path, edit)
    pred = _write(tmp_path / "p.json", [])
    code, _, err = _cli(capsys, "saco-eval", "image", "--gt", gt, "--pred", pred, "--out", tmp_path / "r.json")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"sam3m4: error: {gt}: ") and expected in err


def test_annotator_files_must_list_the_same_pairs(tmp_path, capsys):
    a, _, c = _annotator_files(tmp_path)
    data = json.loads(c.read_text())
    gone = data["images"].pop()["id"]
    data["annotations"] = [x for x in data["annotations"] if x["image_id"] != gone]
    _write(c, data)
    pred = _write(tmp_path / "p.json", [])
    code, _, err = _cli(capsys, "saco-eval", "image", "--gt", a, c, "--pred", pred, "--out", tmp_path / "r.json")
    assert code == 2 and err.startswith(f"sam3m4: error: {c}: images: no pair with id {gone}")
    code, _, err = _cli(capsys, "data", "check", a, tmp_path / "gold_x_merged_b_test.json", c)
    assert code == 2 and f"{c}: images: no pair with id {gone}" in err


def _video_pred() -> dict:
    masks = np.zeros((16, 96, 96), dtype=bool)
    masks[3:9, 10:20, 10:20] = True
    scores = np.where(masks.any(axis=(1, 2)), 0.8, 0.0)
    return video_prediction(json.loads(VIDEO_GT.read_text())["videos"][0]["id"], 1, masks, scores)


def test_video_prediction_record_follows_sam3_writer():
    rec = _video_pred()
    assert rec["score"] == pytest.approx(0.8)                    # mean over the frames where the object is output
    assert rec["bboxes"][0] == [0.0, 0.0, 0.0, 0.0] and rec["bboxes"][5] == [10.0, 10.0, 10.0, 10.0]
    assert rec["areas"][5] == 100 and len(rec["segmentations"]) == 16 and None not in rec["segmentations"]


@pytest.mark.parametrize("edit, expected", [
    (lambda p: p["segmentations"].pop(), "[0].segmentations: 15 entries but video"),
    (lambda p: p.__setitem__("video_id", 4242), "[0].video_id: 4242 is not a video"),
    (lambda p: p["bboxes"].__setitem__(2, None), "[0].bboxes[2]: expected [x, y, w, h]"),
    (lambda p: p["segmentations"].__setitem__(5, None), "[0].segmentations[5]: null but its bbox/area"),
    (lambda p: p.pop("areas"), "[0].areas: missing key"),
], ids=["length", "video", "null-box", "null-mask", "areas"])
def test_bad_video_prediction_file_is_one_line(tmp_path, capsys, edit, expected):
    pred = _video_pred()
    edit(pred)
    path = _write(tmp_path / "vp.json", [pred])
    code, _, err = _cli(capsys, "saco-eval", "video", "--gt", VIDEO_GT, "--pred", path, "--out", tmp_path / "r.json")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"sam3m4: error: {path}: ") and expected in err


@pytest.mark.parametrize("extra", [[], ["--video"]], ids=["image", "video"])
def test_student_preds_without_checkpoint_is_one_line(tmp_path, capsys, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, "eval", "--model", "student", *extra, "--data", FIXTURES, "--saco-preds",
                        tmp_path / "p.json", "--run", "t")
    assert code == 2 and err.startswith("sam3m4: error: --ckpt: required") and err.count("\n") == 1


def test_empty_video_prediction_file_is_one_line(tmp_path, capsys):
    path = _write(tmp_path / "vp.json", [])
    code, _, err = _cli(capsys, "saco-eval", "video", "--gt", VIDEO_GT, "--pred", path, "--out", tmp_path / "r.json")
    assert code == 2 and "no masklet" in err and err.count("\n") == 1


def test_bad_video_gt_is_one_line(tmp_path, capsys):
    data = json.loads(VIDEO_GT.read_text())
    data["annotations"][3].pop("areas")
    gt = _write(tmp_path / "vgt.json", data)
    path = _write(tmp_path / "vp.json", [_video_pred()])
    code, _, err = _cli(capsys, "saco-eval", "video", "--gt", gt, "--pred", path, "--out", tmp_path / "r.json")
    assert code == 2 and err.startswith(f"sam3m4: error: {gt}: annotations[3].areas: missing key")


# --- sam3m4 data check ----------------------------------------------------------------------------------------
def test_data_check_takes_a_gold_triple_and_reads_each_image_once(tmp_path, capsys, monkeypatch):
    from sam3m4.data import _checks

    a, b, c = _annotator_files(tmp_path)
    reads = []
    real = _checks.read_rgb
    monkeypatch.setattr(_checks, "read_rgb", lambda *args: reads.append(args[2]) or real(*args))
    code, out, err = _cli(capsys, "data", "check", c, a, b, "--root", FIXTURES / "saco_image" / "images")
    assert code == 0, err
    assert "SA-Co/Gold subset, 3 annotator files, 43 pairs (43 exhaustive in every file" in out
    assert len(reads) == 43                                         # not 3 x 43
    lines = out.splitlines()
    assert "gold_x_merged_a_test.json: 23 present" in lines[1] and "gold_x_merged_b_test.json: 22 present" in lines[2]


def test_data_check_video_reads_each_frame_once(capsys, monkeypatch):
    from sam3m4.data import _checks, saco_video

    reads, decodes = [], []
    real_read, real_decode = _checks.read_rgb, saco_video.decode_rle
    monkeypatch.setattr(_checks, "read_rgb", lambda *args: reads.append(args[2]) or real_read(*args))
    monkeypatch.setattr(saco_video, "decode_rle", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    code, out, err = _cli(capsys, "data", "check", VIDEO_GT)
    assert code == 0, err
    data = json.loads(VIDEO_GT.read_text())
    assert len(reads) == 16 and len(set(reads)) == 16                # 1 video x 16 frames, not 11 pairs x 16
    assert len(decodes) == sum(s is not None for a in data["annotations"] for s in a["segmentations"])
    assert "video, 1 videos (16 frames), 11 pairs (8 present, 3 absent)" in out


# --- the report -----------------------------------------------------------------------------------------------
def test_report_adds_the_official_table_under_stage3(tmp_path):
    from sam3m4.report import render_report
    from sam3m4.results import ResultsStore

    store = ResultsStore("r", root=tmp_path)
    store.record(stage=schema.STAGE3, subject=schema.TEACHER, metric=schema.MIOU, value=0.5, unit="fraction",
                 provenance="p")
    store.record(stage=schema.STAGE3, subject=schema.TEACHER, metric=schema.SACO_CGF1, value=0.4123, unit="fraction",
                 provenance="SAM 3's CGF1Evaluator on x")
    store.record(stage=schema.STAGE3, subject=schema.STUDENT_VIDEO, metric=schema.SACO_VIDEO_PHOTA, value=0.25,
                 unit="fraction",
                 provenance="SAM 3's VEvalEvaluator on y")
    text = render_report("r", root=tmp_path).read_text()
    stage3 = text.index("| Student (+Video Distill) |")
    official = text.index("### SA-Co official metrics")
    assert stage3 < official < text.index("### Stage 3 코멘트")
    assert text[stage3:official].count("\n") == 2                    # right under the template's table
    rows = text[official:text.index("### Stage 3 코멘트")]
    assert "| Teacher (SAM3) | 41.2[^" in rows and "| 25.0[^" in rows
    gold = next(line for line in rows.splitlines() if "SA-Co/Gold" in line and "published" in line)
    assert "| 54.1 | 0.82 | 66.1 |" in gold and "another dataset" in gold
    sav = next(line for line in rows.splitlines() if "SA-V test" in line and "published" in line)
    assert "| 30.3 | 58.0 |" in sav
    assert "arXiv 2511.16719, 2025), Table 1" in text

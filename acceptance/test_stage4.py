"""Stage 4 gates: every quantized mode keeps the fp16 student's mIoU within the targets file's drop.

The models are the ones ``sam3m4 quantize`` saved (``--stage4-dir checkpoints/quantized``, one folder per
mode); each is loaded from its safetensors file (no pickles) and scored again here on the same first
``--stage4-num-val`` val pairs as the fp16 baseline. Without ``--stage4-dir`` a small set is built once per
cache (a briefly trained tiny student, quantized in every mode with a short QAT): it checks the machinery
and the gate, not the embedded default's quality. A planted broken quantization (weights rounded to 1 bit)
must fail the same gate.

Presence calibration (:mod:`sam3m4.eval.calibration`) of every mode on the same pairs: ECE with its bootstrap
interval, the F1 curve's best and plateau, F1 at the mode's shipped presence threshold and at 0.5 (on every pair
and on the held-out part), and SA-Co cgF1 / IL_MCC at 0.5 and at the F1-best threshold (Meta's evaluator). The
shipped threshold is the mode's operating point in Stage 4's ``decision.json`` (fitted on the calibration part of
the val pairs, :mod:`sam3m4.metrics.operating_point`), else fitted here the same way. Two gates judge the shipped
mode (the Stage 4 decision: the run's ``decision`` record, else :func:`sam3m4.quantize.compare.decide` over the
modes scored here): its shipped threshold lies on its F1 plateau of the held-out pairs (a fitted threshold's gap
above the target fails only when the bootstrap resolves it on those pairs), and its ECE rise over fp16
stays under the target when the paired bootstrap resolves it ("not measured: not resolvable on N pairs"
otherwise, a skip in either mode).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3m4.eval import saco
from sam3m4.errors import DataFormatError
from sam3m4.eval.calibration import DETECTION_FLOOR, ece_rise_gate, plateau_gate, record_calibration
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval.saco_format import ImagePredictions, category_ids
from sam3m4.metrics.calibration import f1_at, f1_curve
from sam3m4.metrics.operating_point import calibration_split, fit_operating_point
from sam3m4.predict import Predictor
from sam3m4.quantize.compare import ModeResult, decide, miou_drop, pair_groups, scored_model
from sam3m4.quantize.decision import read_decision
from sam3m4.quantize.modes import MODES, deployable_bytes
from sam3m4.quantize.pipeline import image_model
from sam3m4.quantize.stage import pinned_presence_threshold
from sam3m4.quantize.storage import load_quantized
from sam3m4.results import schema

pytestmark = [pytest.mark.stage4, pytest.mark.slow]


@pytest.fixture(scope="module")
def scored(stage4_models, pytestconfig):
    """``scored(mode)`` -> ``(ImageEvalResult, size MB, SA-Co predictions)`` of a saved mode, scored once per module
    (None when the mode was not saved)."""
    cache = {}

    def get(mode):
        if mode not in cache:
            path = stage4_models.dir / mode
            if not (path / "model.safetensors").is_file():
                cache[mode] = None
            else:
                model, _ = load_quantized(path)
                preds = ImagePredictions(category_ids(stage4_models.val.json_path))
                res = _score(model, stage4_models, pytestconfig, mode, sink=preds)
                cache[mode] = (res, deployable_bytes(model)["total"] / 1e6, preds)
        return cache[mode]

    return get


@pytest.fixture(scope="module")
def operating_point(scored, stage4_models):
    """``operating_point(mode)`` -> ``(OperatingPoint, where from)``: the presence threshold the mode ships, from
    Stage 4's ``decision.json`` when it was fitted on these pairs, else fitted here the same way (the same split)."""
    try:
        decision = read_decision(stage4_models.dir)
    except DataFormatError:
        decision = None

    def get(mode):
        res = scored(mode)[0]
        point = decision.presence.get(mode) if decision is not None and decision.num_pairs == res.num_pairs else None
        if point is not None:
            return point, f"{decision.path} presence.{mode}"
        groups = pair_groups(stage4_models.val, res.num_pairs)
        return (fit_operating_point(res.presence_scores, res.present, groups, fixed=pinned_presence_threshold()),
                "fitted here as Stage 4 fits it (no decision.json operating point on these pairs)")

    return get


def _held_out(res, point, stage4_models):
    """(N,) bool: the pairs that judge ``point``: the held-out part when it was fitted, else every pair."""
    if point.how != "fitted":
        return np.ones(res.num_pairs, dtype=bool)
    return ~calibration_split(pair_groups(stage4_models.val, res.num_pairs))


@pytest.fixture(scope="module")
def fp16(scored):
    return scored("fp16")[0]


def _score(model, stage4_models, pytestconfig, mode="fp16", sink=None):
    """Image-path mIoU / Presence F1 of a student, or of a tracker's image student, as ``mode``'s backend runs it
    (XNNPACK modes: the PT2E-converted graph with 8-bit convolutions), with every pair's presence score. Detections
    down to DETECTION_FLOOR go to ``sink`` (cgF1 below 0.5); the metrics keep SAM 3's 0.5."""
    num_val = pytestconfig.getoption("--stage4-num-val")
    predictor = Predictor(scored_model(image_model(model), mode, stage4_models.val, num_val), threshold=DETECTION_FLOOR)
    return evaluate_pairs(stage4_models.val, predictor.predict_pair, num=num_val,
                          progress=False, sink=sink)


def _gate_drop(gate, targets, subject, base, res, how):
    t = targets["quant_miou_drop"]
    drop = miou_drop(base.miou, res.miou, t.basis)
    return gate(stage=schema.STAGE4, subject=subject, metric=schema.MIOU_DROP, value=drop, target="quant_miou_drop",
                provenance=f"fp16 mIoU {base.miou:.4f} - {subject} mIoU {res.miou:.4f} on the same {res.num_pairs} "
                           f"val pairs ({t.basis}); {how}"), drop


@pytest.mark.parametrize("mode", [m for m in MODES if m != "fp16"])
def test_quantized_mode_keeps_fp16_miou(mode, stage4_models, fp16, scored, gate, targets):
    path = stage4_models.dir / mode
    if not (path / "model.safetensors").is_file():
        if MODES[mode].qat:
            pytest.skip(f"{path}: QAT mode not run (compare runs QAT only when no post-training mode passes, "
                        "or with --qat always)")
        pytest.fail(f"{path}: missing; run `sam3m4 quantize --mode compare --out {stage4_models.dir}`")
    res = scored(mode)[0]
    rec, drop = _gate_drop(gate, targets, mode, fp16, res,
                           f"reloaded from {path}/model.safetensors, host CPU torch eager + torchao")
    assert rec.passed, f"metric above gate: {mode} loses {drop:.2f} mIoU points vs fp16, target " \
                       f"{rec.comparison} {rec.target}"


def _round_to_one_bit(model):
    """A planted broken quantization: every float weight matrix becomes sign(w) x mean|w| per output channel
    (a torchao-quantized one, such as the fp16 mode's int8 token table, is left as it is)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)) and type(m.weight) is torch.nn.Parameter:
                w = m.weight
                scale = w.abs().flatten(1).mean(1).reshape(-1, *[1] * (w.dim() - 1))
                w.copy_(torch.sign(w) * scale)
    return model


def test_gate_fails_a_planted_one_bit_quantization(stage4_models, fp16, gate, targets, pytestconfig):
    assert fp16.miou > 0.05, f"fp16 student mIoU {fp16.miou:.3f}: too weak for the planted check to mean anything"
    model, _ = load_quantized(stage4_models.dir / "fp16")
    res = _score(_round_to_one_bit(model), stage4_models, pytestconfig)
    rec, drop = _gate_drop(gate, targets, schema.PLANTED_ONE_BIT, fp16, res, "planted: weights rounded to 1 bit")
    assert rec.passed is False, f"the gate passed a 1-bit model (drop {drop:.2f} points): it cannot catch a " \
                                "broken quantization"


# --- presence calibration ---------------------------------------------------------------------------------------
def _provenance(res, mode, stage4_models) -> str:
    return (f"{mode}: {res.num_pairs} val pairs of {stage4_models.val.json_path}, host CPU torch eager + torchao "
            f"(XNNPACK modes: the PT2E graph); presence score = highest detection score over all queries")


@pytest.mark.parametrize("mode", list(MODES))
def test_presence_calibration(mode, stage4_models, scored, operating_point, results_store):
    got = scored(mode)
    if got is None:
        pytest.skip(f"{stage4_models.dir / mode}: not saved (QAT modes run only when needed)")
    res = got[0]
    assert res.scores_complete, "the Stage 4 predictor must give every pair's presence score"
    point, where = operating_point(mode)
    prov = _provenance(res, mode, stage4_models)
    cal = record_calibration(results_store, stage=schema.STAGE4, subject=mode, scores=res.presence_scores,
                             labels=res.present, pair_ids=res.pair_ids, provenance=prov, threshold=point.threshold)
    assert f1_at(res.presence_scores, res.present, 0.5) == pytest.approx(res.presence.f1)  # the curve at 0.5
    held = _held_out(res, point, stage4_models)
    f1_held = f1_at(res.presence_scores[held], res.present[held], point.threshold)
    split = f"{point.how} threshold {point.threshold:.4f} ({where}); held-out part: {int(held.sum())} pairs"
    for metric, value, how in ((schema.PRESENCE_THRESHOLD, point.threshold, split),
                               (schema.PRESENCE_F1_SHIPPED, cal.f1, f"every pair at the shipped threshold; {split}"),
                               (schema.PRESENCE_F1_HELD_OUT, f1_held, f"held-out pairs at the shipped threshold; {split}"),
                               (schema.PRESENCE_F1_HELD_OUT_05, f1_at(res.presence_scores[held], res.present[held], 0.5),
                                f"held-out pairs at SAM 3's 0.5; {split}")):
        results_store.record(stage=schema.STAGE4, subject=mode, metric=metric, value=float(value),
                             unit=schema.FRACTION, provenance=f"{how}; {prov}")
    assert cal.curve.best_f1 >= cal.f1 - 1e-12 and cal.ece.low <= cal.ece.high


@pytest.mark.parametrize("mode", list(MODES))
def test_official_metrics_at_thresholds(mode, stage4_models, scored, results_store, release):
    """SA-Co cgF1 / IL_MCC with detections kept at 0.5 (SAM 3's) and at the mode's F1-best threshold."""
    got = scored(mode)
    if got is None:
        pytest.skip(f"{stage4_models.dir / mode}: not saved (QAT modes run only when needed)")
    reason = saco.available()
    if reason:
        (pytest.fail if release else pytest.skip)(f"SA-Co official metrics not measured: {reason}")
    res, _, preds = got
    name, out = f"stage4_{mode}", results_store.dir / "saco"
    result, path = saco.score_image(stage4_models.val.json_path, preds, out, name)
    prov = (f"SAM 3's CGF1Evaluator (sam3 {saco.SAM3_VERSION}) on {path.name}; " + _provenance(res, mode, stage4_models))
    at_05 = saco.headline(result, "image")
    for metric in (schema.SACO_CGF1, schema.SACO_IL_MCC):
        results_store.record(stage=schema.STAGE4, subject=mode, metric=metric, value=at_05[metric],
                             unit=schema.FRACTION, provenance=f"detections kept at 0.5; {prov}", artifact=path)
    best = f1_curve(res.presence_scores, res.present).best_threshold
    if best < DETECTION_FLOOR:
        pytest.skip(f"{mode}: F1-best threshold {best:.4f} is below the detection floor {DETECTION_FLOOR} kept in "
                    f"{path.name}: cgF1 there not measured")
    result, eval_path = saco.score_image_at(out, name, best)
    at_best = saco.headline(result, "image")
    for metric, value in ((schema.SACO_CGF1_AT_BEST, at_best[schema.SACO_CGF1]),
                          (schema.SACO_IL_MCC_AT_BEST, at_best[schema.SACO_IL_MCC])):
        results_store.record(stage=schema.STAGE4, subject=mode, metric=metric, value=value, unit=schema.FRACTION,
                             provenance=f"detections kept at the F1-best threshold {best:.4f}; {prov}",
                             artifact=eval_path)
    assert at_best[schema.SACO_IL_F1] >= at_05[schema.SACO_IL_F1] - 0.02  # the F1-best threshold is no worse


@pytest.fixture(scope="module")
def shipped(scored, results_store, targets):
    """The mode Stage 4 ships: the run's decision record, else the decision over the modes scored here."""
    rec = results_store.latest(stage=schema.STAGE4, subject=schema.DECISION, metric=schema.CHOSEN_MODE)
    if rec is not None and scored(str(rec.value)) is not None:
        return str(rec.value), f"the run's Stage 4 decision ({rec.value})"
    rows = [ModeResult(mode=m, size_mb=got[1], miou=got[0].miou, presence_f1=got[0].presence.f1, avg_ms=float("nan"),
                       num_pairs=got[0].num_pairs) for m in MODES if (got := scored(m)) is not None]
    chosen = decide(rows, targets["quant_miou_drop"])["chosen_mode"]
    return chosen, f"the Stage 4 decision over the modes scored here ({chosen})"


def test_shipped_threshold_on_plateau(shipped, scored, operating_point, stage4_models, gate, results_store, targets):
    """The threshold the shipped mode ships (fitted on the calibration part) judged on the held-out pairs; a gap
    above the target that the held-out pairs cannot resolve (bootstrap) is "not measured", a skip."""
    mode, why = shipped
    res = scored(mode)[0]
    point, where = operating_point(mode)
    held = _held_out(res, point, stage4_models)
    target = targets["presence_threshold_on_plateau"]
    outcome, check = plateau_gate(res.presence_scores[held], res.present[held], target, threshold=point.threshold,
                                  resolve=point.how != "fixed")
    part = "held-out" if point.how == "fitted" else "val"
    prov = (f"best Presence F1 {check.best_f1:.4f} (at {check.best_threshold:.4f}) - F1 {check.f1:.4f} at the shipped "
            f"threshold {check.threshold:.4f} ({point.how}, {where}) on {check.num_pairs} {part} pairs; shipped: {why}")
    if outcome.outcome == schema.NOT_MEASURED:
        results_store.record(stage=schema.STAGE4, subject=mode, metric=schema.PRESENCE_F1_GAP, value=None,
                             unit=schema.FRACTION, outcome=schema.NOT_MEASURABLE, note=outcome.reason, provenance=prov)
        pytest.skip(f"presence_threshold_on_plateau: {outcome.reason}")
    rec = gate(stage=schema.STAGE4, subject=mode, metric=schema.PRESENCE_F1_GAP, value=check.gap,
               target="presence_threshold_on_plateau", provenance=prov)
    assert rec.passed == (outcome.outcome == schema.PASS)
    assert rec.passed, f"metric above gate: {outcome.reason}"


def test_shipped_ece_rise(shipped, scored, fp16, gate, results_store, targets):
    mode, why = shipped
    res = scored(mode)[0]
    assert list(res.pair_ids) == list(fp16.pair_ids), "the ECE difference needs the same pairs"
    outcome, diff = ece_rise_gate(fp16.presence_scores, res.presence_scores, res.present, targets["presence_ece_rise"])
    prov = (f"ECE {mode} {diff.ece_b:.4f} - fp16 {diff.ece_a:.4f} on the same {diff.num_pairs} val pairs, "
            f"{diff.level:.0%} paired bootstrap ({diff.n_boot} resamples, seed {diff.seed}) "
            f"[{diff.low:+.4f}, {diff.high:+.4f}]; shipped: {why}")
    if outcome.outcome == schema.NOT_MEASURED:
        results_store.record(stage=schema.STAGE4, subject=mode, metric=schema.PRESENCE_ECE_RISE, value=None,
                             unit=schema.FRACTION, outcome=schema.NOT_MEASURABLE, note=outcome.reason, provenance=prov)
        pytest.skip(f"presence_ece_rise: {outcome.reason}")
    rec = gate(stage=schema.STAGE4, subject=mode, metric=schema.PRESENCE_ECE_RISE, value=diff.diff,
               target="presence_ece_rise", provenance=prov)
    assert rec.passed, f"metric above gate: {outcome.reason}"

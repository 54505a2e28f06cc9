"""Presence calibration of a model on scored pairs: the per-pair scores file, the records, and the two gates.

The numbers come from :mod:`sam3m4.metrics.calibration` (ECE with a bootstrap interval, the Presence F1 curve and
its plateau, the paired ECE difference); this module keeps each model's per-pair presence scores and labels in a
file next to its records, records the summary, and judges the two calibration gates of the targets file. The gates
take plain ``(scores, labels)`` arrays, so any evaluation that keeps them (the eager modes of Stage 4, an exported
``.pte`` run through the ExecuTorch runtime) is judged the same way.

    res = evaluate_pairs(val, predictor.predict_pair, num=200)      # res.presence_scores, res.present
    summary = record_calibration(store, stage=schema.STAGE4, subject="int4", scores=res.presence_scores,
                                 labels=res.present, provenance="...", threshold=0.5)
    outcome, check = plateau_gate(res.presence_scores, res.present, targets["presence_threshold_on_plateau"])
    outcome, diff = ece_rise_gate(fp16_scores, shipped_scores, labels, targets["presence_ece_rise"])

Gates (``acceptance/targets.yaml``):

* ``presence_threshold_on_plateau``: the presence threshold the app ships (the mode's operating point fitted by
  Stage 4 on the calibration part of the val pairs, :mod:`sam3m4.metrics.operating_point`; or the target's
  ``presence_threshold`` when the targets file pins one) gives up at most ``value`` of Presence F1 against the
  best threshold (``presence_f1_gap``) on the held-out part: pass or fail.
* ``presence_ece_rise``: ECE(shipped) - ECE(fp16) on the same pairs is judged against ``value`` only when its
  paired bootstrap interval excludes zero; otherwise the outcome is "not measured: not resolvable on N pairs".
  An argmax threshold or a raw ECE difference is never gated: on a few hundred pairs both move with the sample.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam3m4.errors import DataFormatError
from sam3m4.fileio import atomic_write_json
from sam3m4.metrics.calibration import (EceDifference, F1Curve, Interval, PlateauCheck, check_pairs, ece_difference,
                                        ece_interval, f1_at, f1_curve, plateau_check, reliability)
from sam3m4.metrics.operating_point import gap_interval
from sam3m4.results import schema
from sam3m4.results.schema import FAIL, NOT_MEASURED, PASS, GateOutcome

DEFAULT_THRESHOLD = 0.5   # SAM 3's keep threshold: the app's presence threshold unless the targets file says else
PLATEAU_TOL = 0.01        # the plateau of the summary records (the gate reads its tolerance from its target)
DETECTION_FLOOR = 0.05    # detections kept in SA-Co prediction files when cgF1 is also scored below 0.5
SCORES_SUFFIX = "_presence_scores.json"


def shipped_threshold(target, fitted: float | None = None) -> float:
    """The presence threshold the app ships: the target's ``presence_threshold`` when the targets file pins one,
    else the mode's ``fitted`` operating point (Stage 4's ``decision.json``), else :data:`DEFAULT_THRESHOLD`."""
    value = getattr(target, "presence_threshold", None)
    if value is not None:
        return float(value)
    return DEFAULT_THRESHOLD if fitted is None else float(fitted)


# --- the per-pair file -----------------------------------------------------------------------------------------
def write_pair_scores(path: str | os.PathLike, scores, labels, pair_ids=(), what: str = "") -> Path:
    """``{"what", "pair_ids", "scores", "labels"}`` as JSON, atomically: one model's presence score and label per
    pair, in pair order (the reliability plot and a later paired comparison read it)."""
    s, y = check_pairs(scores, labels)
    ids = [int(i) for i in pair_ids] if len(pair_ids) else []
    if ids and len(ids) != s.size:
        raise ValueError(f"{path}: {len(ids)} pair ids for {s.size} scores")
    return atomic_write_json(path, {"what": what, "pair_ids": ids, "scores": [float(v) for v in s],
                                    "labels": [bool(v) for v in y]})


def read_pair_scores(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(scores (N,) float64, labels (N,) bool, pair ids)`` of a :func:`write_pair_scores` file; a malformed file
    is a :class:`~sam3m4.errors.DataFormatError` naming the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read presence scores: {err}") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: <top level>: expected an object")
    for key in ("scores", "labels"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(f"{path}: {key}: expected a list")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data["scores"]):
        raise DataFormatError(f"{path}: scores: expected numbers")
    if not all(isinstance(v, bool) for v in data["labels"]):
        raise DataFormatError(f"{path}: labels: expected true / false")
    try:
        s, y = check_pairs(data["scores"], data["labels"])
    except ValueError as err:
        raise DataFormatError(f"{path}: scores: {err}") from None
    ids = data.get("pair_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise DataFormatError(f"{path}: pair_ids: expected a list of integers")
    return s, y, ids


def scores_path(out_dir: str | os.PathLike, subject: str) -> Path:
    """``<out_dir>/<subject with / as _>_presence_scores.json``."""
    return Path(out_dir) / f"{subject.replace('/', '_')}{SCORES_SUFFIX}"


# --- the summary and its records -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """One model's presence calibration on its pairs."""

    ece: Interval
    curve: F1Curve
    threshold: float
    """The presence threshold judged (the shipped one)."""
    f1: float
    """Presence F1 at ``threshold``."""
    plateau: tuple[float, float]
    """Grid thresholds within :data:`PLATEAU_TOL` of the best F1, around the best threshold."""


def calibration(scores, labels, threshold: float = DEFAULT_THRESHOLD, seed: int = 0) -> Calibration:
    """ECE with its interval, the F1 curve, F1 at ``threshold`` and the plateau span of ``(scores, labels)``."""
    curve = f1_curve(scores, labels)
    return Calibration(ece=ece_interval(scores, labels, seed=seed), curve=curve, threshold=threshold,
                       f1=f1_at(scores, labels, threshold), plateau=curve.plateau_span(PLATEAU_TOL))


def record_calibration(store, *, stage: str, subject: str, scores, labels, provenance: str,
                       threshold: float = DEFAULT_THRESHOLD, pair_ids=(), out_dir=None) -> Calibration:
    """Record one model's calibration (ECE and its interval, best F1, F1-best threshold, plateau span) and write its
    per-pair scores (``out_dir``, default ``<store dir>/calibration``) as the artifact of a ``presence_scores``
    record."""
    cal = calibration(scores, labels, threshold)
    path = write_pair_scores(scores_path(out_dir or store.dir / "calibration", subject), scores, labels, pair_ids,
                             what=f"{stage} {subject}")
    n = cal.ece.num_pairs
    boot = f"{cal.ece.n_boot} bootstrap resamples of the {n} pairs (seed {cal.ece.seed}), {cal.ece.level:.0%} percentile"
    rows = [
        (schema.PRESENCE_ECE, cal.ece.value, f"15 equal-width bins; {boot} interval "
                                             f"[{cal.ece.low:.4f}, {cal.ece.high:.4f}]"),
        (schema.PRESENCE_ECE_LOW, cal.ece.low, boot),
        (schema.PRESENCE_ECE_HIGH, cal.ece.high, boot),
        (schema.PRESENCE_F1_BEST, cal.curve.best_f1, f"best over every threshold in [0, 1], at "
                                                     f"{cal.curve.best_threshold:.4f}"),
        (schema.PRESENCE_BEST_THRESHOLD, cal.curve.best_threshold, "the F1-best threshold nearest 0.5 (not gated: "
                                                                   "it moves with the sample)"),
        (schema.PRESENCE_PLATEAU_LOW, cal.plateau[0], f"grid thresholds with F1 within {PLATEAU_TOL} of the best"),
        (schema.PRESENCE_PLATEAU_HIGH, cal.plateau[1], f"grid thresholds with F1 within {PLATEAU_TOL} of the best"),
    ]
    for metric, value, how in rows:
        store.record(stage=stage, subject=subject, metric=metric, value=float(value),
                     unit=schema.METRICS[metric].unit, provenance=f"{how}; {provenance}")
    store.record(stage=stage, subject=subject, metric=schema.PRESENCE_SCORES, value=str(path),
                 unit=schema.METRICS[schema.PRESENCE_SCORES].unit, artifact=path,
                 provenance=f"{n} pairs' presence score and label; {provenance}")
    return cal


def reliability_of(path: str | os.PathLike):
    """The reliability bins (:func:`sam3m4.metrics.calibration.reliability`) of a per-pair scores file."""
    s, y, _ = read_pair_scores(path)
    return reliability(s, y)


# --- the gates -------------------------------------------------------------------------------------------------
def plateau_gate(scores, labels, target, threshold: float | None = None,
                 resolve: bool = False) -> tuple[GateOutcome, PlateauCheck]:
    """Does the shipped presence threshold lie on the F1 plateau? The gate's value is the F1 gap
    (``best F1 - F1 at the threshold``), judged by ``target`` (``presence_f1_gap <= 0.01``). ``threshold``: the
    shipped one (default :func:`shipped_threshold` of the target). A threshold fitted on pairs is judged on pairs
    the fit did not see (the held-out part, :func:`sam3m4.metrics.operating_point.calibration_split`). Callers pass
    ``resolve=True`` for every threshold the targets file does not pin (fitted, or 0.5 kept by the fit or for want
    of pairs): a gap above the target then fails only when its bootstrap interval lies above it
    (:func:`~sam3m4.metrics.operating_point.gap_interval`), else the outcome is "not measured: not resolvable on N
    pairs" (on a held-out half of a few dozen pairs one pair moves F1 by more than 0.01)."""
    threshold = shipped_threshold(target) if threshold is None else float(threshold)
    check = plateau_check(scores, labels, threshold=threshold, tol=target.value)
    if target.check(check.gap):
        return GateOutcome(PASS), check
    what = (f"presence threshold {check.threshold:g} is off the F1 plateau: F1 {check.f1:.4f} vs best "
            f"{check.best_f1:.4f} at {check.best_threshold:.4f} (gap {check.gap:.4f}, target {target.comparison} "
            f"{target.value:g}) on {check.num_pairs} pairs")
    if resolve:
        gi = gap_interval(scores, labels, threshold)
        if target.check(gi.low):
            return GateOutcome(NOT_MEASURED, f"not resolvable on {gi.num_pairs} pairs: F1 gap {gi.value:.4f} of the "
                                             f"shipped threshold {threshold:g}, {gi.level:.0%} bootstrap interval "
                                             f"[{gi.low:.4f}, {gi.high:.4f}] reaches the target {target.comparison} "
                                             f"{target.value:g}; score more pairs to resolve it"), check
        what += f"; {gi.level:.0%} bootstrap interval of the gap [{gi.low:.4f}, {gi.high:.4f}]"
    return GateOutcome(FAIL, what), check


def not_resolvable(diff: EceDifference) -> str:
    """The reason of a "not measured" ECE-rise gate: ``not resolvable on N pairs: ...``."""
    return (f"not resolvable on {diff.num_pairs} pairs: ECE {diff.ece_a:.4f} -> {diff.ece_b:.4f} "
            f"({diff.diff:+.4f}), {diff.level:.0%} paired bootstrap interval [{diff.low:+.4f}, {diff.high:+.4f}] "
            "spans zero; score more pairs to resolve it")


def ece_rise_gate(base_scores, shipped_scores, labels, target, seed: int = 0) -> tuple[GateOutcome, EceDifference]:
    """ECE(shipped) - ECE(base) on the same pairs against ``target`` (``presence_ece_rise <= value``), judged only
    when the paired bootstrap interval excludes zero; else :data:`~sam3m4.results.schema.NOT_MEASURED` with
    :func:`not_resolvable`'s reason (neither a pass nor a fail)."""
    diff = ece_difference(base_scores, shipped_scores, labels, seed=seed)
    if not diff.resolvable:
        return GateOutcome(NOT_MEASURED, not_resolvable(diff)), diff
    if target.check(diff.diff):
        return GateOutcome(PASS), diff
    return GateOutcome(FAIL, f"presence ECE rose {diff.diff:+.4f} ({diff.ece_a:.4f} -> {diff.ece_b:.4f}; interval "
                             f"[{diff.low:+.4f}, {diff.high:+.4f}]) on {diff.num_pairs} pairs, target "
                             f"{target.comparison} {target.value:g}"), diff

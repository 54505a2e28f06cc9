"""Stage 5's deployed accuracy of one exported case: score the ``.pte``, compare it with eager, record.

    refs = eager_references("checkpoints/quantized", "int8_int4", val, 200, eager=scored_model(student, mode, val, 200))
    deployed = score_case(result, student, tracker, val=val, num_val=200, videos=videos, saco_out=store.dir / "saco",
                          refs=refs, record=store.record)

What :func:`sam3m4.export.case.export_case` runs after the host check for a flow that executes here. The
``.pte`` is scored through the ExecuTorch runtime (:mod:`sam3m4.export.deployed`) on the same first ``num_val``
val pairs as Stage 4. The eager references are Stage 4's own numbers from ``<quantized>/decision.json``
(:mod:`sam3m4.quantize.decision`) when they were scored on as many pairs, else they are scored here the way
Stage 4 scores them (:func:`sam3m4.quantize.compare.scored_model`), and the provenance says which.

Records (stage ``stage5``, subject ``<backend>/<mode>``, the ``.pte`` as artifact so its sha256 is kept):
``miou``, ``presence_f1``, ``saco_cgf1`` / ``saco_il_mcc`` / ``saco_pmf1`` / ``saco_il_f1`` (Meta's evaluator;
"not measured" with the reason when the ``sam3`` package is missing), ``jf`` (the ``track`` step on the val
videos), ``deployed_miou_drop`` (points vs fp16 eager), ``export_miou_gap`` (|points| vs the same mode's eager)
and ``deployed_eval_s``; the presence calibration of the ``.pte`` at the threshold it ships with
(:func:`shipped_presence`: Stage 4's fitted operating point of the mode in ``decision.json``): ``presence_threshold``,
``presence_f1_shipped`` and ``miou_shipped`` at it (``miou`` / ``presence_f1`` stay at SAM 3's 0.5, what the
gates compare with Stage 4's eager numbers), ``presence_ece`` (+ low / high), ``presence_f1_best`` and
``presence_f1_gap`` (best F1 - F1 at the shipped threshold, on the held-out pairs of Stage 4's split when the
threshold was fitted: the ``presence_threshold_on_plateau`` gate of the shipped file). The per-pair presence scores and labels go to ``<saco_out>/../deployed/<backend>_<mode>.json``
(``pairs`` of :class:`~sam3m4.export.deployed.PairScores`) for a calibration of the shipped file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sam3m4.checkpoint import Checkpoint
from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval import saco
from sam3m4.eval.calibration import DEFAULT_THRESHOLD, PLATEAU_TOL, calibration, plateau_gate
from sam3m4.export.deployed import DeployedEval, PteStudent, evaluate_deployed, val_agreement
from sam3m4.fileio import atomic_write_json
from sam3m4.predict import Predictor
from sam3m4.metrics.operating_point import SPLIT_RULE, calibration_split
from sam3m4.quantize.compare import miou_drop, pair_groups, scored_model
from sam3m4.quantize.xnnpack_int8 import calibration_inputs
from sam3m4.quantize.decision import DECISION_FILE, read_decision
from sam3m4.quantize.pipeline import build_mode, image_model, load_val
from sam3m4.quantize.stage import pinned_presence_threshold
from sam3m4.quantize.storage import load_quantized
from sam3m4.results import ResultsStore, schema
from sam3m4.results.schema import NOT_MEASURED
from sam3m4.results.store import NOT_MEASURABLE
from sam3m4.results.targets import load_targets


@dataclass(frozen=True)
class ValPairs:
    """What the deployed accuracy is scored on: Stage 4's val pairs (and val videos)."""

    val: object
    """:class:`~sam3m4.data.SacoImageDataset`; the first ``num_val`` pairs are scored."""
    num_val: int
    videos: object | None = None
    """:class:`~sam3m4.data.SacoVideoDataset` or None (no J&F)."""


@dataclass(frozen=True)
class EagerRef:
    """Host eager scores of one mode on the val pairs (what Stage 4 reports)."""

    miou: float
    presence_f1: float
    num_pairs: int
    how: str
    """Where the numbers come from (``decision.json`` of Stage 4, or scored here)."""


def _score_eager(model, mode: str, val, num_val: int, how: str) -> EagerRef:
    res = evaluate_pairs(val, Predictor(model), num=num_val, progress=False, desc=f"eager {mode}")
    return EagerRef(res.miou, res.presence.f1, res.num_pairs, how)


def eager_references(source: Checkpoint | str | Path, mode: str, val, num_val: int, *,
                     eager=None) -> dict[str, EagerRef]:
    """``{"fp16": EagerRef, mode: EagerRef}``: Stage 4's eager scores of fp16 and ``mode`` on these pairs.

    ``source``: the ``sam3m4 quantize --out`` folder (its ``decision.json`` when it has one with scores on as many
    pairs, else the ``<mode>/`` models scored here) or a checkpoint (an opened :class:`~sam3m4.checkpoint.Checkpoint`,
    or a file read once; quantized here). ``eager``: ``mode``'s model as Stage 4 scores it, when already loaded."""
    n = min(num_val, len(val))
    if not isinstance(source, Checkpoint):
        source = Path(source)
        source = Checkpoint.open(source) if source.is_file() else source  # fp16 and the mode: from one read
    folder = source if isinstance(source, Path) and source.is_dir() else None
    refs: dict[str, EagerRef] = {}
    if folder is not None and (folder / DECISION_FILE).is_file():
        decision = read_decision(folder / DECISION_FILE)
        for m in ("fp16", mode):
            got = decision.scores.get(m)
            if got is not None and got["num_pairs"] == n:
                refs[m] = EagerRef(got["miou"], got["presence_f1"], n,
                                   f"Stage 4 host eager score from {decision.path} (sha256 in the stage4 decision records)")
    for m in ("fp16", mode):
        if m in refs:
            continue
        if m == mode and eager is not None:
            model = eager
        elif folder is not None:
            model = scored_model(image_model(load_quantized(folder / m)[0]), m, val, n)
        else:
            model = scored_model(image_model(build_mode(source, m)[0]), m, val, n)
        refs[m] = _score_eager(model, m, val, n, f"host eager {m} scored here as Stage 4 scores it (no Stage 4 "
                                                  f"score on {n} pairs in {source})")
    return refs


@dataclass(frozen=True)
class ShippedPresence:
    """The presence threshold shipped with a mode's ``.pte``, and where it comes from."""

    threshold: float
    how: str
    """``fitted`` (Stage 4's operating point), ``fixed`` (the targets file pins it) or ``default`` (SAM 3's 0.5)."""
    source: str
    """Where it was read (for provenance)."""


def shipped_presence(source: str | Path, mode: str, pinned: float | None = None) -> ShippedPresence:
    """The presence threshold a ``.pte`` of ``mode`` ships with: ``pinned`` (the targets file's
    ``presence_threshold``) when given, else the mode's operating point in ``<source>/decision.json`` (Stage 4's
    fit), else SAM 3's 0.5 (no decision file, or one written before the fit)."""
    if pinned is not None:
        return ShippedPresence(float(pinned), "fixed", "the targets file's presence_threshold")
    source = Path(source)
    if source.is_dir() and (source / DECISION_FILE).is_file():
        decision = read_decision(source / DECISION_FILE)
        point = decision.presence.get(mode)
        if point is not None:
            return ShippedPresence(point.threshold, point.how, f"{decision.path} presence.{mode}")
        return ShippedPresence(DEFAULT_THRESHOLD, "default", f"{decision.path} has no presence.{mode}: SAM 3's 0.5")
    return ShippedPresence(DEFAULT_THRESHOLD, "default", f"no {DECISION_FILE} in {source}: SAM 3's 0.5")


def _record_presence(d: DeployedEval, val, shipped: ShippedPresence, put: Callable, how: str) -> str:
    """The ``.pte``'s presence calibration (ECE with its interval, best F1, F1 at the shipped threshold and at 0.5)
    and the shipped threshold's F1 gap, on the held-out pairs when the threshold was fitted (the same split as
    Stage 4: nothing the fit saw judges it). Returns a summary for the status line."""
    _, scores, labels = d.pairs.arrays()
    scores = np.clip(scores.astype(np.float64), 0.0, 1.0)
    cal = calibration(scores, labels, shipped.threshold)
    where = f"shipped threshold {shipped.threshold:.4f} ({shipped.how}: {shipped.source})"
    put(schema.PRESENCE_THRESHOLD, shipped.threshold, schema.FRACTION, f"{where}; {how}")
    put(schema.PRESENCE_F1_SHIPPED, d.presence_shipped.f1, schema.FRACTION,
        f"Presence F1 at the {where}, all {d.num_pairs} pairs (at 0.5: {d.presence.f1:.4f}); {how}")
    put(schema.MIOU_SHIPPED, d.miou_shipped, schema.FRACTION,
        f"mIoU with detections kept at the {where} (at 0.5: {d.miou:.4f}); {how}")
    boot = f"{cal.ece.n_boot} bootstrap resamples (seed {cal.ece.seed}), {cal.ece.level:.0%} interval"
    put(schema.PRESENCE_ECE, cal.ece.value, schema.FRACTION, f"15 equal-width bins; {boot} [{cal.ece.low:.4f}, "
                                                              f"{cal.ece.high:.4f}]; {how}")
    put(schema.PRESENCE_ECE_LOW, cal.ece.low, schema.FRACTION, f"{boot}; {how}")
    put(schema.PRESENCE_ECE_HIGH, cal.ece.high, schema.FRACTION, f"{boot}; {how}")
    put(schema.PRESENCE_F1_BEST, cal.curve.best_f1, schema.FRACTION,
        f"best over every threshold, at {cal.curve.best_threshold:.4f}; {how}")
    put(schema.PRESENCE_BEST_THRESHOLD, cal.curve.best_threshold, schema.FRACTION,
        f"the F1-best threshold nearest 0.5 (not gated: it moves with the sample); {how}")
    for metric, value in ((schema.PRESENCE_PLATEAU_LOW, cal.plateau[0]), (schema.PRESENCE_PLATEAU_HIGH, cal.plateau[1])):
        put(metric, value, schema.FRACTION, f"grid thresholds with F1 within {PLATEAU_TOL} of the best; {how}")
    held = np.ones(d.num_pairs, dtype=bool)
    part = f"all {d.num_pairs} pairs ({shipped.how} threshold: nothing fitted on them)"
    if shipped.how == "fitted":
        held = ~calibration_split(pair_groups(val, d.num_pairs))
        part = f"the {int(held.sum())} held-out pairs ({SPLIT_RULE})"
    target = load_targets().get("presence_threshold_on_plateau")
    if held.any() and target is not None:
        outcome, check = plateau_gate(scores[held], labels[held], target, threshold=shipped.threshold,
                                      resolve=shipped.how != "fixed")
        prov = (f"best Presence F1 {check.best_f1:.4f} (at {check.best_threshold:.4f}) - F1 {check.f1:.4f} at the "
                f"{where} on {part}; {how}")
        if outcome.outcome == NOT_MEASURED:
            put(schema.PRESENCE_F1_GAP, None, schema.FRACTION, prov, outcome=NOT_MEASURABLE, note=outcome.reason)
        else:
            put(schema.PRESENCE_F1_GAP, check.gap, schema.FRACTION, prov)
    return (f"presence threshold {shipped.threshold:.3f} ({shipped.how}): F1 {d.presence_shipped.f1:.4f} "
            f"(at 0.5 {d.presence.f1:.4f}, best {cal.curve.best_f1:.4f}), ECE {cal.ece.value:.4f}")


def score_case(result, student, tracker, *, mode: str, val, num_val: int, videos, refs: dict[str, EagerRef],
               out_dir: str | Path, record: Callable, drop_basis: str = "absolute",
               echo: Callable[[str], None] = print, shipped: ShippedPresence | None = None) -> DeployedEval:
    """Score ``result``'s ``.pte`` (an :class:`~sam3m4.export.export.ExportResult` that runs here) on the val pairs
    and videos, compare it with ``refs`` and record everything (``record``: ``ResultsStore.record``'s keywords).
    ``out_dir``: the run's folder (``saco/`` and ``deployed/`` files go under it). ``shipped``: the presence
    threshold the ``.pte`` ships with (:func:`shipped_presence`; default SAM 3's 0.5)."""
    shipped = shipped or ShippedPresence(DEFAULT_THRESHOLD, "default", "SAM 3's 0.5 (no operating point given)")
    subject = schema.export_subject(result.backend, result.mode)
    name = subject.replace("/", "_")
    pte = PteStudent(result.path, image_model(student).image_size)
    state = tracker.init_state(1) if tracker is not None else None
    d = evaluate_deployed(pte, val, num_val, videos=videos, tracker_state=state, saco_out=Path(out_dir) / "saco",
                          name=f"pte_{name}", threshold=shipped.threshold)
    how = (f"{result.backend} .pte through the ExecuTorch runtime (encode_text + forward), the project's Predictor "
           f"and metric code, first {d.num_pairs} val pairs of {val.json_path} (as Stage 4)")
    pairs_file = atomic_write_json(Path(out_dir) / "deployed" / f"{name}.json",
                                   {"pte": str(result.path), "sha256": d.sha256, "num_pairs": d.num_pairs,
                                    "miou": d.miou, "presence_f1": d.presence.f1, "presence_threshold": d.threshold,
                                    "miou_shipped": d.miou_shipped, "presence_f1_shipped": d.presence_shipped.f1,
                                    "pairs": d.pairs.to_dict()}, indent=1)

    def put(metric, value, unit, provenance, **kw):
        record(stage=schema.STAGE5, subject=subject, metric=metric, value=value, unit=unit, provenance=provenance,
               artifact=result.path, **kw)

    put(schema.MIOU, d.miou, schema.FRACTION, f"detections kept at 0.5; {how}")
    put(schema.PRESENCE_F1, d.presence.f1, schema.FRACTION, f"at 0.5; {how}",
        note=f"per-pair presence scores and labels: {pairs_file}")
    presence_line = _record_presence(d, val, shipped, put, how)
    if d.saco is not None:
        for metric in saco.IMAGE_HEADLINE:
            put(metric, d.saco[metric], schema.FRACTION, f"SAM 3's CGF1Evaluator (sam3 {saco.SAM3_VERSION}) on "
                                                         f"{d.saco_preds.name}; {how}")
    else:
        for metric in (schema.SACO_CGF1, schema.SACO_IL_MCC):
            put(metric, None, schema.FRACTION, how, outcome=NOT_MEASURABLE, note=f"not measured: {d.saco_reason}")
    if d.jf is not None:
        put(schema.JF, d.jf, schema.FRACTION, f"{result.backend} .pte track step through the ExecuTorch runtime, "
                                              f"the project's VideoPredictor and DAVIS J&F on {len(videos)} val "
                                              f"videos ({d.num_videos} objects)")
    elif tracker is not None:
        put(schema.JF, None, schema.FRACTION, how, outcome=NOT_MEASURABLE, note=f"not measured: {d.jf_reason}")
    fp16, own = refs["fp16"], refs[mode]
    for ref in (fp16, own):
        if ref.num_pairs != d.num_pairs:
            raise ValueError(f"eager reference on {ref.num_pairs} pairs, the .pte on {d.num_pairs}")
    drop = miou_drop(fp16.miou, d.miou, drop_basis)
    put(schema.DEPLOYED_MIOU_DROP, drop, schema.POINTS,
        f"fp16 eager mIoU {fp16.miou:.4f} ({fp16.how}) - .pte mIoU {d.miou:.4f} ({drop_basis}); {how}")
    gap = abs(d.miou - own.miou) * 100
    put(schema.EXPORT_MIOU_GAP, gap, schema.POINTS,
        f"|.pte mIoU {d.miou:.4f} - {mode} eager mIoU {own.miou:.4f}| ({own.how}); .pte Presence F1 "
        f"{d.presence.f1:.4f} vs eager {own.presence_f1:.4f}; {how}")
    total = sum(d.seconds.values())
    put(schema.DEPLOYED_EVAL_S, total, schema.SECONDS, "wall seconds on this host: " + ", ".join(
        f"{k} {v:.1f}" for k, v in d.seconds.items()) + f"; {d.num_pairs} pairs")
    cg = f", cgF1 {d.saco[schema.SACO_CGF1]:.3f}" if d.saco else ""
    jf = f", J&F {d.jf:.3f}" if d.jf is not None else ""
    echo(f"deployed {subject}: mIoU {d.miou:.4f} (eager {mode} {own.miou:.4f}, fp16 {fp16.miou:.4f}), Presence F1 "
         f"{d.presence.f1:.4f}{cg}{jf}; {presence_line}; {d.num_pairs} pairs in {total:.1f} s")
    return d


class CaseScorer:
    """A ``.pte`` measured here against Stage 4's val pairs: the agreement with eager, then the deployed accuracy
    (:mod:`.accuracy`). The pairs are loaded once, on first use."""

    def __init__(self, student, tracker, mode: str, source: Checkpoint | Path, meta: dict, ckpt, data, num_val: int,
                 pairs: ValPairs | None, store: ResultsStore):
        self.student, self.tracker, self.mode, self.source = student, tracker, mode, source
        self.meta, self.ckpt, self.data, self.num_val, self.store = meta, ckpt, data, num_val, store
        self._pairs, self._eager = pairs, None

    def pairs(self) -> ValPairs:
        if self._pairs is None:
            self._pairs = load_pairs(self.meta, self.ckpt, self.data, self.num_val)
        return self._pairs

    def eager(self):
        """The mode's model as Stage 4 scores it (XNNPACK modes: the PT2E-converted image path)."""
        if self._eager is None:
            pairs = self.pairs()
            self._eager = scored_model(self.student, self.mode, pairs.val, pairs.num_val)
        return self._eager

    def agreement(self, result):
        pte = PteStudent(result.path, image_model(self.student).image_size)
        return val_agreement(pte, self.eager(), self.pairs().val, self.pairs().num_val)

    def score(self, result, record: Callable, say: Callable[[str], None]):
        """The :class:`~sam3m4.export.deployed.DeployedEval`, or False when it failed (recorded where)."""
        subject = schema.export_subject(result.backend, result.mode)
        try:
            pairs = self.pairs()
            refs = eager_references(self.source, self.mode, pairs.val, pairs.num_val, eager=self.eager())
            shipped = shipped_presence(self.source, self.mode, pinned_presence_threshold())
            return score_case(result, self.student, self.tracker, mode=self.mode, val=pairs.val,
                              num_val=pairs.num_val, videos=pairs.videos, refs=refs, out_dir=self.store.dir,
                              record=record, echo=say, shipped=shipped)
        except Exception as err:  # noqa: BLE001  (recorded where it stopped, then reported)
            error = f"{type(err).__name__}: {err}"[:800]
            for metric in (schema.DEPLOYED_MIOU_DROP, schema.EXPORT_MIOU_GAP):
                record(stage=schema.STAGE5, subject=subject, metric=metric, value=None, failed_stage="run",
                       artifact=result.path, note=f"the deployed evaluation failed on this host: {error}")
            say(f"sam3m4 export: {subject}: the deployed evaluation failed: {error}")
            return False


def export_calibration(student, tracker, pairs: ValPairs) -> dict:
    """``{method: [input tuple, ...]}`` calibrating the static int8 activations of an XNNPACK integer export on
    Stage 4's val pairs, the same images :func:`sam3m4.quantize.compare.scored_model` calibrates on: ``forward``
    (:func:`sam3m4.quantize.xnnpack_int8.calibration_inputs`) and, with a tracker, ``track`` (the same frames and
    prompts from the tracker's initial memory)."""
    forward = calibration_inputs(student, pairs.val, pairs.num_val)
    out = {"forward": forward}
    if tracker is not None:
        out["track"] = [(*inputs, tracker.init_state(1).detach()) for inputs in forward]
    return out


def load_pairs(meta: dict, ckpt, data, num_val: int) -> ValPairs:
    """Stage 4's val pairs: ``data``, else the data root of the checkpoint the quantized model came from."""
    source = ckpt or meta.get("source")
    if not source and data is None:
        raise ValueError("the quantized model does not name its source checkpoint: pass --data")
    if data is not None and source is None:
        root = Path(data)
        videos = root / "saco_video" / "val.json"
        return ValPairs(SacoImageDataset(root / "saco_image" / "val.json"), num_val,
                        SacoVideoDataset(videos) if videos.is_file() else None)
    val, videos, _ = load_val(source, Path(data) if data else None)
    return ValPairs(val, num_val, videos)

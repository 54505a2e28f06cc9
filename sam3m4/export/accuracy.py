"""Stage 5's deployed accuracy of one exported case: score the ``.pte``, compare it with eager, record.

    refs = eager_references("checkpoints/quantized", "int8_int4", val, 200, eager=scored_model(student, mode))
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
and ``deployed_eval_s``. The per-pair presence scores and labels go to ``<saco_out>/../deployed/<backend>_<mode>.json``
(``pairs`` of :class:`~sam3m4.export.deployed.PairScores`) for a calibration of the shipped file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sam3m4.checkpoint import Checkpoint
from sam3m4.data import SacoImageDataset, SacoVideoDataset
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval import saco
from sam3m4.export.deployed import DeployedEval, PteStudent, evaluate_deployed, val_agreement
from sam3m4.fileio import atomic_write_json
from sam3m4.predict import Predictor
from sam3m4.quantize.compare import miou_drop, scored_model
from sam3m4.quantize.decision import DECISION_FILE, read_decision
from sam3m4.quantize.pipeline import build_mode, image_model, load_val
from sam3m4.quantize.storage import load_quantized
from sam3m4.results import ResultsStore, schema
from sam3m4.results.store import NOT_MEASURABLE


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
            model = scored_model(image_model(load_quantized(folder / m)[0]), m)
        else:
            model = scored_model(image_model(build_mode(source, m)[0]), m)
        refs[m] = _score_eager(model, m, val, n, f"host eager {m} scored here as Stage 4 scores it (no Stage 4 "
                                                  f"score on {n} pairs in {source})")
    return refs


def score_case(result, student, tracker, *, mode: str, val, num_val: int, videos, refs: dict[str, EagerRef],
               out_dir: str | Path, record: Callable, drop_basis: str = "absolute",
               echo: Callable[[str], None] = print) -> DeployedEval:
    """Score ``result``'s ``.pte`` (an :class:`~sam3m4.export.export.ExportResult` that runs here) on the val pairs
    and videos, compare it with ``refs`` and record everything (``record``: ``ResultsStore.record``'s keywords).
    ``out_dir``: the run's folder (``saco/`` and ``deployed/`` files go under it)."""
    subject = schema.export_subject(result.backend, result.mode)
    name = subject.replace("/", "_")
    pte = PteStudent(result.path, image_model(student).image_size)
    state = tracker.init_state(1) if tracker is not None else None
    d = evaluate_deployed(pte, val, num_val, videos=videos, tracker_state=state, saco_out=Path(out_dir) / "saco",
                          name=f"pte_{name}")
    how = (f"{result.backend} .pte through the ExecuTorch runtime (encode_text + forward), the project's Predictor "
           f"and metric code, first {d.num_pairs} val pairs of {val.json_path} (as Stage 4)")
    pairs_file = atomic_write_json(Path(out_dir) / "deployed" / f"{name}.json",
                                   {"pte": str(result.path), "sha256": d.sha256, "num_pairs": d.num_pairs,
                                    "miou": d.miou, "presence_f1": d.presence.f1, "pairs": d.pairs.to_dict()}, indent=1)

    def put(metric, value, unit, provenance, **kw):
        record(stage=schema.STAGE5, subject=subject, metric=metric, value=value, unit=unit, provenance=provenance,
               artifact=result.path, **kw)

    put(schema.MIOU, d.miou, schema.FRACTION, how)
    put(schema.PRESENCE_F1, d.presence.f1, schema.FRACTION, how, note=f"per-pair presence scores and labels: {pairs_file}")
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
         f"{d.presence.f1:.4f}{cg}{jf}; {d.num_pairs} pairs in {total:.1f} s")
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
            self._eager = scored_model(self.student, self.mode)
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
            return score_case(result, self.student, self.tracker, mode=self.mode, val=pairs.val,
                              num_val=pairs.num_val, videos=pairs.videos, refs=refs, out_dir=self.store.dir,
                              record=record, echo=say)
        except Exception as err:  # noqa: BLE001  (recorded where it stopped, then reported)
            error = f"{type(err).__name__}: {err}"[:800]
            for metric in (schema.DEPLOYED_MIOU_DROP, schema.EXPORT_MIOU_GAP):
                record(stage=schema.STAGE5, subject=subject, metric=metric, value=None, failed_stage="run",
                       artifact=result.path, note=f"the deployed evaluation failed on this host: {error}")
            say(f"sam3m4 export: {subject}: the deployed evaluation failed: {error}")
            return False


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

"""Deployed accuracy: score an exported ``.pte`` through the ExecuTorch runtime with the project's own metric code.

    pte = PteStudent("outputs/export/sam3m4_tiny_xnnpack_int8_int4.pte", image_size=224)
    res = evaluate_deployed(pte, val, num_val=200, videos=val_videos, tracker_state=tracker.init_state(1),
                            saco_out="reports/demo/saco", name="xnnpack_int8_int4")
    res.miou, res.presence.f1, res.saco, res.jf, res.sha256, res.pairs.presence   # per-pair scores kept
    agree = val_agreement(pte, scored_model(student, mode, val, 200), val, num_val=200)  # on val pairs eager keeps

What is scored is the file that ships: :class:`PteStudent` runs the ``.pte``'s ``encode_text`` and ``forward``
methods (``executorch.runtime``) behind the interface :class:`sam3m4.predict.Predictor` drives (``encode_text``,
``encode_image``, ``decode``, ``image_size``), so the same pre-processing, prompt cache, keep rule (score >= 0.5)
and resizing as every eager number apply; :class:`PteTracker` does the same for the ``track`` method behind
:class:`sam3m4.predict.VideoPredictor`. Metrics, on the same first ``num_val`` val pairs as Stage 4:

* mIoU, Presence F1 (:func:`sam3m4.eval.image.evaluate_pairs`), and per pair the presence probability, the best
  query score and the label (:class:`PairScores`: what a calibration of the shipped file needs);
* SA-Co cgF1 / IL_MCC / pmF1 / IL_F1 through Meta's evaluator (:func:`sam3m4.eval.saco.score_image`), when the
  ``sam3`` package is installed (else :attr:`DeployedEval.saco_reason` says why not);
* DAVIS J&F on the val videos through the exported ``track`` step (when the program has one).

Only programs whose delegates the pip runtime has run here (XNNPACK, portable CPU ops); Core ML needs Apple
hardware, QNN a Snapdragon phone. Importable anywhere: executorch is imported when a program is loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sam3m4.eval import saco
from sam3m4.eval.image import evaluate_pairs
from sam3m4.eval.saco_format import ImagePredictions, VideoPredictions, category_ids
from sam3m4.eval.video import evaluate_videos
from sam3m4.export.runtime import KEEP_SCORE, load_program, mask_agreement
from sam3m4.metrics import MIoUMeter, PresenceMeter, PresenceResult, is_present
from sam3m4.models.student import StudentOutput
from sam3m4.models.text_encoder import PromptEmbedding
from sam3m4.models.preprocess import to_pixels
from sam3m4.predict import Predictor, VideoPredictor
from sam3m4.results.store import sha256_file

__all__ = ["PteStudent", "PteTracker", "PairScores", "DeployedEval", "Agreement", "evaluate_deployed",
           "val_agreement"]


class _Methods:
    """The methods of one exported program: a multi-method ``.pte``, or the split layout
    (``<stem>.pte`` = forward, ``<stem>.<method>.pte`` for the others, :func:`sam3m4.export.export.export_pte`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.programs = {self.path: load_program(self.path)}
        self._loaded: dict[str, object] = {}

    def names(self) -> set[str]:
        names = set(self.programs[self.path].method_names)
        for method in ("encode_text", "track"):
            if method not in names and self.path.with_name(f"{self.path.stem}.{method}.pte").is_file():
                names.add(method)
        return names

    def run(self, method: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if method not in self._loaded:
            path = self.path
            if method not in self.programs[path].method_names:
                path = self.path.with_name(f"{self.path.stem}.{method}.pte")
                if not path.is_file():
                    raise RuntimeError(f"{self.path}: the program has no {method!r} method")
                self.programs.setdefault(path, load_program(path))
            self._loaded[method] = self.programs[path].load_method(method)
        return [t.float() if t.is_floating_point() else t
                for t in self._loaded[method].execute([x.contiguous() for x in inputs])]


class PteStudent:
    """An exported image path with the interface :class:`~sam3m4.predict.Predictor` drives.

    ``encode_text``: input_ids (1,T) int64, attention_mask (1,T) -> the ``.pte``'s prompt (tokens (1,T,D), mask
    (1,T) float); ``encode_image`` only carries the pixels (the ``forward`` method runs encoder and decoder in one
    call); ``decode`` runs ``forward`` -> :class:`~sam3m4.models.student.StudentOutput` (mask logits (1,Q,S/4,S/4),
    query logits (1,Q), boxes (1,Q,4) in [0,1], presence logit (1,1)). Batch 1, CPU. ``image_size`` (S): the
    preset's input size (the program's static shape)."""

    training = False

    def __init__(self, path: str | Path, image_size: int, *, methods: _Methods | None = None):
        self.methods = methods or _Methods(path)
        self.path = self.methods.path
        self.image_size = int(image_size)

    def eval(self) -> "PteStudent":
        return self

    def to(self, device) -> "PteStudent":
        if torch.device(device).type != "cpu":
            raise ValueError(f"{self.path}: the ExecuTorch runtime here runs on the CPU, not {device}")
        return self

    @torch.no_grad()
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptEmbedding:
        tokens, mask = self.methods.run("encode_text", [input_ids.long(), attention_mask.long()])
        return PromptEmbedding(tokens, mask)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pixel_values

    @torch.no_grad()
    def decode(self, pixel_values: torch.Tensor, prompt: PromptEmbedding) -> StudentOutput:
        masks, logits, boxes, presence, semantic = self.methods.run(
            "forward", [pixel_values.float(), prompt.tokens.float(), prompt.mask.float()])
        return StudentOutput(mask_logits=masks, query_logits=logits, boxes_xyxy=boxes, presence_logit=presence,
                             semantic_logits=semantic, neck_features=(), query_embeddings=torch.empty(0))


class PteTracker:
    """An exported ``track`` step with the interface :class:`~sam3m4.predict.VideoPredictor` drives.

    ``init_state``: (1, L+Q, D), the eager tracker's learned initial latents + zero query states (the app ships the
    same tensor with the ``.pte``); ``track(pixels, prompt_tokens, prompt_mask, state)`` -> mask logits
    (1,Q,S/4,S/4), scores (1,Q), new state."""

    training = False

    def __init__(self, student: PteStudent, init_state: torch.Tensor):
        if "track" not in student.methods.names():
            raise ValueError(f"{student.path}: the program has no 'track' method (exported without a tracker)")
        self.student, self._state = student, init_state.detach().float().contiguous()

    def eval(self) -> "PteTracker":
        return self

    def to(self, device) -> "PteTracker":
        self.student.to(device)
        return self

    def init_state(self, batch: int = 1) -> torch.Tensor:
        if batch != 1:
            raise ValueError("the exported track step has batch 1")
        return self._state.clone()

    @torch.no_grad()
    def track(self, pixel_values, prompt_tokens, prompt_mask, state):
        masks, scores, new_state = self.student.methods.run(
            "track", [pixel_values.float(), prompt_tokens.float(), prompt_mask.float(), state.float()])
        return masks, scores, new_state


@dataclass
class PairScores:
    """Per val pair, in order: what a presence calibration of the scored model needs."""

    pair_ids: list[int] = field(default_factory=list)
    presence: list[float] = field(default_factory=list)
    """sigmoid(presence logit) in [0, 1]."""
    max_score: list[float] = field(default_factory=list)
    """The best query's score sigmoid(query) x sigmoid(presence) in [0, 1] (a pair is predicted present when
    it is >= 0.5)."""
    present: list[bool] = field(default_factory=list)
    """Ground truth: the phrase has at least one instance in the image."""

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(presence (N,) float32, max_score (N,) float32, present (N,) bool)."""
        return (np.asarray(self.presence, np.float32), np.asarray(self.max_score, np.float32),
                np.asarray(self.present, bool))

    def to_dict(self) -> dict:
        return {"pair_ids": self.pair_ids, "presence": self.presence, "max_score": self.max_score,
                "present": self.present}


class _Scored:
    """``sample -> (masks, scores)`` through a :class:`~sam3m4.predict.Predictor`, keeping :class:`PairScores`."""

    def __init__(self, predictor: Predictor):
        self.predictor, self.pairs = predictor, PairScores()

    def __call__(self, sample):
        pred = self.predictor.predict(sample.image, sample.phrase)
        self.pairs.pair_ids.append(int(sample.pair_id))
        self.pairs.presence.append(float(pred.presence))
        self.pairs.max_score.append(float(pred.all_scores.max()) if pred.all_scores.size else 0.0)
        self.pairs.present.append(bool(sample.present))
        return pred.masks, pred.scores


class _AtThreshold:
    """An :func:`~sam3m4.eval.image.evaluate_pairs` sink scoring the pairs again with detections kept at
    ``threshold`` (the shipped presence threshold), then passing them on to ``then`` (the SA-Co writer)."""

    def __init__(self, threshold: float, then=None):
        self.threshold, self.then = float(threshold), then
        self.miou, self.presence = MIoUMeter(), PresenceMeter()

    def __call__(self, sample, masks: np.ndarray, scores: np.ndarray) -> None:
        self.miou.add(masks[scores >= self.threshold], sample.masks)
        self.presence.add(is_present(scores, self.threshold), bool(sample.present))
        if self.then is not None:
            self.then(sample, masks, scores)


@dataclass
class DeployedEval:
    """One ``.pte`` scored on val pairs through the ExecuTorch runtime."""

    path: Path
    sha256: str
    """sha256 of the ``.pte`` scored (the forward file in the split layout)."""
    num_pairs: int
    miou: float
    """Mean union IoU over the pairs, [0, 1]."""
    presence: PresenceResult
    pairs: PairScores
    saco: dict[str, float] | None = None
    """SA-Co headline metrics (``saco_cgf1``, ``saco_il_mcc``, ``saco_pmf1``, ``saco_il_f1``); None: not measured."""
    saco_reason: str = ""
    """Why :attr:`saco` is None (Meta's ``sam3`` package missing, no output folder)."""
    saco_preds: Path | None = None
    """The predictions file Meta's evaluator scored."""
    jf: float | None = None
    """DAVIS J&F-Mean of the ``track`` step on the val videos; None: not measured (:attr:`jf_reason`)."""
    jf_reason: str = ""
    num_videos: int = 0
    """Objects (masklets) the J&F averages over."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds per part: ``image`` (runtime + metrics), ``saco`` (Meta's evaluator), ``video``."""
    threshold: float = KEEP_SCORE
    """The shipped presence threshold (Stage 4's operating point for the mode; SAM 3's 0.5 by default)."""
    miou_shipped: float | None = None
    """mIoU with detections kept at :attr:`threshold` (:attr:`miou` keeps SAM 3's 0.5, what the gates compare)."""
    presence_shipped: PresenceResult | None = None
    """Presence F1 etc. at :attr:`threshold`."""


def evaluate_deployed(model: PteStudent, val, num_val: int, *, videos=None, tracker_state: torch.Tensor | None = None,
                      saco_out: str | Path | None = None, name: str = "pte", progress: bool = False,
                      threshold: float = KEEP_SCORE) -> DeployedEval:
    """Score ``model`` on the first ``num_val`` pairs of ``val`` (a :class:`~sam3m4.data.SacoImageDataset`).

    ``videos`` (a :class:`~sam3m4.data.SacoVideoDataset`) and ``tracker_state`` ((1, L+Q, D), the eager tracker's
    ``init_state(1)``): also J&F through the ``track`` method, when the program has it. ``saco_out``: folder for
    the SA-Co files (``<name>_image_preds.json`` ...); None skips Meta's evaluator. ``threshold``: the presence
    threshold shipped with the ``.pte`` (the predictor keeps detections down to it): mIoU / Presence F1 are
    reported at it (:attr:`DeployedEval.miou_shipped`) and at SAM 3's 0.5 (:attr:`DeployedEval.miou`, which the
    gates compare with Stage 4's eager numbers), in one pass."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    t0 = time.perf_counter()
    scored = _Scored(Predictor(model, threshold=min(KEEP_SCORE, threshold)))
    writer = ImagePredictions(category_ids(val.json_path))
    shipped = _AtThreshold(threshold, then=writer)
    res = evaluate_pairs(val, scored, num=num_val, threshold=KEEP_SCORE, progress=progress,
                         desc=f"eval {model.path.name}", sink=shipped)
    out = DeployedEval(path=model.path, sha256=sha256_file(model.path), num_pairs=res.num_pairs, miou=res.miou,
                       presence=res.presence, pairs=scored.pairs, seconds={"image": time.perf_counter() - t0},
                       threshold=float(threshold), miou_shipped=shipped.miou.result().miou,
                       presence_shipped=shipped.presence.result())
    t0 = time.perf_counter()
    reason = saco.available() if saco_out is not None else "no SA-Co output folder given"
    if reason:
        out.saco_reason = reason
    else:
        result, out.saco_preds = saco.score_image(val.json_path, writer, saco_out, name)
        out.saco = saco.headline(result, "image")
    out.seconds["saco"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if videos is None or tracker_state is None:
        out.jf_reason = "no val videos" if videos is None else "no tracker initial state"
    elif "track" not in model.methods.names():
        out.jf_reason = "the program has no track method (exported from an image student)"
    else:
        jf = evaluate_videos(videos, VideoPredictor(PteTracker(model, tracker_state)), progress=progress)
        out.jf, out.num_videos = jf.jf_mean, jf.num_objects
    out.seconds["video"] = time.perf_counter() - t0
    return out


@dataclass
class Agreement:
    """``.pte`` vs eager ``forward`` on real val pairs, each with the same pixels and the same (eager) prompt."""

    mask_iou: float | None
    """Mean over the pairs used of the IoU of (mask_logits > 0) over the queries eager keeps (score >= 0.5);
    None when eager keeps no query on any of the pairs looked at."""
    pairs: int
    """Pairs used (eager kept at least one query)."""
    looked_at: int
    """Pairs run to find them."""
    queries: int
    """Kept queries averaged over, in total."""

    @property
    def provenance(self) -> str:
        return (f"ExecuTorch runtime vs torch eager forward on {self.pairs} val pairs where eager keeps a query "
                f"(score >= {KEEP_SCORE}; {self.queries} kept queries; first {self.looked_at} val pairs looked at), "
                f"same pixels and eager prompt; IoU of mask_logits > 0 over the kept queries")


@torch.no_grad()
def val_agreement(model: PteStudent, eager, val, num_val: int, max_pairs: int = 16) -> Agreement:
    """:class:`Agreement` of ``model`` with ``eager`` on up to ``max_pairs`` of the first ``num_val`` val pairs where
    eager keeps a query. ``eager``: what Stage 4 scores for the mode (a student, or for the XNNPACK modes the
    PT2E-converted image path, :func:`sam3m4.quantize.compare.scored_model`); anything with ``encode_text``,
    ``encode_image`` and ``decode``. Both get the same pixels and eager's prompt, so only ``forward`` is compared."""
    predictor = Predictor(eager)
    ious, kept_total, looked = [], 0, 0
    for i in range(min(num_val, len(val))):
        if len(ious) >= max_pairs:
            break
        sample = val[i]
        looked += 1
        prompt = predictor.prompt(sample.phrase)
        px = to_pixels([sample.image], model.image_size)  # (1, 3, S, S)
        ref = eager.decode(eager.encode_image(px), prompt)
        scores = ref.scores.float()  # (1, Q)
        kept = int((scores[0] >= KEEP_SCORE).sum())
        if not kept:
            continue
        iou, _ = mask_agreement(model.decode(px, prompt).mask_logits, ref.mask_logits.float(), scores)
        ious.append(iou)
        kept_total += kept
    return Agreement(mask_iou=float(np.mean(ious)) if ious else None, pairs=len(ious), looked_at=looked,
                     queries=kept_total)

"""SA-Co official metrics through Meta's own evaluators (the ``sam3`` package, PyPI 0.1.4).

* image: ``sam3.eval.cgf1_eval.CGF1Evaluator`` - cgF1 = positive-micro F1 (pmF1) x IL_MCC, averaged over IoU
  0.5:0.95; with several GT files (SA-Co/Gold's annotators a, b, c) each pair is scored against each and the
  best is kept (the "oracle"); only pairs with ``is_instance_exhaustive`` in every file count.
* video: ``sam3.eval.saco_veval_eval.VEvalEvaluator`` - mAP, phrase AP, TETA, phrase HOTA (pHOTA) and the video
  cgF1 family; ``{"dataset_results": {...}, "video_np_results": [...]}``.

Nothing is re-implemented here: this module checks the files (:mod:`sam3m4.eval.saco_format`), calls the
evaluators, keeps their key names and values, and picks the headline numbers. The evaluators print a lot;
their output goes to ``log`` (default: discarded). ``import sam3`` loads SAM 3's model code as well (torch,
timm, iopath, psutil; ~15 s the first time).

    out = evaluate_image(["gold_a.json", "gold_b.json", "gold_c.json"], "preds.json")
    out["cgF1_eval_segm_cgF1"]

Project Presence F1 vs official IL_F1: the same rule (a pair is predicted present when any detection scores
>= 0.5), so on the same predictions they agree to the evaluator's 1e-6 smoothing, except where the official
definition differs: it counts only exhaustively annotated pairs, takes per pair the best of several GT files,
and treats a pair whose only GT instances are crowd (``iscrowd``) as negative.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from sam3m4.errors import DataFormatError, Sam3m4Error
from sam3m4.eval.saco_format import (check_image_gt, check_image_preds, check_same_pairs, check_video_gt,
                                     check_video_preds, image_gt_subset, video_gt_subset, write_json)
from sam3m4.results import schema

SAM3_VERSION = "0.1.4"
INSTALL_HINT = (f"pip install --no-deps sam3=={SAM3_VERSION} psutil iopath einops 'numpy<2.4' "
                "(tooling/setup.sh does it; see docs/metrics.md, 'SA-Co official metrics')")

# headline numbers: results-store metric -> (official key, label); image keys from CGF1Evaluator.evaluate,
# video keys from VEvalEvaluator's dataset_results
IMAGE_HEADLINE = {
    "saco_cgf1": ("cgF1_eval_segm_cgF1", "cgF1"),
    "saco_il_mcc": ("cgF1_eval_segm_IL_MCC", "IL_MCC"),
    "saco_pmf1": ("cgF1_eval_segm_positive_micro_F1", "pmF1"),
    "saco_il_f1": ("cgF1_eval_segm_IL_F1", "IL_F1"),
}
VIDEO_HEADLINE = {
    "saco_video_cgf1": ("video_mask_demo_cgf1_micro_50_95", "cgF1"),
    "saco_video_phota": ("video_mask_all_phrase_HOTA", "pHOTA"),
    "saco_video_il_mcc": ("video_mask_demo_ilmcc_50_95", "IL_MCC"),
    "saco_video_pmf1": ("video_mask_demo_positive_micro_f1_50_95", "pmF1"),
    "saco_video_teta": ("video_mask_teta", "TETA"),
    "saco_video_map": ("video_mask_mAP_50_95", "mAP"),
}


# what the results store keeps (the report's "SA-Co official metrics" table)
RECORDED = (schema.SACO_CGF1, schema.SACO_IL_MCC, schema.SACO_PMF1, schema.SACO_IL_F1,
            schema.SACO_VIDEO_CGF1, schema.SACO_VIDEO_PHOTA, schema.SACO_VIDEO_IL_MCC, schema.SACO_VIDEO_PMF1)

# SAM 3's published figures, on other datasets than the val split scored here (fractions, as recorded)
PAPER = "SAM 3: Segment Anything with Concepts (Carion et al., arXiv 2511.16719, 2025)"
PUBLISHED = [
    {"label": "SAM 3 (published), SA-Co/Gold", "dataset": "SA-Co/Gold (7 subsets, oracle over 3 annotators)",
     "source": f"{PAPER}, Table 1 (image PCS)",
     "values": {"saco_cgf1": 0.541, "saco_il_mcc": 0.82, "saco_pmf1": 0.661}},
    {"label": "SAM 3 (published), SA-V test", "dataset": "SA-Co/VEval SA-V test (text-prompted video)",
     "source": f"{PAPER}, video PCS table",
     "values": {"saco_video_cgf1": 0.303, "saco_video_phota": 0.580}},
]


class Sam3Missing(Sam3m4Error):
    """Meta's ``sam3`` package (or a package it needs) is not installed; the message says how to install it."""


def _import(module: str, *, numpy_below_2_4: bool = False):
    """Import a ``sam3.eval`` module quietly (its model code prints and warns on import)."""
    try:
        if numpy_below_2_4 and tuple(int(x) for x in np.__version__.split(".")[:2]) >= (2, 4):
            raise Sam3Missing(f"numpy {np.__version__}: SAM 3's video evaluator needs numpy < 2.4 "
                              f"(`int(np.where(...)[0])` fails on 2.4); {INSTALL_HINT}")
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as exc:
        raise Sam3Missing(f"SA-Co official metrics need Meta's sam3 {SAM3_VERSION} ({exc}); {INSTALL_HINT}") from None


def available() -> str | None:
    """None when the official evaluators can run here, else the reason (one line)."""
    try:
        _import("sam3.eval.cgf1_eval")
        _import("sam3.eval.saco_veval_eval", numpy_below_2_4=True)
    except Sam3Missing as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def _quiet(log):
    """Route the evaluator's prints and progress bars to ``log`` (a text file object) or nowhere; no warnings."""
    sink = log or io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


def _run(what: str, fn, *args):
    """Run an evaluator; an exception inside it (an assertion, a KeyError) becomes one line naming ``what``."""
    try:
        return fn(*args)
    except (AssertionError, KeyError, IndexError, TypeError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataFormatError(f"{what}: SAM 3's evaluator rejected it: {type(exc).__name__}"
                              f"{': ' + text[:200] if text else ''}") from exc


def evaluate_image(gt_paths, pred_path, *, log=None, threshold: float = 0.5) -> dict[str, float]:
    """Official image metrics of ``pred_path`` against one or several GT files (the oracle over annotators).

    Returns the dict ``CGF1Evaluator.evaluate`` returns (keys ``cgF1_eval_segm_*``). Checks every file first.
    ``threshold``: the score a detection needs to count (SAM 3's 0.5); set on each of the evaluator's own
    ``CGF1Eval`` objects (their ``threshold`` argument), so the file must hold the detections down to it.
    """
    gt_paths = [Path(p) for p in ([gt_paths] if isinstance(gt_paths, (str, os.PathLike)) else gt_paths)]
    gts = [check_image_gt(p) for p in gt_paths]
    check_same_pairs(gts)
    if not set.intersection(*(g.exhaustive for g in gts)):
        raise DataFormatError(f"{gt_paths[0]}: images: no pair has is_instance_exhaustive true in every GT file "
                              "(the official evaluator scores only those)")
    check_image_preds(pred_path, gts[0])
    cgf1 = _import("sam3.eval.cgf1_eval")
    with _quiet(log):
        evaluator = _run(f"{gt_paths[0]}", cgf1.CGF1Evaluator, [str(p) for p in gt_paths], "segm")
        for coco_eval in evaluator.coco_evals:
            coco_eval.threshold = float(threshold)
        return _run(f"{pred_path}", evaluator.evaluate, str(pred_path))


def evaluate_video(gt_path, pred_path, *, log=None) -> dict:
    """Official video metrics: ``{"dataset_results": {...}, "video_np_results": [...]}`` as
    ``VEvalEvaluator.run_eval`` returns them.

    An empty prediction file is an error (the evaluator needs one masklet to load the file). When no masklet
    has a score >= 0.5 and a non-empty frame, SAM 3's TETA code cannot load the (then empty) set: TETA is left
    out of the evaluator list (its keys are missing, a line says so in ``log``); the others score it as usual.
    """
    gt = check_video_gt(gt_path)
    preds = check_video_preds(pred_path, gt)
    if not preds:
        raise DataFormatError(f"{pred_path}: <top level>: no masklet; SAM 3's video evaluator cannot load an empty "
                              "prediction list")
    veval = _import("sam3.eval.saco_veval_eval", numpy_below_2_4=True)
    with tempfile.TemporaryDirectory() as tmp, _quiet(log):
        evaluator = veval.VEvalEvaluator(str(gt_path), str(Path(tmp) / "eval_res.json"))
        for ev in list(evaluator.evaluators):
            if hasattr(ev, "num_parallel_cores"):     # TETA's pool: no more processes than cores
                ev.num_parallel_cores = min(ev.num_parallel_cores, os.cpu_count() or 1)
            confident = (p for p in preds if p["score"] >= getattr(ev, "prob_thresh", 0.5))
            if isinstance(ev, veval.VideoTetaEvaluator) and not any(any(b) for p in confident for b in p["bboxes"]):
                print(f"sam3m4: TETA left out: no masklet with score >= {ev.prob_thresh} and a non-empty frame")
                evaluator.evaluators.remove(ev)
        out = _run(f"{pred_path}", evaluator.run_eval, str(pred_path))
    return {"dataset_results": {k: float(v) for k, v in out["dataset_results"].items()},
            "video_np_results": out["video_np_results"]}


def headline(result: dict, kind: str) -> dict[str, float]:
    """The headline numbers of an :func:`evaluate_image` / :func:`evaluate_video` result, keyed by results-store
    metric name (``saco_cgf1`` ...); a key the evaluator did not produce is left out."""
    table = IMAGE_HEADLINE if kind == "image" else VIDEO_HEADLINE
    values = result if kind == "image" else result["dataset_results"]
    return {metric: float(values[key]) for metric, (key, _) in table.items() if key in values}


def format_table(rows: dict[str, dict[str, float]], kind: str) -> str:
    """A short text table: one row per name, the headline columns."""
    table = IMAGE_HEADLINE if kind == "image" else VIDEO_HEADLINE
    cols = [(m, label) for m, (_, label) in table.items()]
    width = max([len(n) for n in rows] + [len(kind)])
    lines = [f"{kind:<{width}}  " + "  ".join(f"{label:>8}" for _, label in cols)]
    for name, vals in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{vals[m]:8.4f}" if m in vals else f"{'-':>8}"
                                                       for m, _ in cols))
    return "\n".join(lines)


def write_result(path: str | os.PathLike, result: dict) -> Path:
    """Write an evaluator result (the evaluators' own keys and values) as JSON, atomically."""
    return write_json(path, result)


def score_image(gt_json, writer, out_dir, name: str, *, log=None) -> tuple[dict, Path]:
    """Score an :class:`~sam3m4.eval.saco_format.ImagePredictions` against the GT of exactly its pairs.

    Writes ``<out_dir>/<name>_image_preds.json``, ``<name>_image_gt.json`` and ``<name>_image_eval.json`` (the
    evaluator's result); returns the result and the predictions' path.
    """
    out_dir = Path(out_dir)
    preds = writer.write(out_dir / f"{name}_image_preds.json")
    gt = image_gt_subset(gt_json, writer.pair_ids, out_dir / f"{name}_image_gt.json")
    result = evaluate_image([gt], preds, log=log)
    write_result(out_dir / f"{name}_image_eval.json", result)
    return result, preds


def score_image_at(out_dir, name: str, threshold: float, *, log=None) -> tuple[dict, Path]:
    """Score the files :func:`score_image` wrote for ``name`` again with detections kept at ``threshold``; writes
    ``<out_dir>/<name>_image_eval_t<threshold>.json`` and returns the result and its path."""
    out_dir = Path(out_dir)
    result = evaluate_image([out_dir / f"{name}_image_gt.json"], out_dir / f"{name}_image_preds.json", log=log,
                            threshold=threshold)
    return result, write_result(out_dir / f"{name}_image_eval_t{threshold:.4f}.json", result)


def score_video(gt_json, writer, out_dir, name: str, *, log=None) -> tuple[dict, Path]:
    """As :func:`score_image` for a :class:`~sam3m4.eval.saco_format.VideoPredictions` (call its ``fill`` first)."""
    out_dir = Path(out_dir)
    preds = writer.write(out_dir / f"{name}_video_preds.json")
    gt = video_gt_subset(gt_json, writer.seen, out_dir / f"{name}_video_gt.json")
    result = evaluate_video(gt, preds, log=log)
    write_result(out_dir / f"{name}_video_eval.json", result)
    return result, preds


def record(store, *, stage: str, subject: str, kind: str, result: dict, provenance: str, artifact=None) -> dict:
    """Record the headline numbers of ``result`` that :data:`RECORDED` lists; returns them."""
    values = {m: v for m, v in headline(result, kind).items() if m in RECORDED}
    for metric, value in values.items():
        store.record(stage=stage, subject=subject, metric=metric, value=value, unit="fraction",
                     provenance=provenance, artifact=artifact)
    return values

"""The Visual QA checklist: schema, automatic suggestions, validation and import into the results store.

``checklist.json`` (written by the page's "Save checklist" button, or by ``sam3m4 visual-eval
--auto-checklist``) looks like::

    {"format": "sam3m4-visual-checklist-v1", "run": "demo", "reviewer": "Kim", "saved_at": "2026-...Z",
     "index_html": "outputs/visual_eval/demo/index.html", "manifest": "configs/visual_eval/...txt",
     "prompts": "configs/visual_eval/prompts_core.txt",
     "items": {"small_objects": {"verdict": "Pass", "memo": "...", "source": "human"}, ...}}

with exactly the five keys of :data:`ITEMS`. :func:`load_checklist` checks it and raises one-line
:class:`~sam3m4.errors.DataFormatError` s naming the file and the field; :func:`record_checklist` writes the
records that ``sam3m4 report`` reads into section 3 (stage ``visual``).

    from sam3m4.visual.checklist import import_for_report
    import_for_report("demo")      # outputs/visual_eval/demo/checklist.json -> reports/demo/results.jsonl
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sam3m4.data._checks import load_json
from sam3m4.errors import DataFormatError, Sam3m4Error
from sam3m4.fileio import atomic_write_json
from sam3m4.paths import CHECKLIST_FILE, REPORTS_ROOT, VISUAL_ROOT
from sam3m4.results import ResultsStore
from sam3m4.results import schema
from sam3m4.results.store import sha256_file

FORMAT = "sam3m4-visual-checklist-v1"
AUTO_REVIEWER = "auto (sam3m4 visual-eval heuristics)"
FILE_NAME = CHECKLIST_FILE
TO_REVIEW = "To review"  # an automatic item with nothing to judge: left for the reviewer, never a Fail
VERDICTS = ("Pass", "Fail", TO_REVIEW)
SOURCES = ("auto", "human")

# key -> (label in the report template, what a reviewer looks at)
ITEMS: dict[str, tuple[str, str]] = {
    "small_objects": ("작은 물체 분할 안정성", "small objects: does the student keep the teacher's small instances?"),
    "multi_object_separation": ("다중 객체 분리 품질", "several instances of one phrase come out as separate masks"),
    "background_leakage": ("배경 누수(오탐)", "no masks where the teacher sees nothing (false positives)"),
    "prompt_responsiveness": ("프롬프트 반응성", "presence and masks change with the prompt on the same image"),
    "teacher_difference": ("Teacher 대비 품질 차이(시각)", "student masks look like the teacher's"),
}

# --- thresholds of the automatic suggestions (heuristics that pre-fill the page, not release gates) ---
SMALL_AREA = 0.01            # a teacher instance is "small" below this share of the image (synthetic: <= 1 %)
SMALL_IOU_PASS = 0.5         # mean best-match student IoU on small teacher instances
COUNT_AGREE_PASS = 0.6       # share of pairs where the teacher finds >= 2 and the student finds as many
LEAK_RATE_PASS = 0.2         # most share of teacher-empty pairs where the student still detects something
PRESENCE_SPREAD_PASS = 0.3   # mean (max - min) student presence across the prompts of one image
MASK_IOU_PASS = 0.5          # mean teacher-vs-student union-mask IoU over pairs where either detects
MIN_EVIDENCE = 5             # fewer cases than this: the memo says the suggestion rests on weak evidence


@dataclass
class PairResult:
    """What the page shows and the heuristics read for one (image, prompt) pair."""

    image: str
    """Image path as listed in the manifest."""
    prompt: str
    """The noun phrase."""
    teacher_count: int
    """Teacher instances kept (score >= threshold)."""
    student_count: int
    """Student instances kept (score >= threshold)."""
    teacher_presence: float
    """sigmoid(teacher presence logit) in [0, 1]."""
    student_presence: float
    """sigmoid(student presence logit) in [0, 1]."""
    iou: float | None
    """IoU of the union of teacher masks vs the union of student masks; None when both are empty."""
    small_ious: list[float] = field(default_factory=list)
    """Per teacher instance smaller than ``SMALL_AREA`` of the image: best IoU with any student instance."""
    files: dict[str, str] = field(default_factory=dict)
    """Relative paths in the run folder: ``teacher``/``student`` (PNG) and ``teacher_thumb``/``student_thumb``."""


def mask_iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """IoU of two (H, W) bool masks; None when both are empty."""
    union = np.logical_or(a, b).sum()
    return None if union == 0 else float(np.logical_and(a, b).sum() / union)


def small_instance_ious(teacher_masks: np.ndarray, student_masks: np.ndarray) -> list[float]:
    """(N, H, W), (M, H, W) bool -> best student IoU of each teacher instance smaller than ``SMALL_AREA``."""
    out = []
    for t in teacher_masks:
        if 0 < t.mean() < SMALL_AREA:
            out.append(max((mask_iou(t, s) or 0.0 for s in student_masks), default=0.0))
    return out


# --- automatic suggestions -------------------------------------------------------------------------
def _item(passed: bool, memo: str) -> dict:
    return {"verdict": "Pass" if passed else "Fail", "memo": f"auto: {memo}", "source": "auto"}


def _unjudged(memo: str) -> dict:
    """An item the predictions give no evidence on: left for the reviewer (:data:`TO_REVIEW`), not failed."""
    return {"verdict": TO_REVIEW, "memo": f"auto: {memo}; left for the reviewer", "source": "auto"}


def suggest(pairs: list[PairResult]) -> dict[str, dict]:
    """The five checklist items pre-filled from the predictions: verdict, a memo with number and threshold."""
    items = {}
    small = [v for p in pairs for v in p.small_ious]
    if small:
        m = float(np.mean(small))
        weak = f" (weak evidence: fewer than {MIN_EVIDENCE}, look at them)" if len(small) < MIN_EVIDENCE else ""
        items["small_objects"] = _item(
            m >= SMALL_IOU_PASS, f"mean student IoU {m:.3f} on {len(small)} small teacher instance(s) "
            f"(< {SMALL_AREA:.0%} of the image){weak}; pass at >= {SMALL_IOU_PASS}")
    else:
        items["small_objects"] = _unjudged(f"the teacher found no instance < {SMALL_AREA:.0%} of the image: "
                                           "nothing to judge")
    multi = [p for p in pairs if p.teacher_count >= 2]
    if multi:
        agree = sum(p.student_count == p.teacher_count for p in multi) / len(multi)
        items["multi_object_separation"] = _item(
            agree >= COUNT_AGREE_PASS, f"student instance count equals the teacher's on {agree:.0%} of "
            f"{len(multi)} pair(s) where the teacher finds >= 2; pass at >= {COUNT_AGREE_PASS:.0%}")
    else:
        items["multi_object_separation"] = _unjudged("no pair where the teacher finds >= 2 instances: "
                                                     "nothing to judge")
    empty = [p for p in pairs if p.teacher_count == 0]
    if empty:
        leak = sum(p.student_count > 0 for p in empty) / len(empty)
        pres = float(np.mean([p.student_presence for p in empty]))
        items["background_leakage"] = _item(
            leak <= LEAK_RATE_PASS, f"student detects something on {leak:.0%} of {len(empty)} pair(s) where the "
            f"teacher finds nothing (mean student presence there {pres:.3f}); pass at <= {LEAK_RATE_PASS:.0%}")
    else:
        items["background_leakage"] = _unjudged("the teacher detects something on every pair: no negative pair "
                                                "to judge leakage on (add an absent prompt)")
    spreads, t_spreads = [], []
    for image in dict.fromkeys(p.image for p in pairs):
        mine = [p for p in pairs if p.image == image]
        if len(mine) >= 2:
            spreads.append(max(p.student_presence for p in mine) - min(p.student_presence for p in mine))
            t_spreads.append(max(p.teacher_presence for p in mine) - min(p.teacher_presence for p in mine))
    if spreads:
        s, t = float(np.mean(spreads)), float(np.mean(t_spreads))
        items["prompt_responsiveness"] = _item(
            s >= PRESENCE_SPREAD_PASS, f"mean spread (max - min) of student presence across prompts {s:.3f} over "
            f"{len(spreads)} image(s) (teacher {t:.3f}); pass at >= {PRESENCE_SPREAD_PASS}")
    else:
        items["prompt_responsiveness"] = _unjudged("fewer than 2 prompts per image: nothing to judge")
    ious = [p.iou for p in pairs if p.iou is not None]
    if ious:
        m = float(np.mean(ious))
        items["teacher_difference"] = _item(
            m >= MASK_IOU_PASS, f"mean teacher-vs-student mask IoU {m:.3f} over {len(ious)} pair(s) where either "
            f"detects something ({len(pairs) - len(ious)} both empty); pass at >= {MASK_IOU_PASS}")
    else:
        items["teacher_difference"] = _unjudged("neither model detects anything on any pair: nothing to compare")
    return {key: items[key] for key in ITEMS}


def build_checklist(*, run: str, reviewer: str, saved_at: str, index_html: str, manifest: str, prompts: str,
                    items: dict[str, dict]) -> dict:
    """A checklist dict in the v1 schema (what the page saves)."""
    return {"format": FORMAT, "run": run, "reviewer": reviewer, "saved_at": saved_at, "index_html": index_html,
            "manifest": manifest, "prompts": prompts, "items": {k: dict(items[k]) for k in ITEMS}}


def save_checklist(path: str | os.PathLike, data: dict) -> Path:
    """Validate ``data`` and write it as UTF-8 JSON (atomically)."""
    path = Path(path)
    validate(data, where=path.name)
    return atomic_write_json(path, data, newline=True, ensure_ascii=False, indent=2)


# --- validation ------------------------------------------------------------------------------------
_TOP = {"format": str, "run": str, "reviewer": str, "saved_at": str, "index_html": str, "manifest": str,
        "prompts": str, "items": dict}


def validate(data, where: str) -> dict:
    """Check a checklist dict; one-line DataFormatError ``<where>: <field>: <what is wrong>``."""
    if not isinstance(data, dict):
        raise DataFormatError(f"{where}: <top level>: expected a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in _TOP:
            raise DataFormatError(f"{where}: {key}: unknown key (expected {', '.join(_TOP)})")
    for key, kind in _TOP.items():
        if key not in data:
            raise DataFormatError(f"{where}: {key}: missing key")
        if not isinstance(data[key], kind):
            raise DataFormatError(f"{where}: {key}: expected {'a string' if kind is str else 'an object'}, "
                                  f"got {json.dumps(data[key])[:40]}")
    if data["format"] != FORMAT:
        raise DataFormatError(f"{where}: format: expected \"{FORMAT}\", got {json.dumps(data['format'])[:60]}")
    if not data["reviewer"].strip():
        raise DataFormatError(f"{where}: reviewer: empty (type a name on the page before saving)")
    items = data["items"]
    for key in items:
        if key not in ITEMS:
            raise DataFormatError(f"{where}: items.{key}: unknown item (expected {', '.join(ITEMS)})")
    for key in ITEMS:
        if key not in items:
            raise DataFormatError(f"{where}: items.{key}: missing key")
        item = items[key]
        if not isinstance(item, dict):
            raise DataFormatError(f"{where}: items.{key}: expected an object, got {json.dumps(item)[:40]}")
        for name in item:
            if name not in ("verdict", "memo", "source"):
                raise DataFormatError(f"{where}: items.{key}.{name}: unknown key (expected verdict, memo, source)")
        for name, allowed in (("verdict", VERDICTS), ("source", SOURCES)):
            if name not in item:
                raise DataFormatError(f"{where}: items.{key}.{name}: missing key")
            if item[name] not in allowed:
                expected = ", ".join(f'"{a}"' for a in allowed[:-1]) + f' or "{allowed[-1]}"'
                raise DataFormatError(f"{where}: items.{key}.{name}: expected {expected}, "
                                      f"got {json.dumps(item[name])[:40]}")
        if not isinstance(item.get("memo"), str):
            got = json.dumps(item.get("memo"))[:40]
            raise DataFormatError(f"{where}: items.{key}.memo: expected a string, got {got}")
    return data


def load_checklist(path: str | os.PathLike) -> dict:
    """Read and validate a checklist file; errors are one line naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise Sam3m4Error(f"{path}: no such checklist file (save it from the visual-eval page)")
    return validate(load_json(path), where=str(path))  # bad bytes / JSON: one line with file, line and column


# --- results store ---------------------------------------------------------------------------------
def _one_line(text: str) -> str:
    """A memo as one Markdown table cell: whitespace runs collapsed, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def record_checklist(path: str | os.PathLike, store) -> list:
    """Record a checklist file in ``store`` (a :class:`~sam3m4.results.ResultsStore`) for report section 3.

    Writes stage ``visual``: subject ``run`` metrics ``manifest``, ``prompts``, ``index_html``, ``reviewer``,
    ``checklist``; and per item subject ``<key>`` metric ``verdict`` (value Pass/Fail, note = the memo).
    Every record names the checklist file and its sha256 and says who reviewed it.
    """
    path = Path(path)
    data = load_checklist(path)
    sha = sha256_file(path)
    who = ("filled by the automatic heuristics of `sam3m4 visual-eval` (no human review)"
           if data["reviewer"] == AUTO_REVIEWER else f"reviewed by {data['reviewer']}")
    base = f"visual QA checklist {who}, saved {data['saved_at']}, page {data['index_html']}"
    common = dict(artifact=path, sha256=sha)
    out = [store.record(stage=schema.VISUAL, subject=schema.RUN, metric=metric, value=data[key], provenance=base, **common)
           for metric, key in ((schema.MANIFEST, "manifest"), (schema.PROMPTS, "prompts"), (schema.INDEX_HTML, "index_html"),
                               ("reviewer", "reviewer"))]
    for key in ITEMS:
        item = data["items"][key]
        how = "auto suggestion kept" if item["source"] == "auto" else "set by the reviewer"
        out.append(store.record(stage=schema.VISUAL, subject=key, metric=schema.VERDICT, value=item["verdict"],
                                note=_one_line(item["memo"]), provenance=f"{base}; {how}", **common))
    out.append(store.record(stage=schema.VISUAL, subject=schema.RUN, metric=schema.CHECKLIST, value=str(path), provenance=base,
                            **common))
    return out


def import_for_report(run: str, root: str | os.PathLike = REPORTS_ROOT,
                      out_root: str | os.PathLike = VISUAL_ROOT) -> Path | None:
    """Record ``<out_root>/<run>/checklist.json`` in ``<root>/<run>/results.jsonl`` when it exists.

    Returns the checklist path, or None when there is none. A file already recorded with the same sha256
    is not recorded again (the report reads the latest record, so re-recording would also be harmless).
    """
    path = Path(out_root) / run / FILE_NAME
    if not path.is_file():
        return None
    store = ResultsStore(run, root=root)
    last = store.latest(stage=schema.VISUAL, subject=schema.RUN, metric=schema.CHECKLIST)
    if last is not None and last.artifact == str(path) and last.sha256 == sha256_file(path):
        return path
    record_checklist(path, store)
    return path

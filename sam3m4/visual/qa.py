"""Visual QA, the library behind ``sam3m4 visual-eval``: teacher vs student overlays for images x prompts, the
page, its numbers and (optionally) the automatic checklist. :func:`build_visual_qa` returns a
:class:`VisualResult`; the CLI only parses arguments and prints it.

    result = build_visual_qa(manifest=Path("configs/visual_eval/image_manifest_phase2.txt"),
                             prompts=Path("configs/visual_eval/prompts_core.txt"), teacher=TEACHER_DIR,
                             student=Path(PHASE2_BEST), run="demo")
    result.index, len(result.pairs), result.suggestions

Manifest: one image a line, absolute or relative to the current root; a ``root: <dir>`` line sets the root
for the lines after it (default: the directory sam3m4 runs in); ``#`` starts a comment. Prompts: one noun
phrase a line, ``#`` comments. Teacher: all prompts of an image in one batch (the image encoder runs once,
as SAM 3 does); student: :class:`sam3m4.predict.Predictor` (prompt embeddings cached).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sam3m4.distill.cache import teacher_id
from sam3m4.errors import DataFormatError, Sam3m4Error
from sam3m4.fileio import atomic_path, atomic_write_text
from sam3m4.paths import VISUAL_INDEX, VISUAL_ROOT
from sam3m4.predict import Predictor, overlay
from sam3m4.progress import progress_bar
from sam3m4.results.store import sha256_file
from sam3m4.teacher import instances_from_output, load_teacher
from sam3m4.visual import checklist
from sam3m4.visual.page import render_page

THUMB_PX = 160       # longest side of a grid thumbnail
THUMB_QUALITY = 85   # JPEG quality of thumbnails
PNG_LEVEL = 3        # zlib level of full-size overlays (noisy images: higher levels cost time, save little)


@dataclass
class VisualResult:
    """What :func:`build_visual_qa` wrote and found."""

    index: Path
    """``<out>/<run>/index.html``."""
    pairs_json: Path
    """``pairs.json``: every number on the page."""
    checklist_path: Path
    pairs: list[checklist.PairResult]
    suggestions: dict
    """The automatic verdicts per checklist item."""
    images: int
    prompts: list[str]
    seconds: float
    checklist_written: bool = False
    """``--auto-checklist`` wrote the suggestions to ``checklist_path``."""
    kept_reviewer: str = ""
    """The reviewer whose saved checklist was kept (not overwritten), else empty."""
    notes: list[str] = field(default_factory=list)
    """Things the caller should show (an unreadable old checklist ignored for the page's start values)."""


# --- inputs -----------------------------------------------------------------------------------------
def _lines(path: Path, what: str):
    """(line number, stripped text) of the non-comment, non-blank lines of a text file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Sam3m4Error(f"{path}: no such {what} file") from None
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text ({err.reason})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            yield lineno, line


def read_manifest(path: Path) -> list[tuple[int, Path]]:
    """(line number, image path) per listed image; a missing image -> error naming the line."""
    root, out = Path("."), []
    for lineno, line in _lines(path, "manifest"):
        if line.startswith("root:"):
            root = Path(line[len("root:"):].strip() or ".")
            continue
        image = Path(line) if Path(line).is_absolute() else root / line
        if not image.is_file():
            raise DataFormatError(f"{path}:{lineno}: {image}: no such image file")
        out.append((lineno, image))
    if not out:
        raise DataFormatError(f"{path}: no image listed (one path a line; '#' starts a comment)")
    return out


def read_prompts(path: Path) -> list[str]:
    """The noun phrases, in file order; duplicates are an error naming both lines."""
    seen: dict[str, int] = {}
    for lineno, phrase in _lines(path, "prompts"):
        phrase = " ".join(phrase.split())
        if phrase in seen:
            raise DataFormatError(f"{path}:{lineno}: duplicate prompt {phrase!r} (also line {seen[phrase]})")
        seen[phrase] = lineno
    if not seen:
        raise DataFormatError(f"{path}: no prompt listed (one noun phrase a line; '#' starts a comment)")
    return list(seen)


def read_image(manifest: Path, lineno: int, path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; an unreadable file -> one-line error naming manifest line and image."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))  # a writable copy (the teacher's processor wants one)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataFormatError(f"{manifest}:{lineno}: {path}: cannot decode image ({first})") from None


# --- models -----------------------------------------------------------------------------------------
def teacher_predict(teacher, image: np.ndarray, prompts: list[str], threshold: float):
    """One image, P prompts -> P (masks (N, H, W) bool, presence float); the image is encoded once."""
    batch = teacher.prepare([image], prompts)  # pixel_values (1, 3, S, S), input_ids (P, 32)
    index = torch.zeros(len(prompts), dtype=torch.long, device=batch["pixel_values"].device)
    with torch.no_grad():
        out = teacher(**batch, image_index=index)
    inst = instances_from_output(out, [image.shape[:2]] * len(prompts), threshold)
    presence = out.presence_logit.float().sigmoid()[:, 0].cpu().tolist()  # (P,)
    return [(i.masks, p) for i, p in zip(inst, presence)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "x"


def _save(image: np.ndarray, masks: np.ndarray, out_dir: Path, name: str) -> tuple[str, str, tuple[int, int]]:
    """Overlay PNG + JPEG thumbnail; returns their paths relative to ``out_dir`` and the thumbnail size."""
    full = Image.fromarray(overlay(image, masks))
    with atomic_path(out_dir / "img" / f"{name}.png") as tmp:
        full.save(tmp, format="PNG", compress_level=PNG_LEVEL)
    full.thumbnail((THUMB_PX, THUMB_PX))
    with atomic_path(out_dir / "thumb" / f"{name}.jpg") as tmp:
        full.save(tmp, format="JPEG", quality=THUMB_QUALITY)
    return f"img/{name}.png", f"thumb/{name}.jpg", full.size


def _sha12(path: Path) -> str:
    return sha256_file(path)[:12] if path.is_file() else "n/a"


# --- the stage ---------------------------------------------------------------------------------------
def score_pairs(teacher, student, manifest: Path, images: list[tuple[int, Path]], prompts: list[str],
                threshold: float, out_dir: Path) -> tuple[list[checklist.PairResult], dict]:
    """Every image x prompt: both models' masks, overlays and thumbnails under ``out_dir``; returns the pair
    results and the thumbnails' sizes."""
    for sub in ("img", "thumb"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    pairs, thumbs = [], {}
    bar = progress_bar(total=len(images) * len(prompts), desc="visual-eval", unit="pair")
    for i, (lineno, path) in enumerate(images):
        image = read_image(manifest, lineno, path)
        t_preds = teacher_predict(teacher, image, prompts, threshold)
        for j, phrase in enumerate(prompts):
            t_masks, t_presence = t_preds[j]
            s = student.predict(image, phrase)
            name = f"{i:03d}_{_slug(path.stem)}__p{j:02d}_{_slug(phrase)}"
            files = {}
            for who, masks in (("teacher", t_masks), ("student", s.masks)):
                files[who], files[f"{who}_thumb"], thumbs[files[f"{who}_thumb"]] = _save(image, masks, out_dir,
                                                                                          f"{name}_{who}")
            h, w = image.shape[:2]
            pairs.append(checklist.PairResult(
                image=str(path), prompt=phrase, teacher_count=len(t_masks), student_count=len(s.masks),
                teacher_presence=round(float(t_presence), 3), student_presence=round(float(s.presence), 3),
                iou=checklist.mask_iou(t_masks.any(0) if len(t_masks) else np.zeros((h, w), bool),
                                       s.masks.any(0) if len(s.masks) else np.zeros((h, w), bool)),
                small_ious=checklist.small_instance_ious(t_masks, s.masks), files=files))
            bar.update(1)
    bar.close()
    return pairs, thumbs


def start_values(ck_path: Path, auto: dict, notes: list[str]) -> tuple[dict, str, bool]:
    """(the page's initial verdicts, reviewer, whether a person saved ``ck_path``): a person's saved items win
    over the automatic suggestions; an unreadable file is ignored with a note."""
    initial, reviewer, human_file = dict(auto), "", False
    if ck_path.is_file():
        try:
            old = checklist.load_checklist(ck_path)
        except Sam3m4Error as err:
            notes.append(f"note: ignoring {ck_path} for the page's start values: {err}")
        else:
            human_file = old["reviewer"] != checklist.AUTO_REVIEWER
            if human_file:
                reviewer = old["reviewer"]
                initial.update({k: v for k, v in old["items"].items() if v["source"] == "human"})
    return initial, reviewer, human_file


def build_visual_qa(*, manifest: Path, prompts: Path, teacher: str, student: Path, run: str,
                    out: Path = Path(VISUAL_ROOT), limit: int | None = None, threshold: float = 0.5,
                    auto_checklist: bool = False, device: str = "cpu") -> VisualResult:
    """Score the manifest's images x the prompts with ``teacher`` and ``student``, write the page, ``pairs.json``
    and (``auto_checklist``, unless a person saved one) ``checklist.json`` under ``<out>/<run>/``."""
    start = time.perf_counter()
    images = read_manifest(manifest)[:limit]
    phrases = read_prompts(prompts)
    out_dir = out / run
    student_model = Predictor.from_checkpoint(student, threshold=threshold, device=device)
    teacher_model = load_teacher(teacher, device=device)
    pairs, thumbs = score_pairs(teacher_model, student_model, manifest, images, phrases, threshold, out_dir)
    elapsed = time.perf_counter() - start

    auto = checklist.suggest(pairs)
    index = out_dir / VISUAL_INDEX
    result = VisualResult(index=index, pairs_json=out_dir / "pairs.json", checklist_path=out_dir / checklist.FILE_NAME,
                          pairs=pairs, suggestions=auto, images=len(images), prompts=phrases, seconds=elapsed)
    initial, reviewer, human_file = start_values(result.checklist_path, auto, result.notes)
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t_id = teacher_id(teacher)
    meta = {"run": run, "index_html": str(index), "manifest": str(manifest), "prompts": str(prompts),
            "checklist_path": str(result.checklist_path), "header": [
                ("run", f"{run}, generated {generated}"),
                ("teacher", f"{teacher} (id {t_id})"),
                ("student", f"{student} (sha256 {_sha12(student)})"),
                ("manifest", f"{manifest}: {len(images)} image(s)"),
                ("prompts", f"{prompts}: " + ", ".join(f"\u201c{p}\u201d" for p in phrases)),
                ("threshold", f"score \u2265 {threshold} (sigmoid(query) \u00d7 sigmoid(presence))"),
                ("host", f"{device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
                         f"{len(pairs)} pairs in {elapsed:.1f} s")]}
    atomic_write_text(index, render_page(meta, pairs, phrases, auto, initial=initial, reviewer=reviewer,
                                         thumb_sizes=thumbs))
    summary = {"run": run, "generated": generated, "teacher": teacher, "teacher_id": t_id,
               "student": str(student), "student_sha256_12": _sha12(student),
               "manifest": str(manifest), "prompts": phrases, "threshold": threshold,
               "seconds": round(elapsed, 2), "suggestions": auto,
               "pairs": [vars(p) for p in pairs]}
    atomic_write_text(result.pairs_json, json.dumps(summary, ensure_ascii=False, indent=1))
    if auto_checklist:
        if human_file:
            result.kept_reviewer = reviewer
        else:
            checklist.save_checklist(result.checklist_path, checklist.build_checklist(
                run=run, reviewer=checklist.AUTO_REVIEWER, saved_at=generated, index_html=str(index),
                manifest=str(manifest), prompts=str(prompts), items=auto))
            result.checklist_written = True
    return result

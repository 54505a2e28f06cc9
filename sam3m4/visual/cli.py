"""``sam3m4 visual-eval``: teacher vs student overlays for images x prompts, and the Visual QA checklist page.

    sam3m4 visual-eval --manifest configs/visual_eval/image_manifest_phase2.txt \
        --prompts configs/visual_eval/prompts_core.txt --run demo --auto-checklist

writes under ``outputs/visual_eval/<run>/``: ``index.html`` (open it from disk), ``img/*.png`` (full-size
overlays), ``thumb/*.jpg`` (the grid's lazy-loaded thumbnails), ``pairs.json`` (every number on the page)
and, with ``--auto-checklist``, ``checklist.json`` holding the automatic suggestions (a reviewer's saved
checklist there is never overwritten). ``sam3m4 report`` reads ``checklist.json`` into section 3.

Manifest: one image a line, absolute or relative to the current root; a ``root: <dir>`` line sets the root
for the lines after it (default: the directory sam3m4 runs in); ``#`` starts a comment. Prompts: one noun
phrase a line, ``#`` comments. Teacher: all prompts of an image in one batch (the image encoder runs once,
as SAM 3 does); student: :class:`sam3m4.predict.Predictor` (prompt embeddings cached).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import time
from pathlib import Path

import numpy as np

from sam3m4.errors import DataFormatError, Sam3m4Error
from sam3m4.paths import PHASE2_BEST, TEACHER_DIR, VISUAL_ROOT
from sam3m4.results.runs import check_run_name

DEFAULT_TEACHER = TEACHER_DIR   # as `sam3m4 eval --model teacher`
DEFAULT_STUDENT = PHASE2_BEST
THUMB_PX = 160       # longest side of a grid thumbnail
THUMB_QUALITY = 85   # JPEG quality of thumbnails
PNG_LEVEL = 3        # zlib level of full-size overlays (noisy images: higher levels cost time, save little)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, default=Path("configs/visual_eval/image_manifest_phase2.txt"),
                        help="image list, one a line (format in the file's header comment)")
    parser.add_argument("--prompts", type=Path, default=Path("configs/visual_eval/prompts_core.txt"),
                        help="noun phrases, one a line")
    parser.add_argument("--teacher", default=DEFAULT_TEACHER,
                        help=f"SAM 3 weights dir or hub id (default {DEFAULT_TEACHER})")
    parser.add_argument("--student", type=Path, default=Path(DEFAULT_STUDENT),
                        help=f"student checkpoint .pt (default {DEFAULT_STUDENT})")
    parser.add_argument("--run", default="demo", help="run name: writes <out>/<run>/index.html (default demo)")
    parser.add_argument("--out", type=Path, default=Path(VISUAL_ROOT), help="output root")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of the manifest")
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold for kept detections")
    parser.add_argument("--auto-checklist", action="store_true",
                        help="also write checklist.json from the automatic suggestions (for runs with no human)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.set_defaults(func=run)


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
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))  # a writable copy (the teacher's processor wants one)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataFormatError(f"{manifest}:{lineno}: {path}: cannot decode image ({first})") from None


# --- models -----------------------------------------------------------------------------------------
def teacher_predict(teacher, image: np.ndarray, prompts: list[str], threshold: float):
    """One image, P prompts -> P (masks (N, H, W) bool, presence float); the image is encoded once."""
    import torch

    from sam3m4.teacher import instances_from_output

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
    from PIL import Image

    from sam3m4.predict import overlay

    full = Image.fromarray(overlay(image, masks))
    full.save(out_dir / "img" / f"{name}.png", compress_level=PNG_LEVEL)
    full.thumbnail((THUMB_PX, THUMB_PX))
    full.save(out_dir / "thumb" / f"{name}.jpg", quality=THUMB_QUALITY)
    return f"img/{name}.png", f"thumb/{name}.jpg", full.size


def _sha12(path: Path) -> str:
    from sam3m4.results.store import sha256_file

    return sha256_file(path)[:12] if path.is_file() else "n/a"


# --- the command ------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    import json
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tqdm import tqdm

    from sam3m4.distill.cache import teacher_id
    from sam3m4.predict import Predictor
    from sam3m4.teacher import load_teacher
    from sam3m4.visual import checklist
    from sam3m4.visual.page import render_page

    if args.threads:
        torch.set_num_threads(args.threads)
    check_run_name(args.run, "--run")
    start = time.perf_counter()
    images = read_manifest(args.manifest)[: args.limit]
    prompts = read_prompts(args.prompts)
    out_dir = args.out / args.run
    for sub in ("img", "thumb"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    student = Predictor.from_checkpoint(args.student, threshold=args.threshold, device=args.device)
    teacher = load_teacher(args.teacher, device=args.device)

    pairs, thumbs = [], {}
    bar = tqdm(total=len(images) * len(prompts), desc="visual-eval", unit="pair")
    for i, (lineno, path) in enumerate(images):
        image = read_image(args.manifest, lineno, path)
        t_preds = teacher_predict(teacher, image, prompts, args.threshold)
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
    elapsed = time.perf_counter() - start

    auto = checklist.suggest(pairs)
    index = out_dir / "index.html"
    ck_path = out_dir / checklist.FILE_NAME
    initial, reviewer, human_file = dict(auto), "", False
    if ck_path.is_file():
        try:
            old = checklist.load_checklist(ck_path)
        except Sam3m4Error as err:
            print(f"note: ignoring {ck_path} for the page's start values: {err}")
        else:
            human_file = old["reviewer"] != checklist.AUTO_REVIEWER
            if human_file:
                reviewer = old["reviewer"]
                initial.update({k: v for k, v in old["items"].items() if v["source"] == "human"})
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t_id = teacher_id(args.teacher)
    meta = {"run": args.run, "index_html": str(index), "manifest": str(args.manifest), "prompts": str(args.prompts),
            "checklist_path": str(ck_path), "header": [
                ("run", f"{args.run}, generated {generated}"),
                ("teacher", f"{args.teacher} (id {t_id})"),
                ("student", f"{args.student} (sha256 {_sha12(args.student)})"),
                ("manifest", f"{args.manifest}: {len(images)} image(s)"),
                ("prompts", f"{args.prompts}: " + ", ".join(f"\u201c{p}\u201d" for p in prompts)),
                ("threshold", f"score \u2265 {args.threshold} (sigmoid(query) \u00d7 sigmoid(presence))"),
                ("host", f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
                         f"{len(pairs)} pairs in {elapsed:.1f} s")]}
    index.write_text(render_page(meta, pairs, prompts, auto, initial=initial, reviewer=reviewer,
                                 thumb_sizes=thumbs), encoding="utf-8")
    summary = {"run": args.run, "generated": generated, "teacher": args.teacher, "teacher_id": t_id,
               "student": str(args.student), "student_sha256_12": _sha12(args.student),
               "manifest": str(args.manifest), "prompts": prompts, "threshold": args.threshold,
               "seconds": round(elapsed, 2), "suggestions": auto,
               "pairs": [vars(p) for p in pairs]}
    (out_dir / "pairs.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {index}: {len(pairs)} pairs ({len(images)} images x {len(prompts)} prompts) in {elapsed:.1f} s")
    if args.auto_checklist:
        if human_file:
            print(f"kept {ck_path}: it holds {reviewer}'s review (not overwritten by --auto-checklist)")
        else:
            checklist.save_checklist(ck_path, checklist.build_checklist(
                run=args.run, reviewer=checklist.AUTO_REVIEWER, saved_at=generated, index_html=str(index),
                manifest=str(args.manifest), prompts=str(args.prompts), items=auto))
            print(f"wrote {ck_path} (automatic suggestions: "
                  + ", ".join(f"{k} {v['verdict']}" for k, v in auto.items()) + ")")
    return 0


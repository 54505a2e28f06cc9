"""``sam3m4 visual-eval``: teacher vs student overlays for images x prompts, and the Visual QA checklist page.

    sam3m4 visual-eval --manifest configs/visual_eval/image_manifest_phase2.txt \
        --prompts configs/visual_eval/prompts_core.txt --run demo --auto-checklist

writes under ``outputs/visual_eval/<run>/``: ``index.html`` (open it from disk), ``img/*.png`` (full-size
overlays), ``thumb/*.jpg`` (the grid's lazy-loaded thumbnails), ``pairs.json`` (every number on the page)
and, with ``--auto-checklist``, ``checklist.json`` holding the automatic suggestions (a reviewer's saved
checklist there is never overwritten). ``sam3m4 report`` reads ``checklist.json`` into section 3.

Manifest and prompt formats, and the work itself: :mod:`sam3m4.visual.qa` (this file only parses arguments).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam3m4.flags import ranged
from sam3m4.paths import PHASE2_BEST, TEACHER_DIR, VISUAL_ROOT
from sam3m4.results.runs import check_run_name

DEFAULT_TEACHER = TEACHER_DIR   # as `sam3m4 eval --model teacher`
DEFAULT_STUDENT = PHASE2_BEST


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
    ranged(parser.add_argument("--limit", type=int, default=None,
                               help="use only the first N images of the manifest"), 1)
    ranged(parser.add_argument("--threshold", type=float, default=0.5,
                               help="score threshold for kept detections"), 0, 1)
    parser.add_argument("--auto-checklist", action="store_true",
                        help="also write checklist.json from the automatic suggestions (for runs with no human)")
    ranged(parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)"), 1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.set_defaults(func=run)


# --- the command ------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Parse-side checks, :func:`sam3m4.visual.qa.build_visual_qa`, then what it wrote on stdout."""
    import torch

    from sam3m4.visual.qa import build_visual_qa

    if args.threads:
        torch.set_num_threads(args.threads)
    check_run_name(args.run, "--run")
    res = build_visual_qa(manifest=args.manifest, prompts=args.prompts, teacher=args.teacher, student=args.student,
                          run=args.run, out=args.out, limit=args.limit, threshold=args.threshold,
                          auto_checklist=args.auto_checklist, device=args.device)
    for note in res.notes:
        print(note)
    print(f"wrote {res.index}: {len(res.pairs)} pairs ({res.images} images x {len(res.prompts)} prompts) in "
          f"{res.seconds:.1f} s")
    if res.kept_reviewer:
        print(f"kept {res.checklist_path}: it holds {res.kept_reviewer}'s review (not overwritten by --auto-checklist)")
    elif res.checklist_written:
        print(f"wrote {res.checklist_path} (automatic suggestions: "
              + ", ".join(f"{k} {v['verdict']}" for k, v in res.suggestions.items()) + ")")
    return 0

"""``sam3m4 saco-eval``: score official-format predictions with Meta's SA-Co evaluators (cgF1, IL_MCC, pmF1, pHOTA).

    sam3m4 saco-eval image --gt gold_fg_food_merged_a_test.json gold_fg_food_merged_b_test.json \\
        gold_fg_food_merged_c_test.json --pred preds.json --out eval.json
    sam3m4 saco-eval video --gt saco_veval_sav_test.json --pred video_preds.json --out eval.json

Predictions come from ``sam3m4 eval --saco-preds FILE`` (or any SAM 3-style writer). OUT holds the evaluators'
own keys and values (image: what ``CGF1Evaluator.evaluate`` returns; video: ``{"dataset_results",
"video_np_results"}``); the headline numbers are printed. The evaluators' own output goes to ``--log`` if given.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from sam3m4.fileio import staged_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="saco_kind", metavar="KIND", required=True)
    for kind, help_text in (("image", "SA-Co image (Gold/Silver style): several --gt files = the annotators (oracle)"),
                            ("video", "SA-Co/VEval video: one --gt file")):
        cmd = sub.add_parser(kind, help=help_text)
        cmd.add_argument("--gt", type=Path, nargs="+" if kind == "image" else 1, required=True,
                         help="ground-truth JSON" + (" file(s), e.g. the a, b, c files of one Gold subset"
                                                     if kind == "image" else ""))
        cmd.add_argument("--pred", type=Path, required=True, help="predictions JSON (official format)")
        cmd.add_argument("--out", type=Path, required=True, help="where the evaluator's result JSON goes")
        cmd.add_argument("--log", type=Path, default=None, help="keep the evaluator's printed output in this file")
        cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sam3m4.eval.saco import evaluate_image, evaluate_video, format_table, headline, write_result

    start = time.perf_counter()
    # the log is a temporary file until the result is written: a failed run leaves --log as it was (or absent)
    with staged_log(args.log, keep_on_error=False) if args.log else contextlib.nullcontext() as log:
        if args.saco_kind == "image":
            result = evaluate_image(args.gt, args.pred, log=log)
        else:
            result = evaluate_video(args.gt[0], args.pred, log=log)
        write_result(args.out, result)
    print(format_table({args.pred.name: headline(result, args.saco_kind)}, args.saco_kind))
    print(f"SAM 3 evaluator result: {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0

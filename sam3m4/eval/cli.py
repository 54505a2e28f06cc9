"""``sam3m4 eval``: score a model on a dataset's val split and write the numbers to the results store.

    sam3m4 eval --model gt --data data/synth --split val --run demo      # sanity: GT scored as a prediction
"""

from __future__ import annotations

import argparse
from pathlib import Path

# --model -> (results stage, subject prefix). `gt` scores the ground truth against itself: a check of the
# readers and metrics that must give mIoU = Presence F1 = J&F = 1.
MODELS = {"gt": ("sanity", "ground_truth")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=sorted(MODELS), required=True, help="what to score")
    parser.add_argument("--data", type=Path, default=Path("data/synth"),
                        help="dataset root with saco_image/ and saco_video/ (default: data/synth)")
    parser.add_argument("--split", default="val", help="split name: <data>/saco_image/<split>.json (default: val)")
    parser.add_argument("--num-val", type=int, default=None, help="score only the first N image pairs")
    parser.add_argument("--no-video", action="store_true", help="skip the video pairs")
    parser.add_argument("--run", default="demo", help="results go to reports/<run>/results.jsonl")
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold for kept detections")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sam3m4.data import SacoImageDataset, SacoVideoDataset
    from sam3m4.eval.image import evaluate_pairs, ground_truth_predictor
    from sam3m4.eval.video import evaluate_videos, ground_truth_video_predictor
    from sam3m4.report.environment import host_summary
    from sam3m4.results import ResultsStore

    stage, subject = MODELS[args.model]
    store = ResultsStore(args.run)
    image_json = args.data / "saco_image" / f"{args.split}.json"
    if not image_json.is_file():
        raise FileNotFoundError(f"{image_json}: no such file (generate it with `sam3m4 data synth --out {args.data}`)")
    images = SacoImageDataset(image_json)
    res = evaluate_pairs(images, ground_truth_predictor, num=args.num_val, threshold=args.threshold)
    where = f"host CPU ({host_summary()}), sam3m4.metrics on {res.num_pairs} pairs of {image_json}"
    for metric, value in (("miou", res.miou), ("presence_f1", res.presence.f1), ("il_mcc", res.presence.il_mcc)):
        store.record(stage=stage, subject=f"{subject}/image", metric=metric, value=value, unit="fraction",
                     provenance=where, artifact=image_json)
    print(f"{args.model} image: mIoU {res.miou:.4f} over {res.num_pairs} pairs, Presence F1 {res.presence.f1:.4f}, "
          f"IL_MCC {res.presence.il_mcc:.4f}")
    video_json = args.data / "saco_video" / f"{args.split}.json"
    if not args.no_video and video_json.is_file():
        videos = SacoVideoDataset(video_json)
        jf = evaluate_videos(videos, ground_truth_video_predictor)
        where = f"host CPU ({host_summary()}), sam3m4.metrics DAVIS J&F on {jf.num_objects} objects of {video_json}"
        for metric, value in (("jf", jf.jf_mean), ("j", jf.j_mean), ("f", jf.f_mean)):
            store.record(stage=stage, subject=f"{subject}/video", metric=metric, value=value, unit="fraction",
                         provenance=where, artifact=video_json)
        print(f"{args.model} video: J&F {jf.jf_mean:.4f} (J {jf.j_mean:.4f}, F {jf.f_mean:.4f}) over "
              f"{jf.num_objects} objects")
    print(f"recorded in {store.path}")
    return 0

"""``sam3m4 export``: one ``.pte`` per backend x quant mode, measured and recorded (report section 5).

    sam3m4 export --backend xnnpack --mode int8_int4 --quantized checkpoints/quantized --run demo
    sam3m4 export --backend xnnpack --mode chosen --quantized checkpoints/quantized   # Stage 4's decision for it
    sam3m4 export --backend coreml --mode int4                 # lowers on Linux; runs only on Apple hardware
    sam3m4 export --backend qnn --mode int8_int4               # needs QNN_SDK_ROOT (checked before any import)
    sam3m4 export --backend xnnpack --mode fp16 --ckpt checkpoints/video_distillation/video_epoch2.pt
    sam3m4 export --backend coreml --mode int4 --vocabulary phrases.txt   # only these phrases' token rows
    sam3m4 export --backend xnnpack --mode int4 --config configs/export.yaml [key=value ...]   # flags win

Reads the quantized model ``sam3m4 quantize`` saved under ``<quantized>/<mode>/`` (a tracker's folder also
gives the ``track`` method) and writes ``<out>/<name>_<backend>_<mode>.pte``. Records (stage ``stage5``,
subject ``<backend>/<mode>``): ``export_ok``, ``pte_mb``, ``npu_percent`` (Core ML / QNN; XNNPACK:
``cpu_delegation_percent``) with the non-delegated ops in the note; for XNNPACK, which runs here, also the
numerics against eager (``mask_iou``, ``max_abs_error``) and the host latency (``host_image_latency_ms`` p50,
``host_image_latency_p90_ms``, ``host_video_fps``) and the deployed accuracy of the ``.pte`` on Stage 4's val
pairs (``--num-val`` of ``--data``: ``miou``, ``presence_f1``, SA-Co ``saco_cgf1`` / ``saco_il_mcc``, ``jf``,
``deployed_miou_drop``, ``export_miou_gap``); the same for Core ML when it runs on a Mac (untested here: Linux
hosts). ``--mode chosen`` exports the mode Stage 4 decided for the backend (``<quantized>/decision.json``).
On-device latency and FPS come from ``sam3m4 device import``; a backend that cannot run here gets a "not measured"
record with the reason. Every ``.pte`` also gets a verification bundle ``<pte stem>.bpte`` (``--bundle-k`` real
val inputs + eager outputs; run here where the flow runs, else on the phone and imported with ``sam3m4 device
import``), and with ``--op-gaps`` XNNPACK the per-operator gaps ``<pte stem>.op_gaps.json``. An export that fails
exits 1 after recording where it failed.
This file only parses the flags: the work is :func:`sam3m4.export.case.export_case`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam3m4.config import add_config_arguments, resolve_args
from sam3m4.flags import ranged
from sam3m4.paths import EXPORT_DIR, QUANTIZED_DIR

BACKENDS = ("coreml", "qnn", "xnnpack")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--mode", required=True, choices=("chosen", "fp16", "int4", "int8_int4", "qat_int4", "qat_int8_int4"),
                        help="quant mode, or `chosen`: Stage 4's decision for --backend (<quantized>/decision.json)")
    parser.add_argument("--quantized", type=Path, default=Path(QUANTIZED_DIR),
                        help="`sam3m4 quantize --out` folder (one <mode>/ per mode)")
    parser.add_argument("--ckpt", type=Path, default=None,
                        help="instead of --quantized: a Phase 2 or video checkpoint, quantized here in --mode")
    parser.add_argument("--out", type=Path, default=Path(EXPORT_DIR))
    parser.add_argument("--name", default=None, help="model name in the file name (default: sam3m4_<preset>)")
    ranged(parser.add_argument("--runs", type=int, default=50,
                               help="timed host runs (after 10 warm-up), XNNPACK only"), 1)
    parser.add_argument("--vocabulary", type=Path, default=None, metavar="FILE",
                        help="the deployment's phrases (one per line) or a .vocab.json: keep only their token rows "
                             "and write <pte stem>.vocab.json for the app's tokenizer (default: all 49408)")
    ranged(parser.add_argument("--num-val", type=int, default=200,
                               help="val pairs the .pte is scored on where it runs (as `sam3m4 quantize --num-val`)"),
           1)
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset root with saco_image/val.json, for the deployed score and the bundle's inputs "
                             "(default: the checkpoint's data root)")
    parser.add_argument("--no-deployed", dest="deployed", action="store_false",
                        help="skip the deployed accuracy (the .pte scored on the val pairs)")
    parser.add_argument("--shipped", choices=("decision", "extra"), default=None,
                        help="record why the case is exported: Stage 4's decision, or an extra config case")
    ranged(parser.add_argument("--bundle-k", type=int, default=8, metavar="K",
                               help="real val inputs per method in the verification bundle <pte stem>.bpte, also the "
                                    "source of XNNPACK's per-operator gaps (0: neither)"), 0, 1000)
    parser.add_argument("--op-gaps", action="store_true",
                        help="XNNPACK: also the per-operator gaps vs eager with ExecuTorch's Inspector "
                             "(<pte stem>.op_gaps.json; slow: one extra per-operator lowering per method)")
    parser.add_argument("--run", default="demo", help="results store run (reports/<run>/)")
    add_config_arguments(parser, "configs/export.yaml")  # --config FILE, key=value; flags win over the file
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args = resolve_args(args)  # --config FILE and key=value (flags win)
    from sam3m4.export.case import export_case

    return export_case(args.backend, args.mode, quantized=args.quantized, ckpt=args.ckpt, out_dir=args.out,
                       name=args.name, runs=args.runs, vocabulary=args.vocabulary, num_val=args.num_val,
                       data=args.data, deployed=args.deployed, shipped=args.shipped, run=args.run,
                       bundle_k=args.bundle_k, op_gaps=args.op_gaps).exit_code

"""``sam3m4 export``: one ``.pte`` per backend x quant mode, measured and recorded (report section 5).

    sam3m4 export --backend xnnpack --mode int8_int4 --quantized checkpoints/quantized --run demo
    sam3m4 export --backend coreml --mode int4                 # lowers on Linux; runs only on Apple hardware
    sam3m4 export --backend qnn --mode int8_int4               # needs QNN_SDK_ROOT (checked before any import)
    sam3m4 export --backend xnnpack --mode fp16 --ckpt checkpoints/video_distillation/video_epoch2.pt
    sam3m4 export --backend xnnpack --mode int4 --config configs/export.yaml [key=value ...]   # flags win

Reads the quantized model ``sam3m4 quantize`` saved under ``<quantized>/<mode>/`` (a tracker's folder also
gives the ``track`` method) and writes ``<out>/<name>_<backend>_<mode>.pte``. Records (stage ``stage5``,
subject ``<backend>/<mode>``): ``export_ok``, ``pte_mb``, ``npu_percent`` (Core ML / QNN; XNNPACK:
``cpu_delegation_percent``) with the non-delegated ops in the note; for XNNPACK, which runs here, also the
numerics against eager (``mask_iou``, ``max_abs_error``) and the host latency (``host_image_latency_ms`` p50,
``host_image_latency_p90_ms``, ``host_video_fps``); the same for Core ML when it runs on a Mac (untested here: Linux hosts). On-device latency and FPS come from ``sam3m4 device import``; a backend that cannot run
here gets a "not measured" record with the reason. An export that fails exits 1 after recording where it failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam3m4.config import add_config_arguments, resolve_args
from sam3m4.paths import EXPORT_DIR, QUANTIZED_DIR
from sam3m4.results import schema

BACKENDS = ("coreml", "qnn", "xnnpack")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--mode", required=True, choices=("fp16", "int4", "int8_int4", "qat_int4", "qat_int8_int4"))
    parser.add_argument("--quantized", type=Path, default=Path(QUANTIZED_DIR),
                        help="`sam3m4 quantize --out` folder (one <mode>/ per mode)")
    parser.add_argument("--ckpt", type=Path, default=None,
                        help="instead of --quantized: a Phase 2 or video checkpoint, quantized here in --mode")
    parser.add_argument("--out", type=Path, default=Path(EXPORT_DIR))
    parser.add_argument("--name", default=None, help="model name in the file name (default: sam3m4_<preset>)")
    parser.add_argument("--runs", type=int, default=50, help="timed host runs (after 10 warm-up), XNNPACK only")
    parser.add_argument("--run", default="demo", help="results store run (reports/<run>/)")
    add_config_arguments(parser, "configs/export.yaml")  # --config FILE, key=value; flags win over the file
    parser.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Arguments checked before anything loads or lowers: one line naming the flag (exit 2)."""
    from sam3m4.errors import ConfigError

    if args.runs < 1:
        raise ConfigError(f"--runs {args.runs}: must be >= 1")
    if args.name is not None and (not args.name.strip() or Path(args.name).name != args.name):
        raise ConfigError(f"--name {args.name!r}: must be a plain file name part (no folders)")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    if getattr(args, "ckpt", None):
        if not Path(args.ckpt).is_file():
            raise ConfigError(f"--ckpt {args.ckpt}: no such checkpoint file")
    elif not (args.quantized / args.mode).is_dir():
        where = "no such folder" if not args.quantized.is_dir() else f"has no {args.mode}/ folder"
        raise ConfigError(f"--quantized {args.quantized}: {where} (make it with `sam3m4 quantize --mode "
                          f"{args.mode} --out {args.quantized}`, or pass --ckpt)")


def run(args: argparse.Namespace) -> int:
    check_args(resolve_args(args))
    from sam3m4.export.export import export_pte, records
    from sam3m4.export.flows import get_flow
    from sam3m4.quantize.storage import load_quantized
    from sam3m4.results import ResultsStore
    from sam3m4.results.store import NOT_MEASURABLE

    if getattr(args, "ckpt", None):
        from sam3m4.quantize.pipeline import build_mode, image_model

        model, _ = build_mode(args.ckpt, args.mode)
        meta = {"preset": image_model(model).preset, "kind": "tracker" if hasattr(model, "memory") else "student"}
    else:
        model, meta = load_quantized(args.quantized / args.mode)
        if meta["mode"] != args.mode:  # a folder copied or renamed by hand: the file name would lie
            from sam3m4.errors import DataFormatError

            raise DataFormatError(f"{args.quantized / args.mode / 'quantized.json'}: mode: {meta['mode']!r}, but "
                                  f"--mode is {args.mode!r}")
    tracker = model if meta.get("kind") == "tracker" else None
    student = model.student if tracker is not None else model
    name = args.name or f"sam3m4_{meta['preset']}"
    result = export_pte(student, backend=args.backend, mode=args.mode, out_dir=args.out, model_name=name,
                        tracker=tracker)
    store = ResultsStore(args.run, root=getattr(args, "results_root", "reports"))
    for kw in records(result):
        if not result.ok:
            why = "not attempted" if kw.get("outcome") else f"failed at {result.failed_stage}"
            kw["provenance"] = f"{kw['provenance']}; {why}: {result.error}"
        if kw["metric"] in (schema.NPU_PERCENT, schema.CPU_DELEGATION_PERCENT):
            missing = sorted({op for d in result.delegation.values() for op in d.non_delegated_ops})
            kw["note"] = "not delegated: " + (", ".join(missing) or "none")
        store.record(**kw)
    subject = f"{args.backend}/{args.mode}"
    if not result.ok:
        print(f"sam3m4 export: {subject}: failed at {result.failed_stage}: {result.error}")
        return 0 if result.unsupported else 1
    cover = {m: f"{100 * d.coverage:.1f}%" for m, d in result.delegation.items()}
    print(f"{result.path}: {result.size_bytes / 1e6:.2f} MB, methods {', '.join(result.methods)} "
          f"({result.layout}), delegated {cover}, {result.seconds:.0f} s")
    if args.backend == "coreml":
        record_ane_share(result, store, subject)
    measured = True
    if get_flow(args.backend).runs_here():  # XNNPACK anywhere; Core ML on a Mac (UNTESTED here: Linux hosts)
        measured = measure_on_host(result, student, tracker, store, subject, args.runs)
    if args.backend != "xnnpack":
        why = ("Core ML executes only on macOS/iOS" if args.backend == "coreml" else
               "QNN HTP executes only on a Snapdragon device")
        for metric in (schema.IMAGE_LATENCY_MS, schema.VIDEO_FPS):
            store.record(stage=schema.STAGE5, subject=subject, metric=metric, value=None, outcome=NOT_MEASURABLE,
                         note=f"not measured on a phone here: {why}; run the ExecuTorch benchmark app on a device "
                              f"and `sam3m4 device import`", artifact=result.path)
    return 0 if measured else 1


def measure_on_host(result, student, tracker, store, subject: str, runs: int) -> bool:
    """Numerics of the ``.pte`` against eager, and host latency, for a backend that runs here (:meth:`Flow.runs_here`).

    True when measured. A ``.pte`` that does not load or run here gets each metric not yet recorded
    (``mask_iou/forward``, ``host_image_latency_ms`` [, ``host_video_fps``]) recorded with no value and
    ``failed_stage`` ``load`` / ``run`` (the gates fail on it), and False is returned."""
    from sam3m4.export.runtime import load_program

    pending = ["mask_iou/forward", "host_image_latency_ms"] + (["host_video_fps"] if tracker is not None else [])
    stage = "load"
    try:
        load_program(result.path)
        stage = "run"
        _measure_on_host(result, student, tracker, store, subject, runs, pending)
    except Exception as err:  # noqa: BLE001  (recorded where it stopped, then reported)
        error = f"{type(err).__name__}: {err}"[:800]
        for metric in pending:
            store.record(stage=schema.STAGE5, subject=subject, metric=metric, value=None, failed_stage=stage,
                         note=f"the .pte failed to {stage} on this host: {error}", artifact=result.path)
        print(f"sam3m4 export: {subject}: the .pte failed to {stage} on this host: {error}")
        return False
    return True


def _measure_on_host(result, student, tracker, store, subject: str, runs: int, pending: list[str]) -> None:
    """:func:`measure_on_host`'s measurements; each metric recorded is removed from ``pending``."""
    from sam3m4.export.runtime import benchmark_pte, check_pte

    def record(**kw):
        store.record(stage=schema.STAGE5, subject=subject, artifact=result.path, **kw)
        if kw["metric"] in pending:
            pending.remove(kw["metric"])

    checks = check_pte(result.path, student, tracker=tracker)
    for method, c in checks.items():
        how = f"ExecuTorch runtime vs torch eager, {method}, seeded sample inputs, batch 1"
        if c.mask_iou is not None:
            record(metric=f"mask_iou/{method}", value=c.mask_iou, unit="fraction",
                   provenance=f"{how}; IoU of mask_logits > 0 over {c.iou_queries}")
        worst = max(c.max_abs_err, key=c.max_abs_err.get)
        record(metric=f"max_abs_error/{method}", value=c.max_abs_err[worst],
               provenance=f"{how}; worst output {worst} (its max |eager| {c.ref_max_abs[worst]:.3g})")
    image = benchmark_pte(result.path, "forward", student, tracker=tracker, runs=runs, threads=1)
    record(metric=schema.HOST_IMAGE_LATENCY_MS, value=image["p50_ms"], unit="ms",
           provenance=f"{result.backend} .pte on {image['provenance']}; forward (image, cached prompt), 10 warm-up then p50 of {runs} "
                      f"(p90 {image['p90_ms']:.2f}, trimmed mean {image['trimmed_mean_ms']:.2f})")
    record(metric=schema.HOST_IMAGE_LATENCY_P90_MS, value=image["p90_ms"], unit="ms",  # the report's latency plot
           provenance=f"{result.backend} .pte on {image['provenance']}; forward, 10 warm-up then p90 of {runs}")
    line = f"host {result.backend}: forward p50 {image['p50_ms']:.2f} ms"
    if tracker is not None:
        track = benchmark_pte(result.path, "track", student, tracker=tracker, runs=runs, threads=1)
        record(metric=schema.HOST_VIDEO_FPS, value=track["fps"], unit="fps",
               provenance=f"{result.backend} .pte on {track['provenance']}; track step fed its own state, 10 warm-up then 1000 / p50 "
                          f"of {runs} ({track['p50_ms']:.2f} ms)")
        line += f", track {track['fps']:.1f} FPS"
    print(line + "; " + ", ".join(f"{m} mask IoU {c.mask_iou if c.mask_iou is None else round(c.mask_iou, 3)}"
                                  for m, c in checks.items()))


def record_ane_share(result, store, subject: str) -> None:
    """``ane_percent``: MLComputePlan's ANE share of the Core ML partitions' ops (macOS 14.4+), else why not."""
    from sam3m4.export.ane import ComputePlanUnavailable, ane_share
    from sam3m4.results.store import NOT_MEASURABLE

    try:
        share = ane_share(result.path)
    except ComputePlanUnavailable as err:
        store.record(stage=schema.STAGE5, subject=subject, metric=schema.ANE_PERCENT, value=None, artifact=result.path,
                     outcome=NOT_MEASURABLE,
                     note=f"not measured here: {err}; the NPU cell uses the AOT delegated-op share")
        return
    others = ", ".join(f"{k} x{v}" for k, v in sorted(share["non_ane"].items())) or "none"
    store.record(stage=schema.STAGE5, subject=subject, metric=schema.ANE_PERCENT, value=100 * share["share"], unit="percent",
                 artifact=result.path, note=f"not on the ANE: {others}",
                 provenance=f"coremltools MLComputePlan (CPU_AND_NE) on this Mac: {share['ane_ops']} of "
                            f"{share['ops']} planned ops of {share['partitions']} Core ML partitions prefer the ANE")
    print(f"MLComputePlan: {100 * share['share']:.1f}% of planned ops on the ANE")

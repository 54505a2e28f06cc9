"""``sam3m4 device``: import on-device numbers from ExecuTorch's benchmark apps into the results store.

    sam3m4 device import benchmark_results.json [ios_benchmark.log ...] [--pte-dir outputs/export] [--run demo]
    sam3m4 device import results.json --sha256 repvit_m0_9_504_qnn_int8_int4.pte=<64 hex>   # pin the build
    sam3m4 device import results.json --dry-run                                             # print, record nothing
    sam3m4 device import sam3m4_tiny_coreml_int4.bundle_result.json --pte-dir outputs/export   # a bundle run on a phone

FILE is an Android minibench ``benchmark_results.json`` or an iOS benchmark XCTest log (formats:
:mod:`sam3m4.device.results`). Each measured ``<model>_<backend>_<quant>.pte`` must be in ``--pte-dir``
(sha256 checked against ``--sha256`` and a ``<name>.pte.sha256`` sidecar when given, see
:mod:`sam3m4.device.match`). Records go to ``reports/<run>/results.jsonl``, stage ``stage5``, subject
``<platform>/<backend>/<quant>`` (``android/qnn/int8_int4``): ``image_latency_ms`` (ms), ``video_fps`` (fps,
from the tracker step: a .pte whose model name contains ``track``, or an iOS ``test_track_...`` test),
``load_ms`` (ms), ``memory_mb`` (MB) and, for the tracker, ``track_step_ms``, ``track_load_ms``, ``track_memory_mb``;
``image_latency_ms`` and ``video_fps`` are judged against the targets file (``--targets``, else
``$SAM3M4_TARGETS``, else ``acceptance/targets.yaml``: :func:`sam3m4.results.targets.locate_targets`; a broken
file stops the import). Each record's artifact is the .pte, with its sha256.

A verification bundle's result (JSON with ``"format": "sam3m4.bundle_result/1"``, :mod:`sam3m4.device.bundles`)
is bound to its ``.bpte`` by sha256: the ``.bpte`` of that name in ``--pte-dir`` must hash to the result's
``bundle_sha256`` or nothing is recorded; it records ``bundle_mask_iou`` (gated), ``bundle_passed`` and
``bundle_max_abs_error`` under ``<platform>/<backend>/<quant>``.

Impossible numbers (a time <= 0, a negative memory figure, a non-finite value) and two values for the same
.pte, device and metric among the FILEs are refused with one line naming the file and the entry. Importing
into a run that already has a device record for a subject and metric replaces it (the latest record is the
one the report and the gates read): the import prints each replacement and writes it into the new record's
provenance. A .pte that failed to load (Android ``load_status`` != 0) is recorded as ``failed_stage="load"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam3m4.paths import EXPORT_DIR
from sam3m4.results import schema

# metric -> key in the targets file (acceptance/targets.yaml)
GATED = {"image_latency_ms": "image_latency_ms", "video_fps": "video_fps"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="record Android benchmark_results.json / iOS XCTest log numbers (stage5)",
                         description="Parse ExecuTorch benchmark-app results, match each to its exported .pte "
                                     "(sha256), and record latency, fps, load time and memory under stage5.")
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE",
                     help="Android benchmark_results.json, iOS benchmark XCTest log, or a bundle result JSON")
    imp.add_argument("--pte-dir", type=Path, default=Path(EXPORT_DIR),
                     help="folder of exported <model>_<backend>_<quant>.pte files (default: outputs/export)")
    imp.add_argument("--run", default="demo", help="results store run (reports/<run>/; default: demo)")
    imp.add_argument("--root", default="reports", help="reports folder (default: reports)")
    imp.add_argument("--sha256", action="append", default=[], metavar="NAME=HEX",
                     help="expected sha256 of a .pte (NAME with or without .pte); repeatable")
    imp.add_argument("--targets", default=None,
                     help="targets file (default: $SAM3M4_TARGETS, else acceptance/targets.yaml in or above the cwd)")
    imp.add_argument("--dry-run", action="store_true", help="parse, match and print; record nothing")
    imp.set_defaults(func=run)


def parse_sha256_args(items: list[str]) -> dict[str, str]:
    """``["a_qnn_int4.pte=<hex>", "b_qnn_fp16=<hex>"]`` -> ``{"a_qnn_int4.pte": hex, "b_qnn_fp16.pte": hex}``."""
    from sam3m4.device.match import parse_sha256
    from sam3m4.errors import ConfigError

    out = {}
    for item in items:
        name, sep, digest = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--sha256 {item!r}: expected NAME=HEX (e.g. model_qnn_int4.pte=<64 hex digits>)")
        name = name.strip()
        out[name if name.endswith(".pte") else name + ".pte"] = parse_sha256(digest, f"--sha256 {name}")
    return out


def run(args: argparse.Namespace) -> int:
    if args.device_command == "import":
        return run_import(args)
    raise ValueError(f"unknown device action {args.device_command!r}")


def run_import(args: argparse.Namespace) -> int:
    from sam3m4.device.match import clean_name, match_pte
    from sam3m4.device.results import device_metrics, parse_results_file
    from sam3m4.errors import ConfigError
    from sam3m4.results import ResultsStore, TargetsNotFound, load_targets_file

    # --sha256 names compared in the iOS app's cleaned form too (punctuation -> "_"), like the .pte lookup
    expected = {clean_name(name): (name, digest) for name, digest in parse_sha256_args(args.sha256).items()}
    from sam3m4.device.bundles import bundle_records, match_bundle_result
    from sam3m4.export.bundle import is_bundle_result

    results = [p for p in args.files if Path(p).is_file() and is_bundle_result(p)]  # verification bundle results
    bundles = [match_bundle_result(p, args.pte_dir) for p in results]  # every sha256 checked before any write
    rows = [row for path in args.files if path not in results for row in parse_results_file(path)]
    metrics = device_metrics(rows) if rows else []
    if not metrics and not bundles:
        raise ConfigError(f"{', '.join(map(str, args.files))}: no latency, load or memory metric to record")
    matches = {}
    for m in metrics:  # match every .pte before writing anything: all or nothing
        if m.row.pte_name not in matches:
            want = expected.get(clean_name(m.row.pte_name), (None, None))[1]
            matches[m.row.pte_name] = match_pte(m.row, args.pte_dir, want)
    unused = sorted(name for key, (name, _) in expected.items() if key not in {clean_name(n) for n in matches})
    if unused:
        raise ConfigError(f"--sha256 {unused[0]}: no imported result measured this .pte")
    try:  # a broken targets file stops the import; only a missing default file is tolerated
        tf = load_targets_file(args.targets)
        targets = tf.targets
        print(f"targets: {tf.describe()}")
    except TargetsNotFound:
        targets = {}
        print("note: no targets file found; image_latency_ms and video_fps are recorded without a gate")

    store = None if args.dry_run else ResultsStore(args.run, root=args.root)
    before = {} if store is None else {(r.subject, r.metric): r for r in store.records() if r.stage == schema.STAGE5}
    for m in metrics:
        row, pte = m.row, matches[m.row.pte_name]
        target = targets.get(GATED.get(m.metric, "")) if m.value is not None else None  # a failure is no verdict
        gate = dict(target=target.value, comparison=target.comparison) if target is not None else {}
        if m.value is None:
            shown, verdict = f"{'-':>10s}", f" FAIL (failed at {m.failed_stage})"
        else:
            shown = f"{m.value:10.2f}"
            verdict = "" if target is None else " pass" if target.check(m.value) else f" FAIL ({target.describe()})"
        print(f"{m.subject:28s} {m.metric:18s} {shown} {m.unit:3s}{verdict}  <- {pte.path.name} "
              f"on {row.device}, {row.os}")
        provenance = f"on-device: {row.device}, {row.os}, ExecuTorch benchmark app ({row.source})"
        old = before.get((m.subject, m.metric))
        if old is not None:
            replaced = f"replaces {old.value!r} {old.unit} recorded {old.timestamp or 'earlier'} ({old.provenance})"
            print(f"  note: {m.subject} {m.metric}: {replaced}")
            provenance += f"; {replaced}"
        if store is None:
            continue
        note = f"{row.metric} ({row.method}) at {row.where}"
        if m.metric == "load_status" or m.failed_stage == "load":
            code = int(row.value)
            note = f"the .pte failed to load on the device (ExecuTorch error {code}); {note}"
        value = None if m.value is None else round(m.value, 4)
        store.record(stage=schema.STAGE5, subject=m.subject, metric=m.metric, value=value, unit=m.unit,
                     provenance=provenance, artifact=str(pte.path), sha256=pte.sha256, note=note,
                     failed_stage=m.failed_stage, **gate)
    for imp in bundles:
        for kw in bundle_records(imp, targets.get("bundle_mask_iou")):
            gate = targets.get("bundle_mask_iou") if kw.get("target") is not None else None
            verdict = "" if gate is None else " pass" if gate.check(kw["value"]) else f" FAIL ({gate.describe()})"
            print(f"{imp.subject:28s} {kw['metric']:18s} {kw['value']!s:>10.10s}{verdict}  <- {imp.bpte.name} on "
                  f"{imp.result.device}, {imp.result.os}")
            if store is not None:
                store.record(**kw)
    if store is not None:
        print(f"recorded {len(metrics)} stage5 records in {store.path}")
    else:
        print(f"dry run: {len(metrics)} records not written")
    return 0

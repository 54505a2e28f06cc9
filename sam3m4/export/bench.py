"""``sam3m4 bench``: every production student preset exported for Core ML and XNNPACK, measured in one run.

    sam3m4 bench                                   # both production presets, ~1 h on this 2-core host; prints the table
    sam3m4 bench --doc docs/presets.md             # also rewrites the bench table in that file (between markers)
    sam3m4 bench --presets repvit_m0_9_504 --cases xnnpack:fp16 --no-reference
    sam3m4 bench --kernels-only                    # int8 / fp32 of single layers on this CPU (~1 min)

Random weights (size and speed do not depend on training). Per preset it builds the whole on-device
student (image path + text encoder + video ``track`` step, a :class:`~sam3m4.models.video.StudentTracker`),
counts the image path's GFLOPs (``FlopCounterMode``, batch 1, prompt cached), quantizes a copy per case
(:func:`sam3m4.quantize.modes.apply_mode`) and writes ``<out>/sam3m4_<preset>_<backend>_<mode>.pte`` with
:func:`~sam3m4.export.export.export_pte`. XNNPACK ``.pte`` s are timed here through ``executorch.runtime``
(10 warm-up, then ``--runs``); Core ML ``.pte`` s are timed only on macOS (Core ML executes on Apple
hardware only), elsewhere their latency is recorded as not measured, with that reason.

In the same run it measures this machine's fp32 matmul rate (2048^3, torch) and, unless ``--no-reference``,
one forward of the full SAM 3 config (``Sam3Config()`` defaults, random weights, 1008 px, eager fp32), so
the speed benchmarks compare numbers from one run on one (noisy) machine:

* ``bench_speedup``: full SAM 3 forward / the student's XNNPACK image path (p50);
* ``bench_flop_floor_ratio``: the XNNPACK image path's p50 / its FLOP floor (GFLOPs / measured matmul rate);
* ``bench_coreml_int4_mb`` / ``bench_coreml_fp16_mb``: the whole student's Core ML ``.pte``;
* ``bench_xnnpack_int8_speed_ratio``: the XNNPACK ``int8_int4`` image path's p50 / the fp16 mode's (fp32 program),
  judged only on a CPU with int8 dot-product instructions (VNNI, AMX, ARM dotprod / i8mm); elsewhere
  :data:`NO_INT8_DOT`;
* ``xnnpack_int8_mac_share``: the share of the ``int8_int4`` image path's MACs in XNNPACK int8 kernels, read from
  the lowered graph (:mod:`sam3m4.export.int8_share`): the same on every host.

It also times single layers in fp32 and int8 (:mod:`sam3m4.export.kernels`; ``--kernels-only`` for just that)
and names the CPU's int8 dot-product instructions, so a missed int8 target shows whether the host (no VNNI /
dotprod: int8 no faster than fp32) or the program is the limit.

Thresholds come from the targets file (``bench_*`` entries); every figure goes to the results store
(run ``bench``, stage ``bench``) with its provenance, and ``<out>/bench.json`` holds the table.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from pathlib import Path

from sam3m4.fileio import atomic_write_json, atomic_write_text
from sam3m4.errors import ConfigError, Sam3m4Error
from sam3m4.export.export import export_pte
from sam3m4.env import cpu_name, int8_dot_isa
from sam3m4.export.flows import get_flow
from sam3m4.export.kernels import kernel_ratios, kernel_table
from sam3m4.export.runtime import benchmark_pte
from sam3m4.flags import ranged
from sam3m4.models.build import PRESETS, PRODUCTION_PRESETS, build_student
from sam3m4.models.export_wrappers import COMPONENTS, example_inputs, wrap
from sam3m4.models.table import count_flops
from sam3m4.models.video import StudentTracker
from sam3m4.progress import progress_bar
from sam3m4.quantize.modes import apply_mode
from sam3m4.results import ResultsStore, schema
from sam3m4.results.targets import load_targets

README_START, README_END = "<!-- sam3m4 bench: start -->", "<!-- sam3m4 bench: end -->"
SPLIT = (("backbone", "backbone + FPN"), ("text_encoder", "text encoder"), ("decoder", "decoder"),
         ("mask_head", "mask head"), ("track_step", "track step"), ("image_path", "image path"))
"""Latency split columns (key, label): the image path's parts timed one by one, plus the whole methods."""
DEFAULT_CASES = ("coreml:fp16", "coreml:int4", "xnnpack:fp16", "xnnpack:int8_int4")
# targets-file key -> (row key read from the best preset's summary, what it measures)
BENCH_TARGETS = {
    "bench_coreml_int4_mb": "coreml_int4_mb",
    "bench_coreml_fp16_mb": "coreml_fp16_mb",
    "bench_speedup": "speedup",
    "bench_flop_floor_ratio": "flop_floor_ratio",
    "bench_xnnpack_int8_speed_ratio": "xnnpack_int8_ratio",
    "xnnpack_int8_mac_share": "xnnpack_int8_mac_share",
}
NO_INT8_DOT = "not measurable on this CPU (no int8 dot product instructions)"
"""The int8 speed ratio's verdict where the CPU has no int8 dot products: XNNPACK's int8 kernels are then no faster
than fp32 whatever the program; the int8 MAC share (from the lowered graph) stands in."""


# --- measurements ------------------------------------------------------------------------------------------
def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 ``n x n @ n x n`` rate on this machine's CPU with torch's current threads (best of ``repeats``)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def sam3_reference_seconds(warmup: int = 1, runs: int = 1, config=None) -> dict:
    """Eager fp32 forward of SAM 3 (``config`` default ``Sam3Config()``: the full model, 1008 px), random
    weights, batch 1, one 32-token phrase; returns ``{"seconds": median, "params": n, "input_px": px}``."""
    import statistics

    import torch
    from transformers import Sam3Config, Sam3Model

    config = config or Sam3Config()
    torch.manual_seed(0)
    model = Sam3Model(config).eval()
    px = config.vision_config.backbone_config.image_size
    pixels, ids = torch.randn(1, 3, px, px), torch.randint(0, 1000, (1, 32))
    mask = torch.ones_like(ids)
    times = []
    with torch.no_grad():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            model(pixel_values=pixels, input_ids=ids, attention_mask=mask)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "params": sum(p.numel() for p in model.parameters()),
            "input_px": px, "runs": runs, "warmup": warmup}


def image_path_gflops(student) -> float:
    """GFLOPs of the ``forward`` method (image encoder + decoder with a cached prompt), batch 1."""

    return count_flops(lambda: wrap(student, "forward")(*example_inputs(student, "forward", batch=1)))[0]


def latency_split(res, model, out_dir: Path, name: str, runs: int, threads: int) -> dict:
    """Host p50 ms of each part of an XNNPACK case: the image path's parts exported one by one into
    ``<name>_parts_<backend>_<mode>.pte`` (same mode, same quantizers), plus ``encode_text``, ``track`` and
    ``forward`` of the case's own ``.pte``. Returns ``{key of SPLIT: ms}`` (parts do not add up exactly to the
    image path: each part's boundary tensors are outputs, and XNNPACK fuses across them in the whole method)."""

    student = model.student
    parts = export_pte(student, backend=res.backend, mode=res.mode, out_dir=out_dir, model_name=f"{name}_parts",
                       methods=list(COMPONENTS))
    if not parts.ok:
        raise RuntimeError(f"parts export failed at {parts.failed_stage}: {parts.error}")

    def p50(path, method):
        return benchmark_pte(path, method, student, tracker=model, runs=runs, threads=threads)["p50_ms"]

    out = {key: p50(parts.path, method) for key, method in zip(("backbone", "decoder", "mask_head"), COMPONENTS)}
    out.update(text_encoder=p50(res.path, "encode_text"), track_step=p50(res.path, "track"),
               image_path=p50(res.path, "forward"))
    return out


def bench_preset(preset: str, cases, out_dir: Path, runs: int, threads: int, progress=None, split: bool = True) -> dict:
    """Export and measure one preset for every ``backend:mode`` case; returns its row (see :func:`summarise`).
    ``split``: also time the image path's parts of every case that runs here (:func:`latency_split`)."""
    import torch


    torch.manual_seed(0)
    tracker = StudentTracker(build_student(preset)).eval().requires_grad_(False)  # no autograd state: FLOP counter
    row = {"preset": preset, "params": sum(p.numel() for p in tracker.parameters()),
           "text_params": sum(p.numel() for p in tracker.student.text_encoder.parameters()),
           "gflops": image_path_gflops(tracker.student), "input_px": tracker.student.image_size, "cases": []}
    for case in progress_bar(cases, desc=f"bench {preset}", unit="case"):
        backend, mode = case.split(":")
        model = apply_mode(copy.deepcopy(tracker), mode)
        res = export_pte(model.student, backend=backend, mode=mode, out_dir=out_dir, model_name=f"sam3m4_{preset}",
                         tracker=model)
        entry = {"backend": backend, "mode": mode, "ok": res.ok, "seconds_export": res.seconds,
                 "error": None if res.ok else f"{res.failed_stage}: {res.error}"}
        if res.ok:
            entry.update(pte=str(res.path), pte_mb=res.size_bytes / 1e6, sha256=res.sha256, layout=res.layout,
                         coverage_percent=100 * res.coverage, coverage_kind="NPU" if res.is_npu else "CPU")
            if "forward" in res.int8:
                entry.update(int8_mac_percent=res.int8["forward"].percent, int8_macs=res.int8["forward"].summary())
            if get_flow(backend).runs_here():
                try:
                    image = benchmark_pte(res.path, "forward", model.student, tracker=model, runs=runs, threads=threads)
                    track = benchmark_pte(res.path, "track", model.student, tracker=model, runs=runs, threads=threads)
                    entry.update(image_p50_ms=image["p50_ms"], image_p90_ms=image["p90_ms"],
                                 image_trimmed_mean_ms=image["trimmed_mean_ms"], track_fps=track["fps"],
                                 latency_provenance=image["provenance"] + f"; 10 warm-up then p50 of {runs}")
                except Exception as err:  # noqa: BLE001 - e.g. a runtime built without the Core ML backend
                    entry["latency_note"] = f"not measured: the runtime could not execute it ({type(err).__name__}: " \
                                            f"{str(err).splitlines()[0][:160]})"
                if entry.get("image_p50_ms") and split:
                    try:
                        entry["split_ms"] = latency_split(res, model, out_dir, f"sam3m4_{preset}", runs, threads)
                    except Exception as err:  # noqa: BLE001 - reported, the case's own figures stand
                        entry["split_note"] = f"latency split not measured ({type(err).__name__}: " \
                                              f"{str(err).splitlines()[0][:200]})"
            else:
                entry["latency_note"] = ("not measured here: Core ML executes only on macOS / iOS (this host is "
                                         f"{platform.system()})")
        row["cases"].append(entry)
        if progress is not None:
            progress(preset, entry)
    return row


# --- summary, gates, tables --------------------------------------------------------------------------------
def summarise(row: dict, matmul: float, reference_s: float | None) -> dict:
    """The benchmark figures of one preset: Core ML sizes, XNNPACK speed-up and FLOP-floor ratio."""
    by = {(c["backend"], c["mode"]): c for c in row["cases"] if c["ok"]}
    xnn = [c for c in by.values() if c["backend"] == "xnnpack" and c.get("image_p50_ms")]
    fastest = min(xnn, key=lambda c: c["image_p50_ms"]) if xnn else None
    floor_ms = row["gflops"] / matmul * 1e3
    out = {"coreml_int4_mb": by.get(("coreml", "int4"), {}).get("pte_mb"),
           "coreml_fp16_mb": by.get(("coreml", "fp16"), {}).get("pte_mb"),
           "floor_ms": floor_ms, "xnnpack_mode": fastest["mode"] if fastest else None,
           "xnnpack_ms": fastest["image_p50_ms"] if fastest else None, "speedup": None, "flop_floor_ratio": None,
           "xnnpack_int8_ratio": None,
           "xnnpack_int8_mac_share": by.get(("xnnpack", "int8_int4"), {}).get("int8_mac_percent")}
    fp32, int8 = by.get(("xnnpack", "fp16"), {}), by.get(("xnnpack", "int8_int4"), {})
    if fp32.get("image_p50_ms") and int8.get("image_p50_ms"):  # the same run, the same host: a ratio
        out["xnnpack_int8_ratio"] = int8["image_p50_ms"] / fp32["image_p50_ms"]
    if fastest:
        out["flop_floor_ratio"] = fastest["image_p50_ms"] / floor_ms
        if reference_s:
            out["speedup"] = reference_s * 1e3 / fastest["image_p50_ms"]
    return out


def has_int8_dot(isa: str | None) -> bool:
    """True when :func:`sam3m4.env.int8_dot_isa` named int8 dot-product instructions (None: not asked, assumed)."""
    return isa is None or not isa.startswith(("none", "unknown"))


def judge(summary: dict, targets: dict, int8_isa: str | None = None) -> dict:
    """``{target name: (value, passed)}`` for the :data:`BENCH_TARGETS`; ``passed`` None when not measured, and for
    the int8 speed ratio when ``int8_isa`` (:func:`sam3m4.env.int8_dot_isa`) names no int8 dot product."""
    verdicts = {}
    for name, key in BENCH_TARGETS.items():
        if name not in targets:
            continue
        value = summary.get(key)
        if name == "bench_xnnpack_int8_speed_ratio" and not has_int8_dot(int8_isa):
            verdicts[name] = (value, None)
            continue
        verdicts[name] = (value, None if value is None else targets[name].check(value))
    return verdicts


def best_preset(rows: list[dict]) -> str:
    """The preset that passes the most bench targets, ties broken by the faster XNNPACK image path."""
    def key(r):
        passed = sum(1 for _, ok in r["verdicts"].values() if ok)
        return (-passed, r["summary"]["xnnpack_ms"] or float("inf"))
    return min(rows, key=key)["preset"]


def _fmt(value, spec: str, missing: str = "not measured") -> str:
    return missing if value is None else format(value, spec)


def markdown_table(result: dict) -> str:
    """The bench table (``docs/presets.md``): one line per preset x case, then the benchmark lines with their targets."""
    ref = result.get("reference")
    lines = ["| preset | backend | quant | .pte MB | delegated ops | GFLOPs (image path) | host p50 ms (image) | "
             "host FPS (track) |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        for c in row["cases"]:
            if not c["ok"]:
                lines.append(f"| {row['preset']} | {c['backend']} | {c['mode']} | export failed | - | "
                             f"{row['gflops']:.2f} | - | - |")
                continue
            ms = _fmt(c.get("image_p50_ms"), ".1f", "not measured¹" if c["backend"] == "coreml" else "not measured")
            fps = _fmt(c.get("track_fps"), ".0f", "not measured¹" if c["backend"] == "coreml" else "not measured")
            lines.append(f"| {row['preset']} | {c['backend']} | {c['mode']} | {c['pte_mb']:.1f} | "
                         f"{c['coverage_percent']:.1f}% {c['coverage_kind']} | {row['gflops']:.2f} | {ms} | {fps} |")
    lines += ["", "| benchmark (best preset: `%s`) | measured | target | |" % result["best"], "|---|---:|---|---|"]
    best = next(r for r in result["rows"] if r["preset"] == result["best"])
    labels = {"bench_coreml_int4_mb": ("whole student, Core ML int4 .pte", "{:.1f} MB"),
              "bench_coreml_fp16_mb": ("whole student, Core ML fp16 .pte", "{:.1f} MB"),
              "bench_speedup": ("XNNPACK image path vs full SAM 3 (same run)", "{:.0f}x"),
              "bench_flop_floor_ratio": ("XNNPACK image path / FLOP floor", "{:.2f}x"),
              "bench_xnnpack_int8_speed_ratio": ("XNNPACK int8_int4 image path p50 / fp32 (fp16 mode) p50, same run "
                                                 f"(CPU int8 dot products: {result.get('int8_isa', 'unknown')})",
                                                 "{:.2f}x"),
              "xnnpack_int8_mac_share": ("XNNPACK int8_int4 image path MACs in int8 kernels (lowered graph, any "
                                         "host)", "{:.1f}%")}
    for name, (value, ok) in best["verdicts"].items():
        label, spec = labels[name]
        mark = "not measured" if ok is None else ("pass" if ok else "FAIL")
        if name == "bench_xnnpack_int8_speed_ratio" and not has_int8_dot(result.get("int8_isa", "unknown")):
            mark = NO_INT8_DOT
        lines.append(f"| {label} | {'-' if value is None else spec.format(value)} | "
                     f"{result['targets'][name]['text']} | {mark} |")
    split = [(row["preset"], c) for row in result["rows"] for c in row["cases"] if c.get("split_ms")]
    if split:
        lines += ["", "| preset | backend | quant | " + " | ".join(f"{label} p50 ms" for _, label in SPLIT) + " |",
                  "|---|---|---|" + "---:|" * len(SPLIT)]
        for preset, c in split:
            lines.append(f"| {preset} | {c['backend']} | {c['mode']} | "
                         + " | ".join(_fmt(c["split_ms"].get(k), ".1f") for k, _ in SPLIT) + " |")
    if result.get("kernels"):
        lines += ["", "int8 against fp32 one layer at a time on this host (`sam3m4 bench --kernels-only`): what the "
                  "CPU allows an int8 program to gain.", "",
                  kernel_table(result["kernels"], result.get("int8_isa", "unknown"), result["threads"])]
    lines += ["", f"Measured by `sam3m4 bench` on {result['host']}, {result['date']}: random weights; host latency is "
              f"the ExecuTorch runtime (pip wheel, XNNPACK threadpool {result['threads']}), 10 warm-up then p50 of "
              f"{result['runs']}; FLOP floor = image-path GFLOPs / measured fp32 matmul rate "
              f"({result['matmul_gflops']:.0f} GFLOP/s, 2048^3, torch, {result['threads']} threads); delegated ops = "
              "share of compute ops inside the backend's delegate (Core ML: NPU coverage with CPU_AND_NE)."
              + (f" Full SAM 3 config (`Sam3Config()`, {ref['params'] / 1e6:.0f}M params, {ref['input_px']} px, eager "
                 f"fp32): {ref['seconds']:.1f} s per forward in the same run." if ref else
                 " Full SAM 3 reference not run (`--no-reference`)."),
              "¹ Core ML executes only on macOS / iOS; run `sam3m4 bench` on a Mac for these cells."]
    if split:
        lines.append("Latency split: the image path's parts (backbone + FPN, decoder = fusion encoder + query decoder "
                     "+ heads, mask head) exported one by one in the same mode and timed like the image path; text "
                     "encoder, track step and image path are the case's own methods.")
    if result.get("load"):
        lines.append(f"Host load during the run (1-min load average, start / end): {result['load']}.")
    return "\n".join(lines)


def update_doc(path: Path, table: str) -> None:
    """Replace the text between the bench markers in ``path`` (atomically); missing markers -> error."""

    text = path.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise Sam3m4Error(f"{path}: no '{README_START}' ... '{README_END}' markers to put the bench table between")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    atomic_write_text(path, f"{head}{README_START}\n{table}\n{README_END}{tail}")


# --- CLI ---------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("--presets", nargs="+", default=list(PRODUCTION_PRESETS), help="student presets")
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="backend:mode cases")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    ranged(parser.add_argument("--runs", type=int, default=50, help="timed runs per method after 10 warm-up"), 1)
    ranged(parser.add_argument("--threads", type=int, default=None,
                               help="CPU threads (default: torch's, the machine's)"), 1)
    parser.add_argument("--no-reference", action="store_true", help="skip the full SAM 3 forward (~1-2 min here)")
    parser.add_argument("--no-split", action="store_true", help="skip the per-component latency split")
    parser.add_argument("--no-kernels", action="store_true",
                        help="skip the single-layer int8 / fp32 ratios of this host (sam3m4.export.kernels, ~1 min)")
    parser.add_argument("--kernels-only", action="store_true",
                        help="only the single-layer int8 / fp32 ratios and the CPU's int8 instructions (~1 min)")
    parser.add_argument("--doc", "--readme", dest="doc", type=Path, default=None,
                        help="rewrite the bench table between the markers of this file (docs/presets.md)")
    parser.add_argument("--run", default="bench", help="results store run (reports/<run>/)")
    parser.add_argument("--targets", default=None,
                        help="targets file (default: $SAM3M4_TARGETS, else acceptance/targets.yaml in or above the cwd)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import datetime as _dt

    import torch


    for preset in args.presets:
        if preset not in PRESETS:
            raise ConfigError(f"--presets {preset}: unknown; choices: {', '.join(PRESETS)}")
    for case in args.cases:
        backend, _, mode = case.partition(":")
        get_flow(backend).support(mode)  # unknown backend or mode -> ConfigError naming it
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    isa = int8_dot_isa()
    if args.kernels_only:  # no export of a preset, no targets file
        kernels = kernel_ratios(threads, runs=args.runs)
        _record_kernels(ResultsStore(args.run), kernels, isa, threads)
        print(kernel_table(kernels, isa, threads))
        return 0
    targets = load_targets(args.targets)
    t0 = time.perf_counter()
    load0 = _load()

    def say(text: str) -> None:
        print(f"[bench {time.perf_counter() - t0:6.0f} s] {text}", flush=True)

    kernels = None if args.no_kernels else kernel_ratios(threads, runs=args.runs)
    if kernels:
        say(f"int8 / fp32 of single layers (CPU int8 dot-product instructions: {isa}): "
            + ", ".join(f"{r['ratio']:.2f}x" for r in kernels))
    matmul = matmul_gflops()
    say(f"fp32 matmul rate {matmul:.0f} GFLOP/s ({threads} threads)")
    reference = None
    if not args.no_reference:
        reference = sam3_reference_seconds()
        say(f"full SAM 3 config: {reference['seconds']:.1f} s per forward ({reference['params'] / 1e6:.0f}M params)")
    rows = []
    for preset in args.presets:
        def progress(p, c):
            what = (f"{c['pte_mb']:.1f} MB, {c['coverage_percent']:.1f}% delegated" if c["ok"] else c["error"])
            if c.get("image_p50_ms"):
                what += f", image p50 {c['image_p50_ms']:.1f} ms, track {c['track_fps']:.0f} FPS"
            say(f"{p} {c['backend']}:{c['mode']}: {what}")
        row = bench_preset(preset, args.cases, args.out, args.runs, threads, progress, split=not args.no_split)
        row["summary"] = summarise(row, matmul, reference["seconds"] if reference else None)
        row["verdicts"] = judge(row["summary"], targets, isa)
        rows.append(row)
    result = {"rows": rows, "best": best_preset(rows), "reference": reference, "matmul_gflops": matmul,
              "threads": threads, "runs": args.runs, "kernels": kernels, "int8_isa": isa, "load": f"{load0} / {_load()}", "host": f"{cpu_name()} ({os.cpu_count()} cores, "
              f"{platform.machine()} {platform.system()}; int8 dot products: {isa})", "date": _dt.date.today().isoformat(),
              "targets": {name: {"text": targets[name].describe(), "value": targets[name].value,
                          "comparison": targets[name].comparison} for name in BENCH_TARGETS if name in targets}}
    _record(ResultsStore(args.run), result)
    if kernels:
        _record_kernels(ResultsStore(args.run), kernels, isa, threads)
    atomic_write_json(args.out / "bench.json", result, indent=2)
    table = markdown_table(result)
    print(table)
    if args.doc:
        update_doc(args.doc, table)
        print(f"updated {args.doc}")
    return 0


def _load() -> str:
    """The host's 1-minute load average (the host may be shared: latency is only compared within one run)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def _record(store, result: dict) -> None:
    """Every case and benchmark into the results store (stage ``bench``)."""
    where = f"{result['host']}, sam3m4 bench, random weights"
    for row in result["rows"]:
        for c in row["cases"]:
            subject = f"{row['preset']}/{c['backend']}/{c['mode']}"
            store.record(stage=schema.BENCH, subject=subject, metric=schema.EXPORT_OK, value=c["ok"], note=c["error"] or "",
                         provenance=where)
            if not c["ok"]:
                continue
            store.record(stage=schema.BENCH, subject=subject, metric=schema.PTE_MB, value=c["pte_mb"], unit="MB",
                         artifact=c["pte"], provenance=f"{where}; file size")
            store.record(stage=schema.BENCH, subject=subject, metric=schema.DELEGATED_PERCENT, value=c["coverage_percent"],
                         unit="percent", provenance=f"{where}; AOT delegated share of compute ops")
            if c.get("int8_mac_percent") is not None:
                store.record(stage=schema.BENCH, subject=subject, metric=schema.XNNPACK_INT8_MAC_SHARE,
                             value=c["int8_mac_percent"], unit="percent", note=c["int8_macs"],
                             provenance=f"{where}; image path MACs from the lowered graph's shapes")
            if c.get("image_p50_ms") is not None:
                store.record(stage=schema.BENCH, subject=subject, metric=schema.HOST_IMAGE_LATENCY_MS, value=c["image_p50_ms"],
                             unit="ms", provenance=c["latency_provenance"])
            else:
                store.record(stage=schema.BENCH, subject=subject, metric=schema.HOST_IMAGE_LATENCY_MS, value=None,
                             note=c.get("latency_note", ""))
            for key, ms in (c.get("split_ms") or {}).items():
                store.record(stage="bench", subject=subject, metric=f"host_p50_ms/{key}", value=ms, unit="ms",
                             provenance=f"{c['latency_provenance']}; latency split (see `sam3m4 bench --help`); "
                                        f"host load {result['load']}")
        for name, (value, ok) in row["verdicts"].items():
            target = result["targets"][name]
            note = "best preset" if row["preset"] == result["best"] else ""
            judged = dict(passed=ok, target=target["value"], comparison=target["comparison"])
            if name == "bench_xnnpack_int8_speed_ratio" and not has_int8_dot(result["int8_isa"]):
                # a number, never a verdict: no target on the record, so the store computes no FAIL
                judged = dict(outcome=schema.NOT_MEASURABLE)
                note = "; ".join(x for x in (note, f"{NO_INT8_DOT}: {result['int8_isa']}; the int8 MAC share "
                                                   "stands in") if x)
            store.record(stage=schema.BENCH, subject=row["preset"], metric=name, value=value, **judged,
                         provenance=f"{where}; measured in one run (see `sam3m4 bench --help`)", note=note)


def _record_kernels(store, rows: list[dict], isa: str, threads: int) -> None:
    """The single-layer int8 / fp32 ratios (stage ``bench``, subject ``kernel: <layer>``, one per scheme)."""
    where = f"sam3m4 bench, single layers timed interleaved on XNNPACK, threadpool {threads}; CPU int8 " \
            f"dot-product instructions: {isa}"
    for r in rows:
        store.record(stage=schema.BENCH, subject=f"kernel: {r['kernel']}", metric="int8_fp32_ratio", value=r["ratio"],
                     unit="x", note=f"{r['scheme']}{' (int8_int4)' if r['shipped'] else ''}; fp32 "
                                    f"{r['fp32_ms']:.2f} ms, int8 {r['int8_ms']:.2f} ms", provenance=where)

"""The rehearsal's measurements and the real run's cost plan (``reports/<run>/plan.md``).

    sam3m4 plan --run rehearsal --for configs/m4pro.yaml     # the last stage of configs/rehearsal.yaml

:func:`measure` reads what a rehearsal left behind (no model runs): per stage the wall time and peak resident
memory (``reports/<run>/pipeline_state.json``), the teacher's seconds per image (image encoder) and per pair
(text encoder, DETR, mask decoder) from the Phase 1 cache pass, the teacher-feature cache's bytes per image
and per pair (from the shard headers), the video teacher's seconds per frame and its cache bytes per
(pair, frame), the student's seconds per training step (Phase 1/2 CSV logs, the video run), and checkpoint,
quantized and ``.pte`` sizes. :func:`write_plan` scales them linearly to the ``dataset_size`` of the real
run's pipeline config (SA-Co image pairs, SA-V videos and frames) with that config's epochs and steps:
hours per stage and disk per folder on the measured host, and on an M4 Pro as an estimate from an assumed
throughput written next to each figure until it is measured there; then the same hours on N devices
(:mod:`sam3m4.pipeline.plan_devices`: which stages split over torchrun ranks and which do not).
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import statistics
from pathlib import Path

from sam3m4 import config, paths
from sam3m4.env import host_summary
from sam3m4.fileio import atomic_write_text
from sam3m4.models import build_student
from sam3m4.pipeline.plan_devices import devices_lines
from sam3m4.pipeline.stages import load_config, under
from sam3m4.results.store import ResultsStore
from sam3m4.schemas import load_file
from sam3m4.schemas.pipeline import RunManifest, StateTimings

# Assumed M4 Pro throughput (not measured: replace with the rehearsal's own numbers from the Mac, see
# docs/real-run.md). Effective fp32 rates on MPS: the teacher is large matmuls (ViT-L at 1008 px), the student a
# small convnet whose training step is dominated by kernel launches, so it gets a lower share of the peak.
M4PRO_TEACHER_GFLOPS = 3000.0   # effective GFLOP/s of a SAM 3 forward in fp32 on the M4 Pro GPU (assumption)
M4PRO_STUDENT_SPEEDUP = 8.0     # student training step, M4 Pro MPS vs this 2-core host (assumption)
TEACHER_GFLOPS = 6053.0         # one SAM 3 forward at 1008 px, batch 1 (`sam3m4 models table`, flop counter)
IMAGE_STAGES = ("teacher-feature cache (images)", "Phase 1", "Phase 2")
VIDEO_STAGES = ("video teacher masklets (cache)", "video distillation")
OBJECTS_PER_VIDEO_PAIR = 3      # masklets a (video, phrase) pair stores when the random teacher output none


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _bytes(path: str | Path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0


def _csv_rates(path: Path) -> list[float]:
    """``images_per_s`` column of a training CSV (one row a logged step)."""
    import csv

    try:
        with path.open(encoding="utf-8") as f:
            return [float(r["images_per_s"]) for r in csv.DictReader(f) if r.get("images_per_s")]
    except (OSError, KeyError, ValueError):
        return []


def _cache_split(folder: Path) -> dict:
    """Bytes of image features vs pair records in an image-cache folder (safetensors headers only)."""
    from safetensors import safe_open

    out = {"image_bytes": 0, "pair_bytes": 0, "images": 0, "pairs": 0, "folder": str(folder)}
    for shard in sorted(folder.glob("shard-*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():
                sl = f.get_slice(name)
                n = 1
                for d in sl.get_shape():
                    n *= d
                size = n * (8 if sl.get_dtype() in ("I64", "F64") else 2 if sl.get_dtype() in ("F16", "BF16") else 4)
                kind = "image" if name.startswith("image.") else "pair"
                out[f"{kind}_bytes"] += size
                if name.endswith(".query_logits"):
                    out["pairs"] += 1
                elif kind == "image" and name.rsplit(".", 1)[1] == sorted(
                        k.rsplit(".", 1)[1] for k in f.keys() if k.startswith(name.rsplit(".", 1)[0] + "."))[0]:
                    out["images"] += 1
    return out


def measure(run: str, cfg: dict, root: str = paths.REPORTS_ROOT) -> dict:
    """Everything the plan needs from the rehearsal run ``run`` (its pipeline config ``cfg``)."""
    state_path = Path(paths.run_dir(run, root)) / paths.PIPELINE_STATE
    state = load_file(state_path, StateTimings).stages if state_path.exists() else {}
    stages = {name: {"seconds": s.seconds, "peak_rss_mb": s.peak_rss_mb, "rc": s.rc} for name, s in state.items()}
    logs = Path(under(cfg, paths.DISTILL_LOG_DIR))
    p1, p2 = _json(logs / paths.phase_summary_name(1)), _json(logs / paths.phase_summary_name(2))
    t1 = p1.get("timings", {})
    m: dict = {"stages": stages, "teacher": _json(Path(cfg["teacher"]) / "sam3m4_teacher.json")}
    if t1.get("teacher_images"):
        m["teacher_s_per_image"] = t1["teacher_vision_s"] / t1["teacher_images"]
    if t1.get("teacher_pairs"):
        m["teacher_s_per_pair"] = t1["teacher_heads_s"] / t1["teacher_pairs"]
    caches = sorted(glob.glob(f"{paths.feature_cache_dir(cfg['data_root'])}/*px"))
    if caches:
        c = _cache_split(Path(caches[-1]))
        m["image_cache"] = c
        if c["images"]:
            m["cache_bytes_per_image"] = c["image_bytes"] / c["images"]
        if c["pairs"]:
            m["cache_bytes_per_pair"] = c["pair_bytes"] / c["pairs"]
    for phase, summary in ((1, p1), (2, p2)):
        rates = _csv_rates(logs / f"phase{phase}.csv")
        batch = summary.get("batch_size") or cfg["batch_size"] or 1
        if rates:
            m[f"phase{phase}_s_per_item"] = 1.0 / statistics.median(rates)
            m[f"phase{phase}_s_per_step"] = batch / statistics.median(rates)
            m[f"phase{phase}_batch"] = batch
    video = _json(Path(under(cfg, paths.VIDEO_DIR)) / paths.VIDEO_METRICS)
    vc = video.get("teacher_cache", {})
    if vc.get("frames"):
        m["video_teacher_s_per_frame"] = vc["teacher_s"] / vc["frames"]
        m["video_cache_bytes_per_pair_frame"] = vc.get("bytes", 0) / vc["frames"]
        if m["video_cache_bytes_per_pair_frame"] < 1024 and cfg.get("student_preset"):  # no masklet stored

            side = build_student(cfg["student_preset"]).mask_size
            m["video_cache_bytes_per_pair_frame_estimate"] = OBJECTS_PER_VIDEO_PAIR * side * side * 2
    if video.get("teacher_eval_frames"):
        m["video_teacher_eval_s_per_frame"] = video["teacher_eval_s"] / video["teacher_eval_frames"]
    tr = video.get("train", {})
    if tr.get("steps"):  # train_s is the last epoch's (sam3m4.distill.video_run), steps the run's
        m["video_s_per_step"] = tr["train_s"] / (tr["steps"] / max(1, tr.get("epochs", 1)))
    sizes = {}
    for name in (paths.PHASE1_BEST, paths.PHASE2_BEST, paths.VIDEO_FINAL):
        if Path(under(cfg, name)).is_file():
            sizes[name.rsplit("/", 1)[1]] = _bytes(under(cfg, name))
    for d in sorted(glob.glob(under(cfg, paths.QUANTIZED_DIR) + "/*/")):
        sizes[f"quantized/{Path(d).name}"] = _bytes(d)
    for pte in sorted(glob.glob(under(cfg, paths.EXPORT_DIR) + "/*.pte")):
        sizes[Path(pte).name] = _bytes(pte)
    m["sizes"] = sizes
    m["folders"] = {f: _bytes(f) for f in (cfg["teacher"], cfg["data_root"], under(cfg, paths.CHECKPOINTS),
                                             under(cfg, paths.LOGS), under(cfg, paths.OUTPUTS),
                                             under(cfg, paths.VIDEO_CACHE_DIR))}
    return m


def _distill_setting(target: dict, phase: int, key: str, default):
    """A distillation key as the target pipeline hands it to the stage: its override, else the config file's."""
    for item in reversed(target[f"phase{phase}_overrides"]):
        k, value, _ = config.parse_override(item)
        if k == key:
            return value
    pipeline_key = {"epochs": f"phase{phase}_epochs", "batch_size": "batch_size"}.get(key)
    if pipeline_key and target.get(pipeline_key):
        return target[pipeline_key]
    return config.read_yaml(target[f"phase{phase}_config"]).get(key, default)


def _h(seconds: float | None) -> str:
    return "not measured" if seconds is None else f"{seconds / 3600:,.1f} h"


def _gb(n: float | None) -> str:
    return "not measured" if n is None else f"{n / 1e9:,.1f} GB"


def plan_rows(m: dict, target: dict) -> tuple[list[tuple], list[tuple], dict]:
    """(stage rows, folder rows, inputs): hours here and on the M4 Pro per stage; disk per folder."""
    ds = {k: target["dataset_size"].get(k, 0) for k in ("images", "image_pairs", "videos", "video_pairs", "frames")}
    frames_per_video = ds["frames"] / ds["videos"] if ds["videos"] else 0
    t_img, t_pair = m.get("teacher_s_per_image"), m.get("teacher_s_per_pair")
    t_frame = m.get("video_teacher_s_per_frame")
    # M4 Pro time = host time x (host's effective GFLOP/s on the teacher / the assumed M4 Pro rate); per-pair
    # heads and per-frame video work are scaled by the same factor as the image encoder
    speed = (TEACHER_GFLOPS / t_img) / M4PRO_TEACHER_GFLOPS if t_img else None

    def both(seconds, factor):
        return seconds, (seconds * factor if seconds is not None and factor is not None else None)

    rows = []
    cache_s = ds["images"] * t_img + ds["image_pairs"] * t_pair if t_img and t_pair else None
    rows.append(("teacher-feature cache (images)", f"{ds['images']:,} images x teacher image encoder + "
                 f"{ds['image_pairs']:,} pairs x teacher heads", *both(cache_s, speed)))
    e1, e2 = _distill_setting(target, 1, "epochs", 2), _distill_setting(target, 2, "epochs", 4)
    items2 = _distill_setting(target, 2, "epoch_items", 0) or ds["image_pairs"]
    s1 = e1 * ds["images"] * m["phase1_s_per_item"] if "phase1_s_per_item" in m else None
    s2 = e2 * min(items2, ds["image_pairs"]) * m["phase2_s_per_item"] if "phase2_s_per_item" in m else None
    rows.append(("Phase 1", f"{e1} epochs x {ds['images']:,} images", *both(s1, 1 / M4PRO_STUDENT_SPEEDUP)))
    rows.append(("Phase 2", f"{e2} epochs x {min(items2, ds['image_pairs']):,} pairs", *both(s2, 1 / M4PRO_STUDENT_SPEEDUP)))
    args = target["video_args"]
    limit = int(args[args.index("--train-pairs") + 1]) if "--train-pairs" in args[:-1] else 0
    vpairs = min(ds["video_pairs"], limit) if limit else ds["video_pairs"]
    vcache = vpairs * frames_per_video * t_frame if t_frame else None
    rows.append(("video teacher masklets (cache)", f"{vpairs:,} (video, phrase) pairs x {frames_per_video:,.0f} frames"
                 + (f" (--train-pairs {limit} of {ds['video_pairs']:,})" if limit else ""), *both(vcache, speed)))
    vs = target["video_steps"] * m["video_s_per_step"] if "video_s_per_step" in m else None
    rows.append(("video distillation", f"{target['video_steps']:,} steps", *both(vs, 1 / M4PRO_STUDENT_SPEEDUP)))
    st = m["stages"]
    for name in ("quantize", "acceptance", "visual-qa"):
        sec = st.get(name, {}).get("seconds")
        rows.append((name, "as measured in the rehearsal (scales with quant_num_val / stage3_num_val / images)",
                     sec, None))
    exp = sum(s.get("seconds") or 0 for n, s in st.items() if n.startswith("export-")) or None
    rows.append(("export (all cases)", "as measured", exp, None))

    bpi, bpp = m.get("cache_bytes_per_image"), m.get("cache_bytes_per_pair")
    ck = m["sizes"]
    keep = target["prune_keep_last"]
    folders = [
        (paths.feature_cache_dir(target["data_root"]), "teacher-feature cache: images x bytes/image + pairs x bytes/pair",
         ds["images"] * bpi + ds["image_pairs"] * bpp if bpi and bpp else None),
        (paths.VIDEO_CACHE_DIR, "video teacher masklets: pairs x frames x bytes/(pair, frame)"
         + (f" (estimate: {OBJECTS_PER_VIDEO_PAIR} masklets a pair, fp16 at the student's mask side)"
            if "video_cache_bytes_per_pair_frame_estimate" in m else ""),
         vpairs * frames_per_video * m.get("video_cache_bytes_per_pair_frame_estimate",
                                                      m.get("video_cache_bytes_per_pair_frame", 0)) or None),
        (paths.DISTILL_DIR, f"best + {keep} kept per phase (student + optimizer)",
         (keep + 1) * (ck.get(paths.best_name(1), 0) + ck.get(paths.best_name(2), 0)) or None),
        (paths.VIDEO_DIR, f"{keep} kept", keep * ck.get(paths.video_checkpoint_name(paths.VIDEO_EPOCHS), 0) or None),
        (f"{paths.QUANTIZED_DIR} + {paths.EXPORT_DIR}", "one per mode / case",
         sum(v for k, v in ck.items() if k.startswith("quantized/") or k.endswith(".pte")) or None),
        ("teacher weights", "facebook/sam3 in fp32 safetensors", m["teacher"].get("bytes")),
    ]
    inputs = {"dataset_size": ds, "frames_per_video": frames_per_video, "m4pro_teacher_time_factor": speed,
              "m4pro_student_time_factor": 1 / M4PRO_STUDENT_SPEEDUP}
    return rows, folders, inputs


def write_plan(run: str, target_config: str, root: str = paths.REPORTS_ROOT, devices=(1, 4, 8)) -> Path:
    """Measure the rehearsal ``run`` and write ``reports/<run>/plan.md`` (+ ``measurements.json``) for the
    real run's pipeline config ``target_config``, with the hours on each of ``devices`` devices
    (:mod:`sam3m4.pipeline.plan_devices`); atomic writes; returns the plan's path."""
    run_dir = Path(paths.run_dir(run, root))
    manifest_path = run_dir / paths.RUN_MANIFEST
    settings = load_file(manifest_path, RunManifest).settings if manifest_path.exists() else None
    cfg = settings or load_config(f"configs/{run}.yaml")
    target = load_config(target_config)
    m = measure(run, cfg, root)
    rows, folders, inputs = plan_rows(m, target)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    host = host_summary()
    lines = [f"# Real-run cost plan from the rehearsal (`{run}`), for `{target_config}`", "",
             f"Measured by `make rehearse` on this {host} host, {when} (wall times; other load on the host is not recorded); the teacher is a "
             "full-size SAM 3 with **random weights** (shapes, memory, time and disk are real; accuracy is not). "
             "Figures scale the rehearsal's per-image / per-pair / per-frame / per-step costs linearly to "
             f"`dataset_size` of `{target_config}` (sizes as written there: assumptions until replaced by the counts of "
             "`sam3m4 data check` on the real data).", "",
             "## Measured per unit", "", "| quantity | value |", "|---|---:|"]
    units = [("teacher s / image (image encoder, 1008 px)", m.get("teacher_s_per_image"), "{:.1f} s"),
             ("teacher s / pair (text + DETR + mask decoder)", m.get("teacher_s_per_pair"), "{:.1f} s"),
             ("video teacher s / frame (Sam3VideoModel, detector + tracker)", m.get("video_teacher_s_per_frame"), "{:.1f} s"),
             ("image cache bytes / image (FPN levels)", m.get("cache_bytes_per_image"), "{:,.0f} B"),
             ("image cache bytes / pair (logits, boxes, semantic map, masks)", m.get("cache_bytes_per_pair"), "{:,.0f} B"),
             ("video cache bytes / (pair, frame) (the random teacher output no masklet)" if
              "video_cache_bytes_per_pair_frame_estimate" in m else "video cache bytes / (pair, frame)",
              m.get("video_cache_bytes_per_pair_frame"), "{:,.0f} B"),
             (f"video cache bytes / (pair, frame), estimate for {OBJECTS_PER_VIDEO_PAIR} masklets",
              m.get("video_cache_bytes_per_pair_frame_estimate"), "{:,.0f} B"),
             ("Phase 1 student s / image", m.get("phase1_s_per_item"), "{:.2f} s"),
             ("Phase 2 student s / pair", m.get("phase2_s_per_item"), "{:.2f} s"),
             ("video distillation s / step", m.get("video_s_per_step"), "{:.2f} s")]
    lines += [f"| {name} | {'not measured' if v is None else fmt.format(v)} |" for name, v, fmt in units]
    ds = inputs["dataset_size"]
    lines += ["", f"## Hours per stage for {ds['images']:,} images / {ds['image_pairs']:,} image pairs, "
              f"{ds['videos']:,} videos / {ds['video_pairs']:,} video pairs / {ds['frames']:,} frames", "",
              "| stage | work | this host | M4 Pro (estimate) |", "|---|---|---:|---:|"]
    total_here = total_mac = 0.0
    for name, work, here, mac in rows:
        total_here += here or 0
        total_mac += mac or 0
        lines.append(f"| {name} | {work} | {_h(here)} | {_h(mac) if mac is not None else 'not estimated'} |")
    for label, names in (("image data (SA-Co image pairs)", IMAGE_STAGES), ("video data (SA-V)", VIDEO_STAGES)):
        part = [r for r in rows if r[0] in names]
        lines.append(f"| subtotal: {label} | {' + '.join(names)} | {_h(sum(r[2] or 0 for r in part))} | "
                     f"{_h(sum(r[3] or 0 for r in part))} |")
    lines += [f"| **total** | | **{_h(total_here)}** | **{_h(total_mac)}** |", "",
              f"M4 Pro column: an estimate, not a measurement. Teacher stages assume {M4PRO_TEACHER_GFLOPS:,.0f} "
              f"effective GFLOP/s for SAM 3 in fp32 on MPS ({TEACHER_GFLOPS:,.0f} GFLOPs a forward -> "
              f"{TEACHER_GFLOPS / M4PRO_TEACHER_GFLOPS:.1f} s an image); student stages assume "
              f"{M4PRO_STUDENT_SPEEDUP:g}x this host's step time. Replace both with the Mac's own rehearsal.", ""]
    lines += devices_lines(rows, sorted({1, *devices}), "The one-device hours are the table above.")
    lines += ["", "## Disk per folder", "", "| folder | what | size |", "|---|---|---:|"]
    for folder, what, size in folders:
        lines.append(f"| `{folder}` | {what} | {_gb(size)} |")
    largest = max((f for f in folders if f[2]), key=lambda f: f[2], default=None)
    if largest:
        lines += ["", f"Largest: `{largest[0]}` ({_gb(largest[2])}). The image cache is read by Phase 1, Phase 2 and "
                  "QAT; prune it (`sam3m4 prune --include-cache`) only after the last QAT / Phase 2 run that "
                  "uses this teacher and resolution. The video cache is read only by `sam3m4 distill video`: "
                  "prune it when the video checkpoints are final."]
    lines += ["", "## Per stage in the rehearsal", "", "| stage | time | peak RSS | exit |", "|---|---:|---:|---:|"]
    for name, s in m["stages"].items():
        peak = s.get("peak_rss_mb")
        lines.append(f"| {name} | {s.get('seconds')} s | {'-' if peak is None else f'{peak / 1024:.1f} GB'} | {s.get('rc')} |")
    lines += ["", "| artifact | size |", "|---|---:|"]
    lines += [f"| {k} | {v / 2**20:,.1f} MB |" for k, v in m["sizes"].items()]
    record_measurements(run, m, target_config, host, when, root)
    out = run_dir / "plan.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, "\n".join(lines) + "\n"),
                       (run_dir / "measurements.json", json.dumps({"measured": when, "host": host, **m,
                                                                   "plan_inputs": inputs}, indent=1, default=str))):
        atomic_write_text(path, text)
    return out


def record_measurements(run: str, m: dict, target_config: str, host: str, when: str,
                        root: str = paths.REPORTS_ROOT) -> None:
    """The rehearsal marker and the per-unit costs as results-store records (stage ``rehearsal``): the report
    says in its header that the run is a rehearsal with random teacher weights and lists the numbers."""

    store = ResultsStore(run, root=root)
    where = f"make rehearse on this {host} host, {when} (wall times; other load on the host is not recorded)"
    params = m["teacher"].get("detector_params")
    store.record(stage="rehearsal", subject="run", metric="teacher_weights",
                 value=f"random (full-size SAM 3, {params:,} detector parameters)" if params else "random",
                 provenance=f"{where}; accuracy figures of this run say nothing about SAM 3 or the student; "
                            f"costs for {target_config}: reports/{run}/plan.md")
    units = {"teacher_s_per_image": "s", "teacher_s_per_pair": "s", "video_teacher_s_per_frame": "s",
             "cache_bytes_per_image": "bytes", "cache_bytes_per_pair": "bytes",
             "video_cache_bytes_per_pair_frame": "bytes", "phase1_s_per_item": "s", "phase2_s_per_item": "s",
             "video_s_per_step": "s"}
    for metric, unit in units.items():
        if m.get(metric) is not None:
            store.record(stage="rehearsal", subject="unit", metric=metric, value=round(float(m[metric]), 3),
                         unit=unit, provenance=where)
    for name, s in m["stages"].items():
        for metric, unit in (("seconds", "s"), ("peak_rss_mb", "MB")):
            if s.get(metric) is not None:
                store.record(stage="rehearsal", subject=f"stage/{name}", metric=metric, value=s[metric], unit=unit,
                             provenance=f"{where}; {paths.run_dir(run)}/{paths.PIPELINE_STATE}")

"""Seeded records of a demo-like run for the release page tests (tests/report/test_release_page.py).

    seed_run(tmp_path / "reports", "seeded", logs=tmp_path / "logs")

Every state a matrix cell can take appears: gates that pass; a gate that fails (the embedded teacher's mIoU); a
backend whose toolchain is absent (QNN: ``outcome`` not_measurable, so every QNN cell is "not measured"); a gate
that does not apply (NPU coverage on XNNPACK: unsupported); on-device numbers nobody imported (not measured).
Plus what the plots read: Stage 4 modes, latency p50/p90, loss CSVs listed as run artifacts, a pipeline state
with start and end times, per-phrase mIoU, per-pair presence scores (teacher, student, the chosen mode).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sam3m4.eval.by_phrase import phrase_metric
from sam3m4.eval.calibration import record_calibration
from sam3m4.results import ResultsStore, schema
from sam3m4.results.store import NOT_MEASURABLE

PHRASES = {"red circle": (0.81, 0.84), "blue square": (0.74, 0.70), "green star": (0.52, 0.55),
           "yellow triangle": (0.63, 0.61), "purple ring": (0.40, 0.46)}
MODES = {"fp16": (8.56, 0.5731), "int4": (3.48, 0.5729), "int8_int4": (3.61, 0.5725), "qat_int4": (3.48, 0.5728),
         "qat_int8_int4": (3.61, 0.5722)}


def seed_run(root: Path, run: str, logs: Path) -> ResultsStore:
    store = ResultsStore(run, root=root)
    prov = "host CPU probe, torch eager fp32, 300 val pairs"
    # --- Stage 3
    for subject, miou in (("teacher", 0.562), ("student/phase2", 0.573)):
        store.record(stage=schema.STAGE3, subject=subject, metric=schema.MIOU, value=miou, unit="fraction",
                     provenance=prov)
    for i, (stage, subject) in enumerate(((schema.STAGE3, "teacher"), (schema.STAGE3, "student/phase2"),
                                          (schema.STAGE4, "int4"))):
        rng = np.random.default_rng(i)                       # presence scores: calibrated, plus a little noise
        scores = rng.uniform(size=200)
        record_calibration(store, stage=stage, subject=subject, scores=scores, provenance=prov,
                           labels=rng.uniform(size=200) < np.clip(scores + rng.normal(0, 0.1, 200), 0, 1))
    for phrase, (teacher, student) in PHRASES.items():
        for subject, value in (("teacher", teacher), ("student/phase2", student)):
            store.record(stage=schema.STAGE3, subject=subject, metric=phrase_metric(phrase), value=value,
                         unit="fraction", provenance=prov)
    for subject, metric, value, target, comparison in (
            ("student/phase2", "miou_ratio", 1.02, 0.9, ">="), ("student/phase2", "presence_f1_ratio", 1.0, 0.9, ">="),
            ("student/video", "jf_ratio", 1.17, 0.9, ">="), ("student/video", "miou_cost", 0.0, 1.0, "<="),
            ("teacher/embedded", "miou", 0.562, 0.7, ">=")):
        store.record(stage=schema.STAGE3, subject=subject, metric=metric, value=value, target=target,
                     comparison=comparison, unit="ratio" if "ratio" in metric else "points" if "cost" in metric
                     else "fraction", provenance=prov)
    # --- Stage 4
    for mode, (size, miou) in MODES.items():
        store.record(stage=schema.STAGE4, subject=mode, metric=schema.SIZE_MB, value=size, unit="MB", provenance=prov)
        store.record(stage=schema.STAGE4, subject=mode, metric=schema.MIOU, value=miou, unit="fraction",
                     provenance=prov)
        if mode != "fp16":
            store.record(stage=schema.STAGE4, subject=mode, metric=schema.MIOU_DROP,
                         value=100 * (MODES["fp16"][1] - miou),
                         unit="points", target=2.0, comparison="<=", provenance=prov)
    store.record(stage=schema.STAGE4, subject=schema.DECISION, metric=schema.CHOSEN_MODE, value="int4", provenance=prov)
    # --- Stage 5: Core ML lowered here (runs only on Apple hardware), QNN without its SDK, XNNPACK measured here
    aot = "AOT: ExecuTorch to_edge_transform_and_lower on the host"
    store.record(stage=schema.STAGE5, subject="coreml/int4", metric=schema.EXPORT_OK, value=True, provenance=aot)
    store.record(stage=schema.STAGE5, subject="coreml/int4", metric=schema.PTE_MB, value=4.19, unit="MB", target=50,
                 comparison="<", provenance=aot, artifact="outputs/export/sam3m4_tiny_coreml_int4.pte")
    store.record(stage=schema.STAGE5, subject="coreml/int4", metric=schema.NPU_PERCENT, value=100.0, unit="percent",
                 target=90, comparison=">", provenance=aot)
    for metric in ("image_latency_ms", "video_fps"):
        store.record(stage=schema.STAGE5, subject="coreml/int4", metric=metric, value=None, outcome=NOT_MEASURABLE,
                     note="not measured on a phone here: Core ML executes only on macOS/iOS")
    store.record(stage=schema.STAGE5, subject="qnn/int8_int4", metric=schema.EXPORT_OK, value=False,
                 outcome=NOT_MEASURABLE,
                 note="QNN SDK not found (set QNN_SDK_ROOT)", provenance=aot)
    xnn = "outputs/export/sam3m4_tiny_xnnpack_int8_int4.pte"
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.EXPORT_OK, value=True, provenance=aot)
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.PTE_MB, value=7.05, unit="MB",
                 artifact=xnn,
                 provenance=aot)  # the export's record: judged by the targets file
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.MASK_IOU, value=1.0, unit="fraction",
                 target=0.9, comparison=">=", provenance="ExecuTorch runtime vs torch eager")
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.HOST_IMAGE_LATENCY_MS, value=2.73,
                 unit="ms",
                 target=100, comparison="<", provenance="host CPU, 1 thread, p50 of 50", artifact=xnn)
    store.record(stage=schema.STAGE5, subject="xnnpack/int8_int4", metric=schema.HOST_IMAGE_LATENCY_P90_MS, value=3.4,
                 unit="ms", provenance="host CPU, 1 thread, p90 of 50", artifact=xnn)
    # --- what the plots read besides records: training logs (listed as artifacts) and the pipeline state
    logs.mkdir(parents=True, exist_ok=True)
    for stem, start in (("phase1", 4.0), ("phase2", 2.5), ("video", 1.2)):
        rows = ["step,loss,lr"] + [f"{s},{start / (1 + s / 20):.4f},0.001" for s in range(5, 205, 5)]
        (logs / f"{stem}.csv").write_text("\n".join(rows) + "\n")
        store.record(stage=schema.ARTIFACTS, subject="log", metric=schema.SIZE, value=1, unit="bytes",
                     artifact=str(logs / f"{stem}.csv"))
    (logs / "phase2_val.csv").write_text("step,val_loss,val_images\n50,1.9,120\n100,1.4,120\n200,1.1,120\n")
    store.record(stage=schema.ARTIFACTS, subject="log", metric=schema.SIZE, value=1, unit="bytes",
                 artifact=str(logs / "phase2_val.csv"))
    stages, minute = {}, 0
    for name, minutes in (("data", 1), ("teacher", 5), ("phase1", 1), ("phase2", 3), ("video", 3), ("quantize", 2),
                          ("export-xnnpack-int8_int4", 2), ("acceptance", 1)):
        stages[name] = {"rc": 0 if name != "acceptance" else 1, "seconds": 60.0 * minutes,
                        "started": f"2026-11-27T10:{minute:02d}:00Z",
                        "finished": f"2026-11-27T10:{minute + minutes:02d}:00Z"}
        minute += minutes
    (root / run / "pipeline_state.json").write_text(json.dumps({"format": "sam3m4-pipeline-state-v1",
                                                                "stages": stages, "hashes": {}}))
    return store

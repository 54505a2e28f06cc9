"""The run manifest (``reports/<run>/manifest.json``) and the report's section 1 (summary) and 6 (artifacts).

Written after the acceptance stage and before the storage prune, so ``sam3m4 prune`` keeps every file listed
here. Each artifact carries its size and sha256; the same facts go to the results store (stage ``artifacts``:
subject ``checkpoint``, ``quantized``, ``pte``, ``log``, ``visual``; stage ``summary``: the final checkpoints).
"""

from __future__ import annotations

import datetime as _dt
import glob
import platform
from pathlib import Path

from sam3m4.fileio import atomic_write_json
from sam3m4.paths import (CHECKLIST_FILE, DISTILL_LOG_DIR, EXPORT_DIR, PHASE1_BEST, PHASE2_BEST, PIPELINE_LOGS,
                          QUANTIZED_DIR, REPORTS_ROOT, RUN_MANIFEST, VIDEO_FINAL, VISUAL_INDEX, run_dir, visual_dir)
from sam3m4.results import schema
from sam3m4.results.store import ResultsStore, sha256_file
from sam3m4.storage.prune import tree_bytes


def collect(cfg: dict) -> dict[str, list[str]]:
    """Artifact kind -> existing files, in the order the report lists them."""
    run = cfg["run"]
    found = {
        "checkpoint": [PHASE2_BEST, VIDEO_FINAL, PHASE1_BEST],
        "quantized": sorted(glob.glob(f"{QUANTIZED_DIR}/*/*.safetensors")),
        "pte": sorted(glob.glob(f"{EXPORT_DIR}/*.pte")),
        "log": sorted(glob.glob(f"{DISTILL_LOG_DIR}/*.json") + glob.glob(f"{DISTILL_LOG_DIR}/*.csv")
                      + glob.glob(f"{run_dir(run)}/{PIPELINE_LOGS}/*.log")),
        "visual": [f"{visual_dir(run)}/{VISUAL_INDEX}", f"{visual_dir(run)}/{CHECKLIST_FILE}"],
    }
    if cfg.get("teacher") and Path(cfg["teacher"]).is_dir():
        found["checkpoint"].append(cfg["teacher"])
    return {kind: [p for p in paths if Path(p).exists()] for kind, paths in found.items()}


def write_manifest(cfg: dict, config_path: str, root: str = REPORTS_ROOT) -> Path:
    """Write the manifest atomically and record sections 1 and 6; returns the manifest path."""
    store = ResultsStore(cfg["run"], root=root)
    where = f"sam3m4 pipeline on {platform.node() or 'this host'}: file size and sha256 after the acceptance stage"
    artifacts = []
    for kind, paths in collect(cfg).items():
        for p in paths:
            path = Path(p)
            size = tree_bytes(path)  # a file's size, or a folder's files (symlinks not followed)
            sha = sha256_file(path) if path.is_file() else None
            artifacts.append({"kind": kind, "path": p, "bytes": size, "sha256": sha})
            store.record(stage=schema.ARTIFACTS, subject=kind, metric=schema.SIZE, value=size, unit="bytes", artifact=p,
                         provenance=where)
    final = {schema.FINAL_IMAGE_CKPT: PHASE2_BEST, schema.FINAL_VIDEO_CKPT: VIDEO_FINAL}
    for metric, p in final.items():
        if Path(p).is_file():
            store.record(stage=schema.SUMMARY, subject=schema.RUN, metric=metric, value=p, artifact=p,
                         provenance=f"sam3m4 pipeline --config {config_path}")
    manifest = {"format": "sam3m4-run-manifest-v1", "run": cfg["run"], "config": config_path,
                "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "settings": cfg, "artifacts": artifacts}
    return atomic_write_json(store.dir / RUN_MANIFEST, manifest, indent=1)

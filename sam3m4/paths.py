"""Where artifacts live and what they are called: the one module that owns these paths and names.

Paths are relative to the project folder (the pipeline and every command run from it). The file names of
checkpoints are part of their format, so :mod:`sam3m4.checkpoint` builds its names from here too.

    best_checkpoint(2)            # 'checkpoints/distillation/phase2_best.pt'
    video_checkpoint(2)           # 'checkpoints/video_distillation/video_epoch2.pt'
    visual_dir("demo")            # 'outputs/visual_eval/demo'
    run_dir("demo")               # 'reports/demo'
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT_ENV = "SAM3M4_PROJECT_ROOT"  # the project folder, when commands do not run from it (tests set it)
CHECKPOINTS = "checkpoints"
LOGS = "logs"
OUTPUTS = "outputs"
TEACHER_DIR = "checkpoints/teacher/sam3-tiny-synth"              # the embedded default's image teacher
VIDEO_TEACHER_DIR = "checkpoints/teacher/sam3-tiny-synth-video"  # ... and its video teacher
DISTILL_DIR = "checkpoints/distillation"                         # phase{P}_epoch{E}_step{S}.pt, phase{P}_best.pt
VIDEO_DIR = "checkpoints/video_distillation"                     # video_epoch{E}.pt
QUANTIZED_DIR = "checkpoints/quantized"                          # <mode>/model.safetensors + quantized.json
RUN_LOCK = "checkpoints/.run.lock"
RUN_LOCK_INFO = "checkpoints/.run.lock.json"
EXPORT_DIR = "outputs/export"                                    # <model>_<backend>_<mode>.pte
BENCH_DIR = "outputs/bench"
VISUAL_ROOT = "outputs/visual_eval"                              # <run>/index.html, checklist.json
REPORTS_ROOT = "reports"                                         # <run>/results.jsonl, report.md, ...
DISTILL_LOG_DIR = "logs/distillation"                            # phase{P}.csv, video.csv, phase{P}_summary.json
VIS_SUBDIR = "vis"                                               # <log_dir>/vis: the recipe's pictures
VIS_DIR = f"{DISTILL_LOG_DIR}/{VIS_SUBDIR}"                      # phase{P}_epoch{E}_{j}.png
CACHE_SUBDIR = "cached_features"                                 # <data_root>/cached_features: teacher-feature cache
CACHE_GLOB = f"data/*/{CACHE_SUBDIR}"                            # every dataset's teacher-feature cache
VIDEO_CACHE_DIR = f"data/sa_v/{CACHE_SUBDIR}"                    # the video teacher's masklets
SYNTH_DATA = "data/synth"

# file names inside those folders
BOOTSTRAP_METRICS = "bootstrap_metrics.json"                     # in the bootstrapped teacher's folder
VIDEO_METRICS = "video_metrics.json"                             # in the video teacher's and the video run's folder
PIPELINE_STATE = "pipeline_state.json"                           # reports/<run>/: the pipeline's run state
RUN_MANIFEST = "manifest.json"                                   # reports/<run>/: settings, commands, artifacts
REPORT_FILE = "report.md"                                        # reports/<run>/
ACCEPTANCE_HTML = "acceptance.html"                              # reports/<run>/: the gates' pytest-html page
PIPELINE_LOGS = "pipeline"                                       # reports/<run>/pipeline/<stage>.log
VISUAL_INDEX = "index.html"                                      # outputs/visual_eval/<run>/: the visual QA page
CHECKLIST_FILE = "checklist.json"                                # ... and its reviewer's (or automatic) checklist
PRUNE_ROOTS = (DISTILL_DIR, VIDEO_DIR, VIS_DIR)                  # what `sam3m4 prune` thins by default


def project_root() -> Path:
    """The project folder, resolved: ``$SAM3M4_PROJECT_ROOT`` when set, else the working directory (every
    command runs from the project folder). Run records and logs written under it must stay under it
    (:func:`sam3m4.fileio.check_contained`)."""
    return Path(os.environ.get(PROJECT_ROOT_ENV) or os.getcwd()).resolve()


def checkpoint_name(phase: int, epoch: int, step: int) -> str:
    """``phase{P}_epoch{E}_step{S}.pt``."""
    return f"phase{phase}_epoch{epoch}_step{step}.pt"


def best_name(phase: int) -> str:
    """``phase{P}_best.pt``."""
    return f"phase{phase}_best.pt"


def video_checkpoint_name(epoch: int) -> str:
    """``video_epoch{E}.pt``."""
    return f"video_epoch{epoch}.pt"


def best_checkpoint(phase: int, ckpt_dir: str = DISTILL_DIR) -> str:
    """``<ckpt_dir>/phase{P}_best.pt``."""
    return f"{ckpt_dir}/{best_name(phase)}"


def video_checkpoint(epoch: int, ckpt_dir: str = VIDEO_DIR) -> str:
    """``<ckpt_dir>/video_epoch{E}.pt``."""
    return f"{ckpt_dir}/{video_checkpoint_name(epoch)}"


def phase_summary_name(phase: int) -> str:
    """``phase{P}_summary.json``: a distillation phase's summary in its log folder."""
    return f"phase{phase}_summary.json"


def feature_cache_dir(data_root: str) -> str:
    """``<data_root>/cached_features``: the teacher-feature cache of a dataset (when no ``cache_dir`` is set)."""
    return f"{data_root}/{CACHE_SUBDIR}"


def run_dir(run: str, root: str = REPORTS_ROOT) -> str:
    """``reports/<run>``: a run's results store, report and pipeline state."""
    return f"{root}/{run}"


def visual_dir(run: str) -> str:
    """``outputs/visual_eval/<run>``: the visual QA page and its checklist."""
    return f"{VISUAL_ROOT}/{run}"


PHASE1_BEST = best_checkpoint(1)
PHASE2_BEST = best_checkpoint(2)
VIDEO_EPOCHS = 2                                                 # the shipped video run's epochs
VIDEO_FINAL = video_checkpoint(VIDEO_EPOCHS)                     # the pipeline's final video checkpoint

"""What a distillation run writes down: scalars per step (CSV, TensorBoard when installed), the item rate, and
the final validation metrics in the results store.

    logger = ScalarLogger(Path("logs/distillation"), phase=2)     # phase2.csv, phase2_val.csv
    logger.log(step, {"loss": 0.41, "lr": 1e-3})
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from sam3m4.fileio import check_contained
from sam3m4.results import ResultsStore
from sam3m4.results import schema


class ScalarLogger:
    """Scalars to ``<log_dir>/phase{P}.csv`` (training steps) and ``<log_dir>/phase{P}_val.csv`` (validation),
    one row per logged step, and to TensorBoard when it is installed (optional dependency). ``name`` replaces
    ``phase{P}`` in the file names (the video run: ``video.csv``).

    Only rank 0 writes; other ranks get a logger that does nothing. A resumed run appends to the CSVs.
    """

    def __init__(self, log_dir: Path, phase: int, enabled: bool = True, tensorboard: bool = True,
                 name: str | None = None):
        self.enabled, self.log_dir, self.phase = enabled, Path(log_dir), phase
        self.name = name or f"phase{phase}"
        self.columns: dict[Path, list[str]] = {}
        self.tb = None
        if not enabled:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

                self.tb = SummaryWriter(str(self.log_dir / "tensorboard" / self.name))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def path(self, stream: str) -> Path:
        return self.log_dir / (f"{self.name}.csv" if stream == "train" else f"{self.name}_{stream}.csv")

    def log(self, step: int, scalars: dict[str, float], stream: str = "train") -> None:
        if not self.enabled:
            return
        path = check_contained(self.path(stream))  # logs/ symlinked out of the project: refused, one line
        row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
        cols = self.columns.get(path)
        if cols is None and path.is_file() and path.stat().st_size:
            with open(path, newline="") as f:
                cols = next(csv.reader(f), None)
        if cols is None:
            cols = list(row)
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(cols)
        self.columns[path] = cols
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in cols])
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{stream}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Throughput:
    """Images per second over the last ``window`` seconds-ish (reset per log line)."""

    def __init__(self):
        self.t, self.n = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self.n += n

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.n / max(now - self.t, 1e-9)
        self.t, self.n = now, 0
        return r


def record_results(run_name: str, subject: str, metrics: dict, artifact: str, provenance: str) -> None:
    """Append final validation metrics to ``reports/<run_name>/results.jsonl`` (``teacher_*`` under subject
    ``teacher``, the rest under ``subject``)."""
    store = ResultsStore(run_name)
    prov = f"{provenance}, {metrics.get('val_pairs', metrics.get('val_images', '?'))} val items"
    for k, v in metrics.items():
        if isinstance(v, float):
            who, name = ("teacher", k[len("teacher_"):]) if k.startswith("teacher_") else (subject, k.replace("student_", ""))
            store.record(stage=schema.STAGE3, subject=who, metric=name, value=v,
                         unit="" if "loss" in k or "ratio" in k else "fraction", provenance=prov, artifact=artifact)

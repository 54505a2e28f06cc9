"""Latency summaries of timed runs: one definition for eager, ExecuTorch and on-device-style numbers."""

from __future__ import annotations

import numpy as np


def latency_stats(times_ms) -> dict:
    """Timed samples (ms) -> p50, p90, trimmed mean (middle 80%, as ExecuTorch's Android benchmark), min, runs."""
    ms = np.sort(np.asarray(times_ms, dtype=float))
    if len(ms) == 0:
        raise ValueError("latency_stats: no timed samples")
    cut = int(len(ms) * 0.1)
    return {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "trimmed_mean_ms": float(ms[cut: len(ms) - cut].mean()), "min_ms": float(ms[0]), "runs": len(ms)}

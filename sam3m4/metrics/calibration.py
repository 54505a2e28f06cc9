"""Presence calibration over (image, noun phrase) pairs: ECE with a bootstrap interval, the Presence F1 curve over
thresholds, its plateau, and the paired ECE difference of two models on the same pairs. Pure numpy.

Each pair has a **presence score** ``s`` in [0, 1] and a label ``y`` (the concept is present). The presence score
is the highest detection score of the pair over all its queries, kept or not (SAM 3's score,
sigmoid(query logit) x sigmoid(presence logit)); 0 when the model returns none. With it the project's rule
(:func:`sam3m4.metrics.image.is_present`: present when any detection scores >= t) reads ``s >= t``, so
:func:`f1_at` at 0.5 is exactly the recorded Presence F1.

* **ECE** (:func:`ece`): 15 equal-width bins of [0, 1] (bin k holds k/15 <= s < (k+1)/15; s = 1 falls in the last);
  ECE = sum over bins of (n_k / N) |mean(y in k) - mean(s in k)| = sum_k |sum(y in k) - sum(s in k)| / N.
* **Bootstrap** (:func:`ece_interval`, :func:`ece_difference`): ``n_boot`` resamples of the N pairs with
  replacement from ``numpy.random.default_rng(seed)``; the interval is the (2.5, 97.5) percentiles of the
  resampled values (numpy's linear quantile). The paired difference resamples the same pair indices for both
  models, so what the pairs share (hard images, label noise) cancels.
* **F1 curve** (:func:`f1_curve`): Presence F1 (:func:`sam3m4.metrics.image.presence_metrics` conventions) of
  ``s >= t`` on a grid of thresholds (0, 0.01, ..., 1 by default); the best F1 is the maximum over every threshold
  in [0, 1] (the grid and every distinct score: F1 only changes at a score), the F1-best threshold the maximiser
  nearest 0.5 (SAM 3's), the lower one on a tie. The **plateau** is the set of thresholds whose F1 is within
  ``tol`` of the best.

    s, y = np.array([0.2, 0.4, 0.6, 0.8]), np.array([False, True, False, True])
    f1_at(s, y, 0.5)                 # 0.5
    curve = f1_curve(s, y); curve.best_f1, curve.best_threshold      # 0.8, 0.4
    ece(s, y)                        # 0.4

Tests: ``python -m pytest tests/metrics/test_metrics_calibration.py -q``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sam3m4.metrics.image import presence_metrics

__all__ = ["N_BINS", "N_BOOT", "LEVEL", "check_pairs", "bin_index", "Reliability", "reliability", "ece",
           "Interval", "ece_interval", "EceDifference", "ece_difference", "f1_at", "F1Curve", "f1_curve",
           "PlateauCheck", "plateau_check", "DEFAULT_THRESHOLDS"]

N_BINS = 15          # equal-width bins of [0, 1]
N_BOOT = 2000        # bootstrap resamples
LEVEL = 0.95         # two-sided interval
DEFAULT_THRESHOLDS = np.arange(101) / 100  # 0, 0.01, ..., 1 (0.5 exactly)
_CHUNK = 256         # bootstrap rows computed at once (memory: _CHUNK x N)


def check_pairs(scores, labels, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """``(scores (N,) float64, labels (N,) bool)``; ValueError naming the input when they are not N >= 1 finite
    scores in [0, 1] and N 0/1 labels."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.size == 0:
        raise ValueError(f"{name}: no pairs")
    if y.shape != s.shape:
        raise ValueError(f"{name}: {s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)) or s.min() < 0 or s.max() > 1:
        bad = s[~(np.isfinite(s) & (s >= 0) & (s <= 1))][0]
        raise ValueError(f"{name}: scores must be finite and in [0, 1], got {bad}")
    if y.dtype != bool:
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{name}: labels must be 0/1 or bool")
        y = y.astype(bool)
    return s, y


def bin_index(scores: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """(N,) int in [0, n_bins): bin k holds k/n_bins <= s < (k+1)/n_bins; s = 1 goes to the last bin."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return np.minimum((np.asarray(scores, dtype=np.float64) * n_bins).astype(np.int64), n_bins - 1)


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's bins (all arrays (n_bins,))."""

    edges: np.ndarray
    """(n_bins + 1,) bin edges, 0 ... 1."""
    count: np.ndarray
    """Pairs per bin (int)."""
    mean_score: np.ndarray
    """Mean presence score of the bin's pairs (NaN for an empty bin)."""
    positive_rate: np.ndarray
    """Fraction of the bin's pairs whose concept is present (NaN for an empty bin)."""


def reliability(scores, labels, n_bins: int = N_BINS) -> Reliability:
    """Per-bin counts, mean score and positive rate (the reliability diagram; ECE is their weighted gap)."""
    s, y = check_pairs(scores, labels)
    k = bin_index(s, n_bins)
    count = np.bincount(k, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_s = np.bincount(k, weights=s, minlength=n_bins) / count
        rate = np.bincount(k, weights=y.astype(np.float64), minlength=n_bins) / count
    return Reliability(edges=np.arange(n_bins + 1) / n_bins, count=count, mean_score=mean_s, positive_rate=rate)


def _ece_rows(s: np.ndarray, y: np.ndarray, k: np.ndarray, idx: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of each row of pair indices ``idx`` (B, N) -> (B,): sum_k |sum y - sum s| / N per row."""
    b, n = idx.shape
    flat = (np.arange(b)[:, None] * n_bins + k[idx]).ravel()              # (B*N,) row-major bin ids
    gap = np.bincount(flat, weights=(y[idx] - s[idx]).ravel(), minlength=b * n_bins)
    return np.abs(gap.reshape(b, n_bins)).sum(axis=1) / n


def ece(scores, labels, n_bins: int = N_BINS) -> float:
    """Expected calibration error of the presence scores (definition in the module docstring), in [0, 1]."""
    s, y = check_pairs(scores, labels)
    return float(_ece_rows(s, y.astype(np.float64), bin_index(s, n_bins), np.arange(s.size)[None], n_bins)[0])


def _resamples(n: int, n_boot: int, seed: int):
    """Bootstrap index rows (chunks of (<= _CHUNK, n)), from one seeded generator: the same for the same seed."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, _CHUNK):
        yield rng.integers(0, n, size=(min(_CHUNK, n_boot - start), n))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap interval."""

    value: float
    """The statistic on the pairs as they are."""
    low: float
    high: float
    level: float
    """Two-sided coverage of [low, high] (0.95)."""
    num_pairs: int
    n_boot: int
    seed: int


def ece_interval(scores, labels, n_bins: int = N_BINS, n_boot: int = N_BOOT, level: float = LEVEL,
                 seed: int = 0) -> Interval:
    """ECE with its percentile bootstrap interval (deterministic for a given ``seed``)."""
    s, y = check_pairs(scores, labels)
    yf, k = y.astype(np.float64), bin_index(s, n_bins)
    boot = np.concatenate([_ece_rows(s, yf, k, idx, n_bins) for idx in _resamples(s.size, n_boot, seed)])
    lo, hi = _percentiles(boot, level)
    return Interval(ece(s, y, n_bins), lo, hi, level, int(s.size), n_boot, seed)


@dataclass(frozen=True)
class EceDifference:
    """ECE of model B minus ECE of model A on the same pairs, with the paired bootstrap interval."""

    ece_a: float
    ece_b: float
    diff: float
    """``ece_b - ece_a`` (> 0: B is worse calibrated)."""
    low: float
    high: float
    level: float
    num_pairs: int
    n_boot: int
    seed: int

    @property
    def resolvable(self) -> bool:
        """True when the interval excludes zero: the pairs resolve the sign of the difference."""
        return self.low > 0 or self.high < 0


def ece_difference(scores_a, scores_b, labels, n_bins: int = N_BINS, n_boot: int = N_BOOT, level: float = LEVEL,
                   seed: int = 0) -> EceDifference:
    """ECE(B) - ECE(A) on the same pairs (``labels`` shared, pair i is the same pair for both) with a paired
    bootstrap interval: each resample draws one set of pair indices and scores both models on it."""
    a, y = check_pairs(scores_a, labels, "scores_a")
    b, _ = check_pairs(scores_b, labels, "scores_b")
    yf, ka, kb = y.astype(np.float64), bin_index(a, n_bins), bin_index(b, n_bins)
    boot = np.concatenate([_ece_rows(b, yf, kb, idx, n_bins) - _ece_rows(a, yf, ka, idx, n_bins)
                           for idx in _resamples(a.size, n_boot, seed)])
    lo, hi = _percentiles(boot, level)
    ea, eb = ece(a, y, n_bins), ece(b, y, n_bins)
    return EceDifference(ea, eb, eb - ea, lo, hi, level, int(a.size), n_boot, seed)


# --- the F1 curve ---------------------------------------------------------------------------------------------
def _f1_many(s: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Presence F1 of ``s >= t`` for every t (presence_metrics' conventions: 1.0 when TP + FP + FN == 0)."""
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order].astype(np.int64)
    above_pos = np.concatenate([np.cumsum(y_sorted[::-1])[::-1], [0]])   # (N+1,) positives at index >= i
    first = np.searchsorted(s_sorted, thresholds, side="left")          # first index with s >= t
    tp = above_pos[first]
    fp = (s.size - first) - tp
    fn = int(y_sorted.sum()) - tp
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)


def f1_at(scores, labels, threshold: float) -> float:
    """Presence F1 when a pair is called present at ``score >= threshold``."""
    s, y = check_pairs(scores, labels)
    pred = s >= threshold
    res = presence_metrics(int(np.sum(pred & y)), int(np.sum(pred & ~y)), int(np.sum(~pred & y)),
                           int(np.sum(~pred & ~y)))
    return res.f1


@dataclass(frozen=True)
class F1Curve:
    """Presence F1 over thresholds."""

    thresholds: np.ndarray
    """(T,) the grid, ascending."""
    f1: np.ndarray
    """(T,) Presence F1 at each grid threshold."""
    best_f1: float
    """The highest F1 at any threshold in [0, 1] (grid or score)."""
    best_threshold: float
    """The threshold reaching ``best_f1`` nearest 0.5, the lower one on a tie."""
    num_pairs: int

    def plateau(self, tol: float) -> np.ndarray:
        """(T,) bool: grid thresholds whose F1 >= best_f1 - tol."""
        return self.f1 >= self.best_f1 - tol - 1e-12

    def plateau_span(self, tol: float) -> tuple[float, float]:
        """(low, high) of the contiguous run of plateau grid thresholds around the best threshold (the grid point
        nearest to it); the grid point itself when it alone is on the plateau (or none is: a best between grid
        points)."""
        on = self.plateau(tol)
        i = int(np.argmin(np.abs(self.thresholds - self.best_threshold)))
        lo = hi = i
        while lo > 0 and on[lo - 1] and on[i]:
            lo -= 1
        while hi < len(on) - 1 and on[hi + 1] and on[i]:
            hi += 1
        return float(self.thresholds[lo]), float(self.thresholds[hi])


def f1_curve(scores, labels, thresholds=None) -> F1Curve:
    """Presence F1 on the ``thresholds`` grid (default 0, 0.01, ..., 1) and its exact best over [0, 1]."""
    s, y = check_pairs(scores, labels)
    grid = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if grid.size == 0 or np.any(np.diff(grid) <= 0):
        raise ValueError("thresholds: expected a non-empty ascending grid")
    candidates = np.union1d(grid, s[(s >= 0) & (s <= 1)])
    cand_f1 = _f1_many(s, y, candidates)
    best = float(cand_f1.max())
    maximisers = candidates[cand_f1 >= best - 1e-12]
    nearest = maximisers[np.argmin(np.abs(maximisers - 0.5))]   # argmin keeps the lower of two equally near
    return F1Curve(thresholds=grid, f1=_f1_many(s, y, grid), best_f1=best, best_threshold=float(nearest),
                   num_pairs=int(s.size))


@dataclass(frozen=True)
class PlateauCheck:
    """Does a threshold lie on the F1 plateau?"""

    threshold: float
    f1: float
    """Presence F1 at ``threshold``."""
    best_f1: float
    best_threshold: float
    gap: float
    """``best_f1 - f1`` (>= 0): what the threshold gives up against the best one."""
    tol: float
    num_pairs: int

    @property
    def on_plateau(self) -> bool:
        return self.gap <= self.tol + 1e-12


def plateau_check(scores, labels, threshold: float = 0.5, tol: float = 0.01) -> PlateauCheck:
    """F1 at ``threshold`` against the best F1 at any threshold; on the plateau when the gap is <= ``tol``."""
    curve = f1_curve(scores, labels)
    f1 = f1_at(scores, labels, threshold)
    return PlateauCheck(threshold, f1, curve.best_f1, curve.best_threshold, max(curve.best_f1 - f1, 0.0), tol,
                        curve.num_pairs)

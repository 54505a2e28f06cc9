"""The presence operating point a model ships: a threshold fitted on one part of the val pairs, checked on the rest.

Distilled and quantized students score below the teacher, so SAM 3's fixed 0.5 can sit far from their best
Presence F1 (a demo's qat_int4: F1 0.648 at 0.5, 0.787 at 0.317). Stage 4 therefore fits each mode's threshold
on a **calibration part** of its val pairs and reports F1 at it (and at 0.5) on the **held-out part** only, so the
number a user reads was not seen by the fit. Pure numpy.

* **Split** (:func:`calibration_split`): a pair goes to the calibration part when
  ``sha256("sam3m4-presence/1:" + group)`` read as a fraction is below ``fraction`` (0.5). ``group`` is the pair's
  image (its file name), so the phrases of one image never fall on both sides; the rule depends on nothing but
  the group, so every mode, and Stage 5's ``.pte``, splits the same pairs the same way.
* **Fit** (:func:`fit_threshold`): Presence F1 of ``score >= t`` only changes at a score, so the thresholds form
  intervals between consecutive distinct scores; the fit takes an F1-maximising interval (the one nearest SAM 3's
  0.5, the lower on a tie) and returns its **midpoint**, which keeps the same decisions under small score shifts
  (an exported program's scores differ from eager's in the third decimal). When 0.5 scores within 0.01 of that F1
  on the calibration part, 0.5 is kept: a flat curve's argmax moves with the sample.
* **Fallback**: when a part has fewer than ``min_pairs`` pairs or the calibration part holds one class only, no
  threshold is fitted and SAM 3's 0.5 ships (``how="default"``); a threshold pinned by the targets file ships as
  it is (``how="fixed"``). Either way the held-out numbers are reported.

    groups = [val.pairs[i]["file_name"] for i in range(n)]
    op = fit_operating_point(res.presence_scores, res.present, groups)
    op.threshold, op.f1_held_out, op.f1_held_out_at_default, op.best_f1_held_out

Tests: ``python -m pytest tests/metrics/test_calibration_fit.py -q``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from sam3m4.metrics.calibration import Interval, _f1_many, check_pairs, f1_at, f1_curve

__all__ = ["DEFAULT_THRESHOLD", "SPLIT_SALT", "SPLIT_RULE", "MIN_PAIRS", "split_fraction", "calibration_split", "gap_interval",
           "fit_threshold", "OperatingPoint", "fit_operating_point"]

DEFAULT_THRESHOLD = 0.5     # SAM 3's keep threshold
SPLIT_SALT = "sam3m4-presence/1"
MIN_PAIRS = 10              # fewest pairs per part for a fit
PLATEAU_TOL = 0.01          # 0.5 is kept when its calibration F1 is within this of the fitted threshold's
SPLIT_RULE = (f"calibration part: sha256('{SPLIT_SALT}:' + image file name) as a fraction < 0.5; the rest held "
              "out (the phrases of one image on one side)")


def split_fraction(group: str) -> float:
    """``group``'s place in [0, 1): the first 8 bytes of ``sha256(SPLIT_SALT + ":" + group)`` / 2**64."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{group}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def calibration_split(groups, fraction: float = 0.5) -> np.ndarray:
    """(N,) bool, True for the pairs of the calibration part (module docstring); ``groups``: N keys (image file
    names; pairs with the same key fall on the same side)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return np.array([split_fraction(str(g)) < fraction for g in groups], dtype=bool)


def fit_threshold(scores, labels) -> float:
    """The midpoint of the F1-maximising threshold interval nearest 0.5 (the lower one on a tie), in [0, 1]."""
    s, y = check_pairs(scores, labels)
    u = np.unique(s)                                              # (m,) ascending distinct scores
    f1 = _f1_many(s, y, u)                                        # interval k predicts s >= u[k]
    mids = (np.concatenate([[0.0], u[:-1]]) + u) / 2              # (u[k-1], u[k]] -> its midpoint
    if u[-1] < 1:                                                 # (u[-1], 1]: nothing predicted present
        f1 = np.append(f1, 1.0 if not y.any() else 0.0)
        mids = np.append(mids, (u[-1] + 1.0) / 2)
    best = f1.max()
    cands = mids[f1 >= best - 1e-12]
    return float(cands[np.argmin(np.abs(cands - DEFAULT_THRESHOLD))])


@dataclass(frozen=True)
class OperatingPoint:
    """One model's shipped presence threshold and how it holds on pairs the fit did not see (the fields of
    ``decision.json``'s ``presence.<mode>``, :class:`sam3m4.schemas.quantize.PresenceOperatingPoint`)."""

    threshold: float
    """The shipped threshold in [0, 1]."""
    how: str
    """``fitted``, ``fixed`` (pinned by the targets file) or ``default`` (no fit possible: SAM 3's 0.5)."""
    calibration_pairs: int
    held_out_pairs: int
    f1_calibration: float
    """Presence F1 at ``threshold`` on the calibration part (1.0 when the part is empty)."""
    f1_held_out: float
    """Presence F1 at ``threshold`` on the held-out part."""
    f1_held_out_at_default: float
    """Presence F1 at 0.5 on the held-out part."""
    best_f1_held_out: float
    """The best Presence F1 at any threshold on the held-out part."""
    split: str = SPLIT_RULE

    def to_dict(self) -> dict:
        return asdict(self)


def fit_operating_point(scores, labels, groups, *, fixed: float | None = None, fraction: float = 0.5,
                        min_pairs: int = MIN_PAIRS, plateau_tol: float = PLATEAU_TOL) -> OperatingPoint:
    """Fit the presence threshold on the calibration part of ``(scores (N,) in [0, 1], labels (N,) bool)`` and check
    it on the held-out part (``groups``: N image keys, :func:`calibration_split`). The fit keeps SAM 3's 0.5 when
    it lies on the calibration part's F1 plateau (within ``plateau_tol`` of the fitted threshold's F1): a flat
    curve's argmax moves with the sample, 0.5 only moves when the scores do. ``fixed``: a threshold pinned by the
    targets file, shipped as it is (still checked on the held-out part)."""
    s, y = check_pairs(scores, labels)
    if len(groups) != s.size:
        raise ValueError(f"{len(groups)} groups for {s.size} pairs")
    cal = calibration_split(groups, fraction)
    hold = ~cal
    fits = (fixed is None and cal.sum() >= min_pairs and hold.sum() >= min_pairs
            and 0 < y[cal].sum() < cal.sum())
    if fixed is not None:
        threshold, how = float(fixed), "fixed"
    elif fits:
        threshold, how = fit_threshold(s[cal], y[cal]), "fitted"
        if f1_at(s[cal], y[cal], DEFAULT_THRESHOLD) >= f1_at(s[cal], y[cal], threshold) - plateau_tol:
            threshold = DEFAULT_THRESHOLD   # 0.5 is on the calibration part's plateau: keep SAM 3's threshold
    else:
        threshold, how = DEFAULT_THRESHOLD, "default"
    if not hold.any():       # nothing held out (a tiny set): report on every pair; nothing was fitted on them
        cal, hold = np.zeros_like(cal), np.ones_like(hold)
    return OperatingPoint(
        threshold=threshold, how=how, calibration_pairs=int(cal.sum()), held_out_pairs=int(hold.sum()),
        f1_calibration=f1_at(s[cal], y[cal], threshold) if cal.any() else 1.0,
        f1_held_out=f1_at(s[hold], y[hold], threshold),
        f1_held_out_at_default=f1_at(s[hold], y[hold], DEFAULT_THRESHOLD),
        best_f1_held_out=f1_curve(s[hold], y[hold]).best_f1)


def gap_interval(scores, labels, threshold: float, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> Interval:
    """``best F1 - F1 at threshold`` on ``(scores, labels)`` (``value``) and its percentile bootstrap interval: ``n_boot``
    resamples of the pairs with replacement (``numpy.random.default_rng(seed)``), the gap recomputed on each (the
    best over every distinct score of the pairs, which contains every resample's). On a few dozen pairs one pair
    moves F1 by more than a plateau tolerance of 0.01; the interval says whether a gap above it is the threshold's
    or the sample's."""
    s, y = check_pairs(scores, labels)
    cands = np.union1d(np.unique(s), [threshold])
    cands = np.append(cands, np.nextafter(cands[-1], np.inf))          # above every score: nothing present
    rng = np.random.default_rng(seed)
    gaps = np.empty(n_boot)
    at = np.searchsorted(cands, threshold)
    for b in range(n_boot):
        idx = rng.integers(0, s.size, size=s.size)
        f1 = _f1_many(s[idx], y[idx], cands)
        gaps[b] = f1.max() - f1[at]
    lo, hi = np.quantile(gaps, [(1 - level) / 2, (1 + level) / 2])
    f1 = _f1_many(s, y, cands)
    return Interval(float(max(f1.max() - f1[at], 0.0)), float(lo), float(hi), level, int(s.size), n_boot, seed)

"""Tests for sam3m4.metrics.calibration: ECE, its bootstrap, the Presence F1 curve and plateau, worked by hand.

Run: python -m pytest tests/metrics/test_metrics_calibration.py -q
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sam3m4.metrics import PresenceMeter, is_present
from sam3m4.metrics.calibration import (bin_index, ece, ece_difference, ece_interval, f1_at, f1_curve,
                                        plateau_check, reliability)

S4 = np.array([0.2, 0.4, 0.6, 0.8])
Y4 = np.array([False, True, False, True])


# --- ECE ---------------------------------------------------------------------------------------------------------
def test_ece_by_hand():
    # bins of width 1/15: 0.1 -> bin 1 (1.5), 0.9 -> bin 13 (13.5)
    # bin 1: mean score 0.1, positive rate 1/2 -> |0.5 - 0.1| x 2/4 = 0.2
    # bin 13: mean score 0.9, positive rate 1 -> |1 - 0.9| x 2/4 = 0.05
    assert ece([0.1, 0.1, 0.9, 0.9], [0, 1, 1, 1]) == pytest.approx(0.25, abs=1e-12)
    # every pair in its own bin: (|0-0.2| + |1-0.4| + |0-0.6| + |1-0.8|) / 4 = 1.6 / 4
    assert ece(S4, Y4) == pytest.approx(0.4, abs=1e-12)


def test_ece_bins_are_fifteen_equal_widths():
    # 0.06 -> bin 0 (0.9), 0.07 -> bin 1 (1.05): separate bins: |1 - 0.06| / 2 + |0 - 0.07| / 2 = 0.505
    assert ece([0.06, 0.07], [1, 0]) == pytest.approx(0.505, abs=1e-12)
    # with 10 bins both fall in bin 0: |0.5 - 0.065| = 0.435
    assert ece([0.06, 0.07], [1, 0], n_bins=10) == pytest.approx(0.435, abs=1e-12)
    assert list(bin_index(np.array([0.0, 0.999, 1.0]))) == [0, 14, 14]      # 1.0 belongs to the last bin


def test_ece_edges_and_perfect_calibration():
    assert ece([0.0, 1.0], [0, 1]) == 0.0
    assert ece([1.0], [0]) == 1.0
    assert ece([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0, abs=1e-12)   # 1 in 4 present at score 0.25


def test_reliability_bins():
    rel = reliability([0.1, 0.1, 0.9, 0.9], [0, 1, 1, 1])
    assert rel.count.sum() == 4 and rel.count[1] == 2 and rel.count[13] == 2 and len(rel.edges) == 16
    assert rel.positive_rate[1] == pytest.approx(0.5) and rel.mean_score[13] == pytest.approx(0.9)
    assert np.isnan(rel.mean_score[0])                                       # an empty bin has no mean


def test_bad_inputs_are_errors():
    for scores, labels in (([], []), ([0.5, 1.2], [0, 1]), ([0.5], [0, 1]), ([np.nan], [1]), ([0.5], [2])):
        with pytest.raises(ValueError):
            ece(scores, labels)


# --- bootstrap ---------------------------------------------------------------------------------------------------
def test_interval_of_a_constant_sample_is_a_point():
    # every resample of 30 pairs scored 0.3, none present, has ECE 0.3: the interval is [0.3, 0.3]
    iv = ece_interval([0.3] * 30, [0] * 30, n_boot=200)
    assert (iv.value, iv.low, iv.high, iv.num_pairs) == (pytest.approx(0.3), pytest.approx(0.3), pytest.approx(0.3), 30)


def test_interval_is_deterministic_and_seeded():
    rng = np.random.default_rng(1)
    s = rng.uniform(size=120)
    y = rng.uniform(size=120) < s ** 2
    a, b = ece_interval(s, y, seed=3), ece_interval(s, y, seed=3)
    assert (a.low, a.high) == (b.low, b.high)
    c = ece_interval(s, y, seed=4)
    assert (a.low, a.high) != (c.low, c.high)
    assert 0 <= a.low < a.high <= 1 and a.level == 0.95 and a.n_boot == 2000


def test_paired_difference_by_hand():
    # A scores every pair 0.3, B 0.9, no pair present: ECE 0.3 and 0.9 on every resample -> diff 0.6 exactly
    d = ece_difference([0.3] * 40, [0.9] * 40, [0] * 40, n_boot=100)
    assert (d.ece_a, d.ece_b, d.diff) == (pytest.approx(0.3), pytest.approx(0.9), pytest.approx(0.6))
    assert d.low == pytest.approx(0.6) and d.high == pytest.approx(0.6) and d.resolvable


def test_identical_models_are_not_resolvable():
    rng = np.random.default_rng(0)
    s = rng.uniform(size=200)
    d = ece_difference(s, s, rng.uniform(size=200) < 0.5)
    assert d.diff == 0 and d.low == 0 and d.high == 0 and not d.resolvable   # [0, 0] does not exclude zero


def test_paired_bootstrap_resolves_what_the_unpaired_intervals_cannot():
    # B = A + 0.1 (over-confident) on 200 pairs: the two ECE intervals overlap, the paired one excludes zero
    rng = np.random.default_rng(4)
    a = rng.uniform(0.05, 0.9, size=200)
    y = rng.uniform(size=200) < a
    b = np.clip(a + 0.1, 0, 1)
    ia, ib, d = ece_interval(a, y), ece_interval(b, y), ece_difference(a, b, y)
    assert ia.high > ib.low                        # unpaired: overlapping intervals
    assert d.resolvable and d.low > 0


def test_small_noisy_difference_is_not_resolvable():
    # B: A with a little independent noise on 40 pairs: ECE changes, but the interval spans zero
    rng = np.random.default_rng(7)
    a = rng.uniform(size=40)
    y = rng.uniform(size=40) < a
    b = np.clip(a + rng.normal(0, 0.05, size=40), 0, 1)
    d = ece_difference(a, b, y)
    assert d.diff != 0 and d.low < 0 < d.high and not d.resolvable


# --- F1 curve and plateau ----------------------------------------------------------------------------------------
def test_f1_at_by_hand():
    # t = 0.5: present {0.6, 0.8}: TP 1 (0.8), FP 1 (0.6), FN 1 (0.4) -> 2 / (2 + 1 + 1)
    assert f1_at(S4, Y4, 0.5) == pytest.approx(0.5)
    # t = 0.3: present {0.4, 0.6, 0.8}: TP 2, FP 1, FN 0 -> 4 / 5
    assert f1_at(S4, Y4, 0.3) == pytest.approx(0.8)
    assert f1_at(S4, Y4, 0.1) == pytest.approx(4 / 6)     # all present: TP 2, FP 2
    assert f1_at(S4, Y4, 0.9) == 0.0                      # none present: TP 0, FN 2
    assert f1_at(S4, Y4, 0.4) == pytest.approx(0.8)       # inclusive: 0.4 >= 0.4
    assert f1_at([0.1, 0.2], [0, 0], 0.5) == 1.0          # nothing present, nothing called: nothing wrong


def test_f1_curve_best_and_plateau_by_hand():
    curve = f1_curve(S4, Y4)
    assert curve.best_f1 == pytest.approx(0.8)
    assert curve.best_threshold == pytest.approx(0.4)     # F1 0.8 on (0.2, 0.4]; 0.4 is the nearest to 0.5
    i = lambda t: int(round(t * 100))  # noqa: E731
    assert curve.f1[i(0.5)] == pytest.approx(0.5) and curve.f1[i(0.21)] == pytest.approx(0.8)
    assert curve.f1[i(0.2)] == pytest.approx(4 / 6)
    assert curve.plateau_span(0.01) == (pytest.approx(0.21), pytest.approx(0.40))
    # within 0.2 of 0.8 (>= 0.6): thresholds 0.00-0.40 (0.667 then 0.8) and 0.61-0.80 (0.667)
    assert curve.plateau(0.2).sum() == 41 + 20


def test_best_threshold_between_grid_points_is_found():
    # one positive at 0.505 and one negative at 0.5: only thresholds in (0.5, 0.505] give F1 1
    curve = f1_curve([0.5, 0.505], [0, 1])
    assert curve.best_f1 == 1.0 and curve.best_threshold == pytest.approx(0.505)
    assert curve.f1.max() < 1.0                           # the 0.01 grid alone would miss it


def test_plateau_check_by_hand():
    off = plateau_check(S4, Y4, threshold=0.5, tol=0.01)
    assert off.f1 == pytest.approx(0.5) and off.gap == pytest.approx(0.3) and not off.on_plateau
    on = plateau_check(S4, Y4, threshold=0.3, tol=0.01)
    assert on.gap == pytest.approx(0.0) and on.on_plateau


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=40), st.sampled_from([0.3, 0.5, 0.7]))
def test_f1_at_matches_the_project_presence_f1(pairs, t):
    # the presence score is the highest detection score: is_present(detections, t) == (score >= t)
    meter = PresenceMeter()
    for s, y in pairs:
        meter.add(is_present([s], t), y)
    scores, labels = [s for s, _ in pairs], [y for _, y in pairs]
    assert f1_at(scores, labels, t) == pytest.approx(meter.result().f1)
    curve = f1_curve(scores, labels)
    assert curve.f1[int(round(t * 100))] == pytest.approx(meter.result().f1)
    assert curve.best_f1 >= meter.result().f1 - 1e-12

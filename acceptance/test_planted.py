"""Every gate bites: generated from the targets file, one planted case per target (:mod:`planted`).

For each target: a measurement just beyond its threshold fails the gate test that uses it (the record it writes
says ``passed: False``), one just inside passes, and where the gate measures a model or a file, a planted bad
model or file fails it. A target with no planted case fails here: add it to ``acceptance/planted.py``
(docs/gates.md says how). The value plants take about a second each; the model plants that need the Stage 4 small
set or its XNNPACK export are marked ``slow``.
"""

from __future__ import annotations

import pytest
from planted import MODEL_MARKS, PLANTED, Bench, just_beyond, just_inside

from sam3m4.results.gating import HOST_STANDS_FOR
from sam3m4.results.targets import load_targets_file


def pytest_generate_tests(metafunc):
    """``name``: every target of the session's targets file (the rule of ``--targets``), marked as its plant says."""
    if "name" not in metafunc.fixturenames:
        return
    names = list(load_targets_file(metafunc.config.getoption("--targets")).targets)
    if metafunc.function.__name__ == "test_a_planted_model_or_file_fails_its_gate":
        names = [n for n in names if n not in PLANTED or PLANTED[n].model is not None]
        marks = MODEL_MARKS
    else:
        marks = {n: p.marks for n, p in PLANTED.items()}
    metafunc.parametrize("name", [pytest.param(n, id=n, marks=marks.get(n, ())) for n in names])


@pytest.fixture
def bench(request, tmp_path, targets, gate_factory, pytestconfig):
    from sam3m4.results.targets import locate_targets

    return Bench(request, tmp_path, targets, gate_factory, locate_targets(pytestconfig.getoption("--targets"))[0])


def _plant(name):
    if name not in PLANTED:
        pytest.fail(f"targets.{name}: no planted case; add one to acceptance/planted.py (PLANTED[{name!r}], "
                    "see docs/gates.md): a gate nobody has seen fail may never fail")
    return PLANTED[name]


def _judged(bench, name):
    """The verdict the planted run wrote for ``name``'s metric (the last one: earlier gates of the same test pass)."""
    t = bench.targets[name]
    recs = [r for r in bench.judged() if t.metric in (r.metric, HOST_STANDS_FOR.get(r.metric))]
    assert recs, f"targets.{name}: the planted run never reached the gate (no {t.metric} verdict recorded)"
    return recs[-1]


def test_every_target_has_a_planted_case(targets):
    missing = sorted(set(targets) - set(PLANTED))
    assert not missing, f"targets without a planted case in acceptance/planted.py: {', '.join(missing)}"


def test_a_value_just_beyond_the_target_fails_its_gate(name, bench):
    plant, t = _plant(name), bench.targets[name]
    value = just_beyond(t)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        plant.run(bench, value)
    rec = _judged(bench, name)
    assert rec.passed is False and rec.value == pytest.approx(value, rel=1e-4), rec


def test_a_value_just_inside_the_target_passes_its_gate(name, bench):
    plant, t = _plant(name), bench.targets[name]
    value = just_inside(t)
    plant.run(bench, value)
    rec = _judged(bench, name)
    assert rec.passed is True and rec.value == pytest.approx(value, rel=1e-4), rec


def test_a_planted_model_or_file_fails_its_gate(name, bench, record_property):
    planted = _plant(name).model(bench)
    record_property("planted", planted)

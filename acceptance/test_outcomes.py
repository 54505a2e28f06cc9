"""The gates' skip-or-fail decision (:mod:`outcomes`) reads record fields, never note text. Fast: no exports."""

from __future__ import annotations

import pytest
from outcomes import decide, settle

from sam3m4.results import schema
from sam3m4.results.store import NOT_MEASURABLE, UNSUPPORTED, Record


def _rec(value=None, **kw) -> Record:
    return Record(run="t", stage=schema.STAGE5, subject="coreml/int8_int4", metric=schema.EXPORT_OK, value=value, **kw)


def _decide(rec, release=False):
    d = decide(rec, release=release, what="export coreml/int8_int4", why="no export_ok record")
    return None if d is None else (d.action, d.reason)


def test_a_value_is_gated():
    assert _decide(_rec(True)) is None and _decide(_rec(41.5)) is None and _decide(_rec(0.0)) is None


def test_note_text_alone_is_not_an_outcome():
    """An old-style record: the note says "unsupported" / "SDK not found", no field says so -> fail, not skip."""
    for note in ("unsupported: Core ML has no dynamic activation quantization", "QNN SDK not found (set QNN_SDK_ROOT)"):
        action, reason = _decide(_rec(False, note=note))
        assert action == "fail" and "neither where it failed nor that it is unsupported" in reason
        assert note in reason
    assert _decide(_rec(None, note="not measured on a phone here"))[0] == "fail"


@pytest.mark.parametrize("outcome, said", [(UNSUPPORTED, "unsupported on this backend"),
                                           (NOT_MEASURABLE, "not measurable here")])
def test_outcome_field_skips_and_release_fails(outcome, said):
    rec = _rec(False, outcome=outcome, note="why")
    assert _decide(rec) == ("skip", f"export coreml/int8_int4 {said}: why")
    assert _decide(rec, release=True) == ("fail", f"release: export coreml/int8_int4 {said}: why")


def test_failed_stage_fails_even_with_an_outcome_and_outside_release():
    assert _decide(_rec(False, failed_stage="lower", note="RuntimeError: x")) == (
        "fail", "export coreml/int8_int4 failed at lower: RuntimeError: x")
    assert _decide(_rec(None, failed_stage="load", outcome=NOT_MEASURABLE))[0] == "fail"


def test_no_record_skips_unknown_or_contradictory_outcome_fails():
    assert _decide(None) == ("skip", "export coreml/int8_int4 not measured: no export_ok record")
    assert _decide(None, release=True)[0] == "fail"
    assert "unknown outcome 'maybe'" in _decide(_rec(False, outcome="maybe"))[1]
    assert _decide(_rec(12.0, outcome=UNSUPPORTED))[0] == "fail"


def test_settle_skips_fails_or_returns_the_record():
    rec = _rec(True)
    assert settle(rec, release=False, what="w", why="y") is rec
    with pytest.raises(pytest.skip.Exception, match="not measurable here"):
        settle(_rec(None, outcome=NOT_MEASURABLE), release=False, what="w", why="y")
    with pytest.raises(pytest.fail.Exception, match="w failed at run"):
        settle(_rec(None, failed_stage="run"), release=False, what="w", why="y")


def test_old_records_without_the_fields_still_read(tmp_path):
    from sam3m4.results import ResultsStore

    store = ResultsStore("t", root=tmp_path)
    store.dir.mkdir(parents=True)
    store.path.write_text('{"run": "t", "stage": "stage5", "subject": "qnn/int4", "metric": "export_ok", '
                          '"value": false, "note": "QNN SDK not found (set QNN_SDK_ROOT)"}\n')
    (rec,) = store.records()
    assert (rec.failed_stage, rec.outcome) == (None, None)
    assert _decide(rec)[0] == "fail"


def test_the_decision_carries_the_gate_outcome_as_a_value():
    """Not a sentence to match: not measured / unsupported / fail, from the record's fields (release: fail)."""
    d = lambda rec, release=False: decide(rec, release=release, what="w", why="y")  # noqa: E731
    assert d(None).outcome == schema.NOT_MEASURED and d(None).action == "skip"
    assert d(_rec(None, outcome=UNSUPPORTED)).gate_outcome == schema.GateOutcome(schema.UNSUPPORTED,
                                                                                  d(_rec(None, outcome=UNSUPPORTED)).reason)
    assert d(_rec(None, outcome=NOT_MEASURABLE)).outcome == schema.NOT_MEASURED
    assert d(_rec(None, outcome=NOT_MEASURABLE), release=True).outcome == schema.FAIL
    assert d(_rec(None, failed_stage="lower")).outcome == schema.FAIL and d(_rec(True)) is None

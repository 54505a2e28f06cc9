"""Results store: concurrent appends lose nothing, corrupt lines are skipped with a named warning."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from sam3m4.results import ResultsStore, compare, sha256_file


def _writer(root: str, worker: int, count: int) -> None:
    store = ResultsStore("conc", root=root)
    for i in range(count):
        store.record(stage="sanity", subject=f"w{worker}", metric="i", value=i, provenance="test")


def test_concurrent_writers_lose_no_record(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    recs = ResultsStore("conc", root=tmp_path).records()
    assert len(recs) == 160
    for w in range(4):
        assert sorted(r.value for r in recs if r.subject == f"w{w}") == list(range(40))


def test_gate_verdict_and_artifact_hash(tmp_path):
    store = ResultsStore("r", root=tmp_path)
    art = tmp_path / "model.pte"
    art.write_bytes(b"abc")
    rec = store.record(stage="stage5", subject="xnnpack/fp16", metric="pte_mb", value=51.0, target=50,
                       comparison="<", unit="MB", provenance="AOT", artifact=art)
    assert rec.passed is False
    assert rec.sha256 == sha256_file(art) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert store.latest(metric="pte_mb").value == 51.0
    assert store.records()[0].timestamp


def test_corrupt_line_is_skipped_with_warning_naming_line(tmp_path):
    store = ResultsStore("r", root=tmp_path)
    store.record(stage="a", subject="b", metric="m", value=1)
    with open(store.path, "a", encoding="utf-8") as f:
        f.write('{"run": "r", "stage": "a", "subj\n')          # torn line
        f.write(json.dumps({"run": "r", "stage": "a", "subject": "b", "metric": "m", "value": 2, "bogus": 1}) + "\n")
    store.record(stage="a", subject="b", metric="m", value=3)
    with pytest.warns(UserWarning) as warned:
        recs = store.records()
    assert [r.value for r in recs] == [1, 3]
    messages = [str(w.message) for w in warned]
    assert any(f"{store.path}:2" in m for m in messages)
    assert any(f"{store.path}:3" in m and "bogus" in m for m in messages)


def test_frame_and_table_views(tmp_path):
    store = ResultsStore("r", root=tmp_path)
    for mode, miou in (("fp16", 0.8), ("int4", 0.78), ("int4", 0.79)):
        store.record(stage="stage4", subject=mode, metric="miou", value=miou)
    assert len(store.frame()) == 3
    table = store.table("stage4", ["miou"])
    assert table.loc["int4", "miou"] == 0.79 and table.loc["fp16", "miou"] == 0.8


def test_compare_and_bad_run_name(tmp_path):
    assert compare(49.9, "<", 50) and not compare(50, "<", 50) and compare(50, "<=", 50)
    with pytest.raises(ValueError):
        compare(1, "~", 2)
    with pytest.raises(ValueError):
        ResultsStore("../escape", root=tmp_path)

"""Results store: concurrent appends lose nothing, corrupt lines are skipped with a named warning."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from sam3m4.results import ResultsStore, compare, sha256_file, schema


def _writer(root: str, worker: int, count: int) -> None:
    store = ResultsStore("conc", root=root)
    for i in range(count):
        store.record(stage=schema.SANITY, subject=f"w{worker}", metric="i", value=i, provenance="test")


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
    rec = store.record(stage=schema.STAGE5, subject="xnnpack/fp16", metric=schema.PTE_MB, value=51.0, target=50,
                       comparison="<", unit="MB", provenance="AOT", artifact=art)
    assert rec.passed is False
    assert rec.sha256 == sha256_file(art) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert store.latest(metric=schema.PTE_MB).value == 51.0
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
        store.record(stage=schema.STAGE4, subject=mode, metric=schema.MIOU, value=miou)
    assert len(store.frame()) == 3
    table = store.table(schema.STAGE4, ["miou"])
    assert table.loc["int4", "miou"] == 0.79 and table.loc["fp16", "miou"] == 0.8


def test_compare_and_bad_run_name(tmp_path):
    assert compare(49.9, "<", 50) and not compare(50, "<", 50) and compare(50, "<=", 50)
    with pytest.raises(ValueError):
        compare(1, "~", 2)
    with pytest.raises(ValueError):
        ResultsStore("../escape", root=tmp_path)


def test_append_after_a_killed_writer_starts_a_fresh_line(tmp_path):
    store = ResultsStore("r", root=tmp_path)
    store.record(stage="a", subject="b", metric="m", value=1)
    with open(store.path, "a", encoding="utf-8") as f:
        f.write('{"run": "r", "stage": "a", "subject": "b", "met')  # killed mid-line: no newline
    store.record(stage="a", subject="b", metric="m", value=2)
    store.record(stage="a", subject="b", metric="m", value=3)
    with pytest.warns(UserWarning) as warned:
        recs = store.records()
    assert [r.value for r in recs] == [1, 2, 3]
    assert len(warned) == 1 and str(warned[0].message).startswith(f"skipped corrupt results record: {store.path}:2: ")
    assert store.path.read_text().count("\n") == 4  # fragment on its own line, every record on its own


def test_reader_keeps_a_whole_record_glued_to_a_fragment(tmp_path):
    """A file written before appends started on a fresh line: fragment + record on one line."""
    store = ResultsStore("r", root=tmp_path)
    store.record(stage="a", subject="b", metric="m", value=1)
    whole = json.dumps({"run": "r", "stage": "a", "subject": "b", "metric": "m", "value": {"x": 2}})
    with open(store.path, "a", encoding="utf-8") as f:
        f.write('{"run": "r", "stage": {"a": "b", "met' + whole + "\n")
    store.record(stage="a", subject="b", metric="m", value=3)
    with pytest.warns(UserWarning, match=f"broken results fragment: {store.path}:2: 37 characters") as warned:
        recs = store.records()
    assert [r.value for r in recs] == [1, {"x": 2}, 3] and len(warned) == 1


def test_no_lock_file_is_left_in_the_run_folder(tmp_path):
    store = ResultsStore("r", root=tmp_path)
    for i in range(3):
        store.record(stage="a", subject="b", metric="m", value=i)
    assert sorted(p.name for p in store.dir.iterdir()) == ["results.jsonl"]
    assert [r.value for r in store.records()] == [0, 1, 2]


PROBE = '''
def test_probe(stage5_export, gate):
    recs = stage5_export("xnnpack", "fp16")  # recorded already: takes the per-case lock, exports nothing
    assert recs["export_ok"].value is True
    gate(stage="stage5", subject="xnnpack/fp16", metric="pte_mb", value=1.5, provenance="probe")
'''


def test_a_test_session_leaves_no_lock_in_reports(tmp_path):
    """What `make test` does to reports/<run>/: the gate fixture, the stage5 per-case lock, report.md."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shutil.copy(root / "conftest.py", tmp_path / "conftest.py")
    shutil.copytree(root / "acceptance", tmp_path / "acceptance", ignore=shutil.ignore_patterns("test_*", "__pycache__"))
    (tmp_path / "acceptance" / "test_probe.py").write_text(PROBE)
    ResultsStore("probe", root=tmp_path / "reports").record(stage=schema.STAGE5, subject="xnnpack/fp16",
                                                            metric=schema.EXPORT_OK,
                                                            value=True)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "--run", "probe",
                          "-o", "addopts=", "acceptance/test_probe.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = tmp_path / "reports" / "probe"
    assert (run_dir / "report.md").is_file() and len(ResultsStore("probe", root=tmp_path / "reports").records()) == 2
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.lock")) == []


def test_a_non_finite_measurement_is_kept_as_a_failure_not_written_as_nan(tmp_path):
    store = ResultsStore("nan", root=tmp_path)
    rec = store.record(stage=schema.STAGE4, subject="int4", metric=schema.MIOU_DROP, value=float("nan"), unit="points",
                       target=2.0, comparison="<=")
    assert rec.value is None and rec.passed is False and rec.failed_stage == "metric" and "nan" in rec.note
    text = store.path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = store.latest(metric=schema.MIOU_DROP)
    assert back.passed is False and back.failed_stage == "metric"

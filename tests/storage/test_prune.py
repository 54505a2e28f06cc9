"""``sam3m4 prune``: dry run by default, apply deletes exactly the dry run's list, keep rules, safety refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sam3m4 import cli
from sam3m4.report.markdown import render_report
from sam3m4.results import ResultsStore, schema
from sam3m4.runlock import RunLockedError, lock_holder, run_lock
from sam3m4.storage import prune

pytestmark = pytest.mark.storage

FILES = {  # path -> size in bytes
    **{f"checkpoints/distillation/phase1_epoch{e}_step{10 * e}.pt": 100 + e for e in range(1, 5)},
    **{f"checkpoints/distillation/phase2_epoch{e}_step{100 * e}.pt": 200 + e for e in range(1, 4)},
    "checkpoints/distillation/phase1_best.pt": 150, "checkpoints/distillation/phase2_best.pt": 250,
    "checkpoints/distillation/notes.txt": 7,
    **{f"checkpoints/video_distillation/video_epoch{e}.pt": 300 + e for e in range(1, 5)},
    "checkpoints/teacher/sam3-tiny/model.safetensors": 999,
    "checkpoints/quantized/int4/model.safetensors": 888,
    **{f"logs/distillation/vis/phase1_epoch{e}_{j}.png": 50 + e for e in range(1, 8) for j in range(2)},
    "logs/distillation/phase1.csv": 11,
    "data/sa_v/cached_features/tid_32m/a.safetensors": 400, "data/sa_v/cached_features/tid_32m/.lock": 0,
    "data/synth/cached_features/tid_168px/shard-000-x.safetensors": 500,
}
# What the default settings (keep-last 2, vis-keep-every 5, no cache) delete from FILES.
EXPECTED = {"checkpoints/distillation/phase1_epoch2_step20.pt",  # epoch1 is referenced by results.jsonl
            "checkpoints/distillation/phase2_epoch1_step100.pt",
            "checkpoints/video_distillation/video_epoch2.pt",  # epoch1 is referenced by manifest.json
            *(f"logs/distillation/vis/phase1_epoch{e}_{j}.png" for e in (3, 4, 6) for j in range(2)),
            "logs/distillation/vis/phase1_epoch2_1.png"}  # phase1_epoch2_0.png is referenced by the manifest


@pytest.fixture
def proj(tmp_path) -> Path:
    """A project tree (``FILES``), a report and a manifest referencing three files, and symlinks to ``outside/``."""
    root = tmp_path / "proj"
    for rel, size in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.pt").write_bytes(b"s" * 10)
    (outside / "dir" / "phase1_epoch0_0.png").write_bytes(b"p")
    # an old-looking checkpoint name that is a symlink out of the root, and a symlinked folder in vis
    os.symlink(outside / "secret.pt", root / "checkpoints/distillation/phase1_epoch0_step1.pt")
    os.symlink(outside / "dir", root / "logs/distillation/vis/linked")
    store = ResultsStore("r", root=root / "reports")
    store.record(stage=schema.STAGE3, subject="student/phase1", metric=schema.MIOU, value=0.5, unit="fraction",
                 artifact="checkpoints/distillation/phase1_epoch1_step10.pt", hash_artifact=False)
    (root / "reports/r/manifest.json").write_text(json.dumps({"artifacts": [
        {"path": "logs/distillation/vis/phase1_epoch2_0.png"}, "checkpoints/video_distillation/video_epoch1.pt"]}))
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """path -> (size, mtime_ns, is_link) of everything under ``root``, symlinks not followed."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if not p.is_dir() or p.is_symlink():
                out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, p.is_symlink())
    return out


def sam3m4(root: Path, *args: str, monkeypatch) -> int:
    monkeypatch.setitem(cli.COMMANDS, "prune", ("sam3m4.storage.cli", "thin checkpoints, pictures, caches"))
    return cli.main(["prune", "--root", str(root), "--run", "r", *args])


def planned(root: Path) -> set[str]:
    return {p for p, _, _ in prune.read_log(prune.newest_dry_run(root))["delete"]}


def without_logs(snap: dict) -> dict:
    """``snap`` less what any prune writes: its logs, its records and the run lock's (empty) lock file."""
    return {p: v for p, v in snap.items()
            if not p.startswith(("logs/storage_prune_", "reports/", "checkpoints/.run.lock"))}


def test_dry_run_is_the_default_and_deletes_nothing(proj, monkeypatch, capsys):
    before = snapshot(proj)
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    assert without_logs(snapshot(proj)) == without_logs(before)
    assert planned(proj) == EXPECTED
    out = capsys.readouterr().out
    assert "nothing deleted" in out and "logs/storage_prune_dry_run_" in out
    log = prune.newest_dry_run(proj).read_text()
    assert all(p in log for p in EXPECTED) and "(best)" in log and "referenced by reports/r/manifest.json" in log


def test_apply_deletes_exactly_the_dry_run_list(proj, tmp_path, monkeypatch):
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    listed, before, outside = planned(proj), snapshot(proj), snapshot(tmp_path / "outside")
    assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 0
    before, after = without_logs(before), without_logs(snapshot(proj))
    assert set(before) - set(after) == listed
    assert {p: v for p, v in before.items() if p not in listed} == after
    assert snapshot(tmp_path / "outside") == outside  # symlink targets untouched
    assert os.path.islink(proj / "checkpoints/distillation/phase1_epoch0_step1.pt")
    data = prune.read_log(sorted((proj / "logs").glob("storage_prune_apply_*.log"))[-1])
    assert {p for p, _, _ in data["deleted"]} == listed and data["dry_run_log"].startswith("logs/storage_prune_dry")


def test_keep_rules(proj):
    plan = prune.make_plan(proj, prune.Settings(keep_last=2, vis_keep_every=5))
    why = {e.path: reason for e, reason in plan.keep}
    d = "checkpoints/distillation/"
    assert why[d + "phase1_best.pt"] == why[d + "phase2_best.pt"] == "best"
    assert why[d + "phase1_epoch4_step40.pt"] == why[d + "phase1_epoch3_step30.pt"] == "newest 2 of phase1"
    assert why[d + "phase1_epoch1_step10.pt"] == "referenced by reports/r/results.jsonl:1"
    assert why[d + "notes.txt"] == "not a recognised name"
    assert why[d + "phase1_epoch0_step1.pt"] == "symlink (not followed)"
    assert why["checkpoints/video_distillation/video_epoch1.pt"] == "referenced by reports/r/manifest.json"
    assert {p for p in why if "/vis/" in p and p.endswith(".png")} == {
        f"logs/distillation/vis/phase1_epoch{e}_{j}.png" for e in (1, 5, 7) for j in range(2)} | {
        "logs/distillation/vis/phase1_epoch2_0.png"}  # first, every 5th, last epoch + referenced
    assert not any(p.startswith(("checkpoints/teacher", "checkpoints/quantized", "data/")) for p in why)
    assert any("phase1_epoch0_step1.pt: symlink to" in w and "outside" in w for w in plan.warnings)
    assert plan.after()["total"] == plan.before["total"] - sum(e.size for e in plan.delete)


@pytest.mark.parametrize("change", ["added", "touched"])
def test_apply_refuses_when_the_tree_changed(proj, change, monkeypatch, capsys):
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    if change == "added":
        (proj / "checkpoints/distillation/phase2_epoch4_step400.pt").write_bytes(b"new")
    else:
        ns = os.stat(proj / "checkpoints/distillation/phase1_epoch2_step20.pt").st_mtime_ns + 10**9
        os.utime(proj / "checkpoints/distillation/phase1_epoch2_step20.pt", ns=(ns, ns))
    before = snapshot(proj)
    capsys.readouterr()
    assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("sam3m4: error: tree changed since the dry run logs/storage_prune_dry_run_")
    assert err.count("\n") == 1 and "rerun the dry run" in err
    assert without_logs(snapshot(proj)) == without_logs(before)


def test_apply_refuses_without_a_dry_run_or_twice(proj, monkeypatch, capsys):
    before = snapshot(proj)
    assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 2
    assert "no dry-run log" in capsys.readouterr().err
    assert without_logs(snapshot(proj)) == without_logs(before)
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 0
    capsys.readouterr()
    assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 2
    assert "was already applied" in capsys.readouterr().err


def test_apply_refuses_other_options_than_the_dry_run(proj, monkeypatch, capsys):
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    before = snapshot(proj)
    assert sam3m4(proj, "--apply", "--keep-last", "1", monkeypatch=monkeypatch) == 2
    assert "keep-last 2" in capsys.readouterr().err and without_logs(snapshot(proj)) == without_logs(before)


def test_apply_refuses_while_a_run_holds_the_lock(proj, monkeypatch, capsys):
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "SAM3M4_RUN_LOCK")}
    code = ("import sys, time\nfrom sam3m4.runlock import run_lock\n"
            "with run_lock(sys.argv[1], name='distill phase2'):\n    print('ready', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(proj)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert lock_holder(proj)["pid"] == holder.pid
        before = snapshot(proj)
        capsys.readouterr()
        assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 2
        err = capsys.readouterr().err
        assert "run lock" in err and f"pid {holder.pid}" in err and err.count("\n") == 1
        assert snapshot(proj) == before
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            with run_lock(proj, name="distill phase1"):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(proj) is None  # released with the process
    assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 0


def test_a_child_of_the_lock_holder_may_apply(proj, monkeypatch, capsys):
    """``sam3m4 pipeline`` holds the run lock and runs ``prune --apply`` as a child (``SAM3M4_RUN_LOCK`` set):
    that prune deletes; an unrelated process is still refused (the test above)."""
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    with run_lock(proj, name="sam3m4 pipeline"):
        assert lock_holder(proj) is None  # this process holds it
        assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 0, capsys.readouterr().err


def test_run_lock_is_a_no_op_on_other_ranks_and_in_children(proj, monkeypatch):
    with run_lock(proj, name="outer") as info:
        assert info["pid"] == os.getpid() and not (proj / "checkpoints/.run.lock.json").read_text() == ""
        with run_lock(proj, name="child") as inner:  # SAM3M4_RUN_LOCK is set: nested, no deadlock
            assert inner is None
    assert not (proj / "checkpoints/.run.lock.json").exists() and lock_holder(proj) is None
    monkeypatch.setenv("RANK", "1")
    with run_lock(proj, name="rank 1") as info:
        assert info is None and lock_holder(proj) is None


def test_cache_only_with_include_cache(proj, monkeypatch):
    caches = {p for p in FILES if "/cached_features/" in p}
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    assert not caches & planned(proj)
    assert sam3m4(proj, "--include-cache", monkeypatch=monkeypatch) == 0
    assert caches <= planned(proj)
    assert sam3m4(proj, "--include-cache", "--apply", monkeypatch=monkeypatch) == 0
    assert not any((proj / p).exists() for p in caches)
    assert not (proj / "data/sa_v/cached_features/tid_32m").exists()  # emptied folder removed ...
    assert (proj / "data/sa_v/cached_features").is_dir()  # ... but never the root


def test_symlinked_root_is_not_followed(tmp_path, monkeypatch):
    root, elsewhere = tmp_path / "proj", tmp_path / "big_disk"
    (root / "checkpoints").mkdir(parents=True)
    elsewhere.mkdir()
    for e in range(1, 5):
        (elsewhere / f"video_epoch{e}.pt").write_bytes(b"v")
    os.symlink(elsewhere, root / "checkpoints/video_distillation")
    plan = prune.make_plan(root)
    assert plan.delete == [] and "checkpoints/video_distillation" not in plan.pruned
    assert any("video_distillation: a symlink" in w for w in plan.warnings)
    assert sam3m4(root, monkeypatch=monkeypatch) == 0 and sam3m4(root, "--apply", monkeypatch=monkeypatch) == 0
    assert len(list(elsewhere.iterdir())) == 4


def test_unreadable_manifest_is_an_error(proj, monkeypatch, capsys):
    (proj / "reports/r/manifest.json").write_text("{not json")
    assert sam3m4(proj, monkeypatch=monkeypatch) == 2
    assert "reports/r/manifest.json: unreadable run manifest" in capsys.readouterr().err


def test_records_fill_report_section_7(proj, monkeypatch):
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    store = ResultsStore("r", root=proj / "reports")
    dry = store.latest(schema.STORAGE, schema.LOGS, schema.DRY_RUN_LOG).value
    planned_after = store.latest(schema.STORAGE, "checkpoints/distillation", schema.PLANNED_AFTER_BYTES).value
    assert sam3m4(proj, "--apply", monkeypatch=monkeypatch) == 0
    for subject in ("checkpoints/distillation", "checkpoints/video_distillation", "logs/distillation/vis",
                    "data/sa_v/cached_features", "total"):
        before = store.latest(schema.STORAGE, subject, schema.BEFORE_BYTES)
        after = store.latest(schema.STORAGE, subject, schema.AFTER_BYTES)
        assert before.unit == after.unit == "bytes" and "symlinks not followed" in after.provenance
        assert after.value <= before.value
    assert store.latest(schema.STORAGE, "checkpoints/distillation", schema.AFTER_BYTES).value == planned_after
    assert store.latest(schema.STORAGE, "checkpoints/distillation", schema.BEFORE_BYTES).value == \
        sum(s for p, s in FILES.items() if p.startswith("checkpoints/distillation/")) + \
        os.lstat(proj / "checkpoints/distillation/phase1_epoch0_step1.pt").st_size
    lost = (store.latest(schema.STORAGE, "total", schema.BEFORE_BYTES).value
            - store.latest(schema.STORAGE, "total", schema.AFTER_BYTES).value)
    assert lost == sum(FILES[p] for p in EXPECTED)  # the whole tree lost exactly the deleted files
    applied = store.latest(schema.STORAGE, schema.LOGS, schema.APPLY_LOG).value
    text = render_report("r", root=proj / "reports").read_text()
    section = text[text.index("## 7)"):text.index("## 부록")]
    row = next(line for line in section.splitlines() if line.startswith("| checkpoints/distillation |"))
    saved = sum(FILES[p] for p in EXPECTED if p.startswith("checkpoints/distillation/"))
    total = store.latest(schema.STORAGE, "checkpoints/distillation", schema.BEFORE_BYTES).value
    assert row.count("B[^") == 2 and row.endswith(f"| {saved} B ({100 * saved / total:.0f}%) |")
    assert f"Dry-run: `{dry}`" in section and f"Apply-run: `{applied}`" in section
    total_row = next(line for line in section.splitlines() if line.startswith("| 전체 디스크 사용량 |"))
    assert total_row.count("B[^") == 2 and not total_row.endswith("| - |")


def folders(root: Path) -> set[str]:
    return {Path(d).relative_to(root).as_posix() for d, _, _ in os.walk(root)}


@pytest.mark.parametrize("apply", [[], ["--apply"]])
def test_missing_root_is_refused_and_nothing_is_created(tmp_path, apply, monkeypatch, capsys):
    for root, why in ((tmp_path / "typo", "no such folder"), (tmp_path / "a-file", "not a folder"),
                      (tmp_path / "empty", "not a sam3m4 project root (none of checkpoints, logs, data, reports")):
        if root.name == "a-file":
            root.write_text("x")
        elif root.name == "empty":
            root.mkdir()
        before = folders(tmp_path)
        assert sam3m4(root, *apply, monkeypatch=monkeypatch) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sam3m4: error: --root {root}: {why}") and err.count("\n") == 1
        assert folders(tmp_path) == before and not (tmp_path / "typo").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "empty"] and not any((tmp_path / "empty").iterdir())


@pytest.mark.parametrize("option,value", [("--keep-last", "0"), ("--keep-last", "-1"), ("--vis-keep-every", "0"),
                                          ("--vis-keep-every", "-3")])
@pytest.mark.parametrize("apply", [[], ["--apply"]])
def test_bad_keep_options_are_refused_before_anything_is_written(proj, option, value, apply, monkeypatch, capsys):
    before = snapshot(proj)
    assert sam3m4(proj, option, value, *apply, monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert err == f"sam3m4: error: {option} {value}: must be >= 1\n"
    assert snapshot(proj) == before  # no log, no record, not even the run lock's file


def test_dry_run_creates_no_folder(proj, monkeypatch):
    before = folders(proj)
    assert sam3m4(proj, monkeypatch=monkeypatch) == 0
    assert folders(proj) == before

"""Files in and out safely: the one YAML loader, the one writer and its project-root rule, the run-name lock,
the regression gate's failure reasons, numeric flags checked before work, predict's and device import's inputs.

Each bad input must give exit 2 and exactly one ``sam3m4: error:`` line naming the file or flag, leave every
existing file byte-identical and create none.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sam3m4 import cli, safeyaml
from sam3m4.config import load_config, read_yaml
from sam3m4.errors import ConfigError, DataFormatError
from sam3m4.fileio import OutsideProject, check_contained
from sam3m4.paths import PROJECT_ROOT_ENV
from sam3m4.report.compare import compare_runs
from sam3m4.results import ResultsStore, load_targets, schema
from sam3m4.runlock import RUN_ENV, RunLockedError, run_name_holder, run_name_lock, run_name_lock_path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "acceptance" / "targets.yaml"
DEMO = ROOT / "configs" / "demo.yaml"


def one_error(capsys, rc: int) -> str:
    """The single ``sam3m4: error:`` line of a failed command (exit 2, nothing else on stderr)."""
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("sam3m4: error: "), err
    return err.strip()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


# --- the safe YAML loader ---------------------------------------------------------------------------------------
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, message", [
    (BOMB, r"line 1 column 4: anchor &a is not allowed"),
    ("steps: 1\nlr: 2\nsteps: 3\n", r"line 3 column 1: duplicate key 'steps'"),
    ("1: x\n", r"line 1 column 1: key 1 is not text"),
    ("[a]: x\n", r"line 1 column 1: a list or mapping as a key is not text"),
    ("x: " + "[" * 100 + "]" * 100 + "\n", r"nested deeper than 32 levels"),
    ("x: " + "9" * 5000 + "\n", r"a number of 5000 digits"),
])
def test_the_loader_refuses_with_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: cannot read config: (line \d+ column \d+: )?{message}") as info:
        read_yaml(path)  # an alias is refused where it is met, never expanded (an alias bomb ran to MemoryError)
    assert "\n" not in str(info.value)


def test_the_loader_bounds_size_and_refuses_special_files(tmp_path, monkeypatch):
    monkeypatch.setattr(safeyaml, "MAX_BYTES", 64)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 100 + "\n")
    with pytest.raises(ConfigError, match=rf"^{big}: cannot read config: .*larger than 64 bytes"):
        read_yaml(big)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=rf"^{fifo}: cannot read config: not a regular file \(a FIFO\)"):
        read_yaml(fifo)  # opening it would block until someone writes


def test_the_loader_reads_what_safe_load_read(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("a: 5e-4\nb: yes\nc: [1, {d: null}]\n<<: {e: 1}\n")
    assert read_yaml(path) == {"a": "5e-4", "b": True, "c": [1, {"d": None}], "e": 1}


def test_targets_file_goes_through_the_loader(tmp_path):
    path = tmp_path / "targets.yaml"
    path.write_text("targets: &t\n  x: {metric: m, comparison: '<', value: 1}\nother: *t\n")
    with pytest.raises(ConfigError, match=rf"^{path}: cannot read targets: line 1 column 10: anchor &t"):
        load_targets(path)
    assert load_targets(TARGETS)  # the shipped file still reads


@pytest.mark.parametrize("override, message", [
    ("video_steps=" + "9" * 5000, r"override 'video_steps=9{68}\.\.\. \(5012 characters\)': line 1 column 1: a "
                                  r"number of 5000 digits \(at most 100\)"),
    ("exports=[1]", r"override 'exports=\[1\]': exports: 1 is not backend:mode"),
    ("exports=[':int4']", r"exports: ':int4' is not backend:mode"),
    ("acceptance=[[1]]", r"acceptance: \[1\] is not a test file path"),
    ("video_steps=1", r"override 'video_steps=1': video_steps: expected a whole number >= 2, got 1"),
    ("quant_num_val=0", r"quant_num_val: expected a whole number >= 1, got 0"),
    ("seed=-1", r"seed: expected a whole number >= 0, got -1"),
    ("export_args=[[a]]", r"export_args: \['a'\] is not a command-line word"),
    ("x=*a", r"override 'x=\*a': line 1 column 1: alias \*a is not allowed"),
])
def test_pipeline_overrides_are_one_line_errors(override, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error(capsys, cli.main(["pipeline", "--config", str(DEMO), override, "--list"]))
    assert re.search(message, line), line
    assert not any(tmp_path.iterdir())


def test_config_floats_must_be_finite(tmp_path):
    for text in ("lr: .inf\n", "lr: .nan\n", "lr: 1e400\n"):
        path = tmp_path / "r.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=rf"^{path}: lr: expected a finite number"):
            load_config(path, [], {"lr": 1.0})


# --- numeric flags: declared ranges, checked before work -----------------------------------------------------
def _leaf_parsers(parser: argparse.ArgumentParser, name: str = "sam3m4"):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, parser
    for action in subs:
        for sub_name, sub in action.choices.items():
            yield from _leaf_parsers(sub, f"{name} {sub_name}")


def test_every_numeric_flag_declares_its_range():
    missing = [f"{name} {a.option_strings[0]}" for name, p in _leaf_parsers(cli.build_parser())
               for a in p._actions if a.type in (int, float) and getattr(a, "flag_range", None) is None]
    assert not missing, f"numeric flags without sam3m4.flags.ranged(...): {missing}"


@pytest.mark.parametrize("argv, message", [
    (["distill", "video", "--steps", "-5", "--epochs", "0"], "--steps -5: must be >= 1"),
    (["distill", "video", "--steps", "-5", "--epochs", "2", "--no-eval"], "--steps -5: must be >= 1"),
    (["distill", "video", "--epochs", "0"], "--epochs 0: must be >= 1"),
    (["distill", "video", "steps=-5"], "--steps -5: must be >= 1"),
    (["distill", "video", "--lr", "nan"], "--lr nan: must be a positive number"),
    (["distill", "video", "--lr", "0"], "--lr 0.0: must be a positive number"),
    (["data", "synth", "--val-fraction", "1"], "--val-fraction 1.0: must be in [0, 1)"),
    (["data", "synth", "--video-size", "8"], "--video-size 8: must be 0 or in [32, 2048]"),
    (["eval", "--model", "gt", "--threshold", "1.5"], "--threshold 1.5: must be in [0, 1]"),
    (["quantize", "--mode", "compare", "--qat-steps", "0"], "--qat-steps 0: must be >= 1"),
    (["export", "--backend", "xnnpack", "--mode", "fp16", "--runs", "0"], "--runs 0: must be >= 1"),
    (["teacher", "video", "--steps", "-1"], "--steps -1: must be >= 0"),
    (["report", "--run", "a", "--tolerance", "inf"], "--tolerance inf: must be >= 0 (a finite number)"),
    (["distill", "phase1", "--config", str(ROOT / "configs" / "distill_phase1.yaml"), "epochs=0"], "override 'epochs=0': epochs: must be >= 1, got 0"),
    (["distill", "phase2", "--config", str(ROOT / "configs" / "distill_phase2.yaml"), "cache_min_score=2"], "cache_min_score: must be in [0, 1], got 2.0"),
])
def test_numeric_flags_are_refused_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error(capsys, cli.main(argv))
    assert message in line
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")} - {"checkpoints", "checkpoints/.run.lock"}
    assert not left  # no teacher cache, no checkpoint, no log (only the training commands' run-lock file)


def test_distill_video_steps_below_epochs_is_refused_by_the_library():
    from sam3m4.distill.video_run import check_video_args

    with pytest.raises(ConfigError, match=r"^--steps 2: must be >= --epochs \(3\)"):
        check_video_args(steps=2, epochs=3, keep_last=1, lr=1e-3, clip_len=8, w_teacher=1.0, w_gt=1.0, num_val=1,
                         train_pairs=0, val_pairs=0, threads=1)


# --- one writer: logs staged, symlinks out of the project refused --------------------------------------------
def test_saco_eval_log_is_untouched_when_the_command_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    for existing in (None, b"an earlier run's log\n"):
        log = tmp_path / "eval.log"
        if existing is not None:
            log.write_bytes(existing)
        before = snapshot(tmp_path)
        rc = cli.main(["saco-eval", "image", "--gt", str(tmp_path / "missing.json"), "--pred", str(pred),
                       "--out", str(tmp_path / "out.json"), "--log", str(log)])
        assert "missing.json" in one_error(capsys, rc)
        assert snapshot(tmp_path) == before  # the log neither created nor emptied, no result, no temporary file


@pytest.fixture
def project(tmp_path, monkeypatch):
    """``tmp/proj`` as the project root, ``tmp/outside`` beyond it."""
    proj, outside = tmp_path / "proj", tmp_path / "outside"
    proj.mkdir()
    outside.mkdir()
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(proj))
    monkeypatch.chdir(proj)
    return proj, outside


def test_check_contained_follows_file_and_folder_symlinks(project):
    proj, outside = project
    (proj / "inside").mkdir()
    os.symlink(proj / "inside", proj / "linked_in")
    assert check_contained(proj / "linked_in" / "x.log") == proj / "linked_in" / "x.log"  # stays in: fine
    assert check_contained(outside / "explicit.log") == outside / "explicit.log"  # outside as written: the user's
    os.symlink(outside, proj / "logs")
    with pytest.raises(OutsideProject, match=rf"^logs/x\.log: refused to write: a symlink leads it to {outside}/x"):
        check_contained(Path("logs/x.log"))


def test_results_store_refuses_a_symlinked_results_file(project):
    proj, outside = project
    target = outside / "victim.jsonl"
    target.write_bytes(b"precious\n")
    (proj / "reports" / "demo").mkdir(parents=True)
    os.symlink(target, proj / "reports" / "demo" / "results.jsonl")
    with pytest.raises(OutsideProject, match=r"reports/demo/results\.jsonl: refused to write"):
        ResultsStore("demo").record(stage=schema.STAGE3, subject="s", metric="m", value=1.0)
    assert target.read_bytes() == b"precious\n"


def test_prune_refuses_a_logs_folder_symlinked_outside(project, capsys):
    proj, outside = project
    (proj / "checkpoints").mkdir()
    os.symlink(outside, proj / "logs")
    before = snapshot(outside)
    line = one_error(capsys, cli.main(["prune", "--root", str(proj), "--run", "r"]))
    assert "storage_prune.log: refused to write: a symlink leads it to" in line
    assert snapshot(outside) == before and not (proj / "reports").exists()


def test_prune_refuses_a_results_file_symlinked_outside(project, capsys):
    proj, outside = project
    (proj / "checkpoints").mkdir()
    (proj / "reports" / "r").mkdir(parents=True)
    (outside / "r.jsonl").write_bytes(b"x\n")
    os.symlink(outside / "r.jsonl", proj / "reports" / "r" / "results.jsonl")
    line = one_error(capsys, cli.main(["prune", "--root", str(proj), "--run", "r"]))
    assert "reports/r/results.jsonl: refused to write" in line
    assert (outside / "r.jsonl").read_bytes() == b"x\n" and not (proj / "logs").exists()


# --- the run-name lock ----------------------------------------------------------------------------------------
HOLD = """
import sys, time
from sam3m4.runlock import run_name_lock
with run_name_lock(sys.argv[1], "holder under test"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held(project):
    """A second process holding run ``demo``'s lock of ``project``."""
    proj, _ = project
    env = {k: v for k, v in os.environ.items() if k != RUN_ENV}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, "demo"], cwd=proj, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_writer_of_a_run_is_refused_naming_the_holder(held, project, capsys, monkeypatch):
    proj, _ = project
    monkeypatch.setattr(cli, "RUN_LOCK_WAIT_S", 0.0)  # `report` would wait for the holder first
    os.symlink(ROOT / "configs", proj / "configs")  # the pipeline config names its distill configs relatively
    info = run_name_holder("demo")
    assert info["pid"] == held.pid and info["command"] == "holder under test"
    (proj / "reports" / "demo").mkdir(exist_ok=True)
    ResultsStore("demo").record(stage=schema.STAGE3, subject="s", metric="m", value=1.0)
    before = snapshot(proj)
    line = one_error(capsys, cli.main(["report", "--run", "demo", "--targets", str(TARGETS)]))
    assert f"run 'demo' is in use by pid {held.pid} on " in line and "holder under test" in line
    line = one_error(capsys, cli.main(["pipeline", "--config", str(DEMO), "run=demo"]))
    assert f"pid {held.pid}" in line
    assert snapshot(proj) == before  # no stage log truncated, no report, no state


def test_a_short_command_waits_for_the_holder_to_finish(held, project):
    """`report`, `eval` ... wait for another writer of the run (``wait_s``); only a pipeline is refused at once."""
    with pytest.raises(RunLockedError):
        with run_name_lock("demo", "at once"):
            pass
    threading.Timer(0.5, held.kill).start()  # the holder ends while the second writer waits
    with run_name_lock("demo", "waiting", wait_s=120) as info:
        assert info["pid"] == os.getpid()


def test_the_lock_is_free_after_its_holder_dies_and_leaves_no_file(held, project):
    proj, _ = project
    held.kill()
    held.wait()
    with run_name_lock("demo", "after") as info:  # the kernel dropped the dead holder's flock
        assert info["pid"] == os.getpid()
        with run_name_lock("demo"):  # nested in one process (and its children): passes through
            pass
    assert not run_name_lock_path("demo").exists() and run_name_holder("demo") is None


# --- the regression gate ----------------------------------------------------------------------------------------
def _gate_store(root: Path, run: str, drop) -> None:
    store = ResultsStore(run, root=root)
    if drop is not None:
        store.record(stage=schema.STAGE4, subject="int4", metric=schema.MIOU_DROP, value=drop, unit="points",
                     target=2.0,
                     comparison="<=")
    store.record(stage=schema.STAGE3, subject=schema.TEACHER, metric=schema.MIOU, value=0.5, unit="fraction")


@pytest.mark.parametrize("new, reason", [
    (None, "int4 miou_drop: missing in new (measured in old)"),
    (math.nan, "int4 miou_drop: not a finite number in new"),
    (1.5, "int4 miou_drop: regressed 0.3 -> 1.5"),
])
def test_the_regression_gate_fails_with_its_reason(tmp_path, new, reason):
    _gate_store(tmp_path, "old", 0.3)
    _gate_store(tmp_path, "new", new)
    c = compare_runs("new", "old", root=tmp_path, targets=load_targets(TARGETS))
    assert not c.gate_passed and any(r.startswith(reason) for r in c.gate_reasons), c.gate_reasons


def test_the_regression_gate_fails_when_the_runs_share_no_gated_metric(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _gate_store(tmp_path / "reports", "old", None)
    _gate_store(tmp_path / "reports", "new", None)
    rc = cli.main(["report", "--run", "new", "--compare", "old", "--regression-gate", "--targets", str(TARGETS)])
    out = capsys.readouterr().out
    assert rc == 1 and "regression gate failed vs old: new and old share no gated metric" in out
    _gate_store(tmp_path / "reports", "old", 0.3)
    _gate_store(tmp_path / "reports", "new", 0.4)
    assert cli.main(["report", "--run", "new", "--compare", "old", "--regression-gate", "--targets",
                     str(TARGETS)]) == 0


# --- predict and device import inputs ----------------------------------------------------------------------------
def test_predict_refuses_a_decompression_bomb_and_clashing_names(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    out = tmp_path / "out"
    for side, what in ((100, "error level"), (40, "warning level")):  # > 2x the limit: error; > 1x: warning
        bomb = tmp_path / f"bomb{side}.png"
        Image.new("L", (side, side)).save(bomb)
        line = one_error(capsys, cli.main(["predict", "--ckpt", "none.pt", "--image", str(bomb), "--prompt", "x",
                                           "--out", str(out)]))
        assert f"{bomb}: too many pixels to decode safely" in line, what
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b" / "x.jpg")
    line = one_error(capsys, cli.main(["predict", "--ckpt", "none.pt", "--image", "a/x.png", "b/x.jpg",
                                       "--prompt", "x", "--out", str(out)]))
    assert "--image b/x.jpg: same file name stem 'x' as a/x.png" in line
    assert not out.exists()


def test_device_import_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "sam3m4", "device", "import", str(fifo), "--pte-dir", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # a hang fails here
    assert proc.returncode == 2 and proc.stderr.strip() == f"sam3m4: error: {fifo}: not a regular file (a FIFO)"


def test_a_fifo_pte_is_refused_before_hashing(tmp_path):
    from types import SimpleNamespace

    from sam3m4.device.match import match_pte

    os.mkfifo(tmp_path / "m_xnnpack_fp16.pte")
    row = SimpleNamespace(pte_name="m_xnnpack_fp16.pte", where="results.json: [0]")
    with pytest.raises(DataFormatError, match=r"m_xnnpack_fp16\.pte: not a regular file \(a FIFO\)$"):
        match_pte(row, tmp_path)


def test_a_folder_writer_that_fails_leaves_the_old_files_whole(tmp_path):
    """save_pretrained-style writers fill a temporary folder; only a finished one replaces the files."""
    from sam3m4.fileio import atomic_folder

    out = tmp_path / "teacher"
    out.mkdir()
    (out / "config.json").write_text("old config")
    (out / "bootstrap_metrics.json").write_text("kept")
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as tmp:
            (tmp / "config.json").write_text("half")
            raise RuntimeError("killed mid-save")
    assert (out / "config.json").read_text() == "old config" and sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]
    with atomic_folder(out) as tmp:
        (tmp / "config.json").write_text("new config")
        (tmp / "model.safetensors").write_bytes(b"w")
    assert (out / "config.json").read_text() == "new config" and (out / "bootstrap_metrics.json").read_text() == "kept"
    assert (out / "model.safetensors").read_bytes() == b"w" and sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]


def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_kept(tmp_path):
    """Only the project's own temporary names, and only when their writing process is gone."""
    import torch

    from sam3m4.checkpoint import atomic_save_safetensors
    from sam3m4.fileio import remove_stale_temporaries, temporary_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f".shard-u0001.safetensors.{int(dead.stdout)}0123abcd.tmp"
    live = temporary_name(tmp_path / "shard-u0002.safetensors")  # this process: still running
    other = tmp_path / ".tmpkFe6YY"  # not a name this project writes
    for p in (gone, live, other):
        p.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [gone]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])

    out = atomic_save_safetensors({"x": torch.ones(3)}, tmp_path / "a.safetensors", metadata={"k": "v"})
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        assert f.metadata() == {"k": "v"} and f.get_tensor("x").tolist() == [1.0, 1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "a.safetensors"])

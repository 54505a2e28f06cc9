"""What a killed training run leaves behind is cleaned when the next run starts: the temporary checkpoint
files of its saves (only the names sam3m4 writes), and the step CSV rows past the resumed step."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from sam3m4 import checkpoint
from sam3m4.distill import recipe
from sam3m4.distill.logs import ScalarLogger

ROOT = Path(__file__).resolve().parents[2]
KILLED_SAVE = """
import os, sys, torch
from sam3m4 import checkpoint

def killed(obj, handle):  # the process dies half-way through writing the checkpoint
    handle.write(b"PK partial"); handle.flush(); os._exit(9)

torch.save = killed
checkpoint.save_checkpoint(sys.argv[1], phase=2, epoch=2, step=8, state={"model": {}})
"""


def _killed_save(ckpt: Path) -> Path:
    """Run a real save_checkpoint that is killed inside torch.save; returns the temporary file it left."""
    out = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(ckpt)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 9, out.stderr
    (left,) = ckpt.iterdir()
    return left


def _write_log(path: Path, steps, torn: str = "") -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr"])
        w.writerows([s, 1.0 / s, 1e-3] for s in steps)
    with open(path, "a", newline="") as f:
        f.write(torn)


def _steps(path: Path) -> list[int]:
    return [int(r["step"]) for r in csv.DictReader(open(path, newline=""))]


def test_resume_removes_own_tmp_files_only(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    killed = _killed_save(ckpt)
    assert killed.name.startswith(".phase2_epoch2_step8.pt.") and killed.name.endswith(".tmp")
    own = [killed, ckpt / ".phase2_best.pt.tmp"]
    others = [ckpt / n for n in (".phase1_epoch1_step4.pt.abc123.tmp",  # another phase's save
                                 ".video_epoch1.pt.x1y2z3.tmp",          # the video run's
                                 "notes.tmp", ".notes.tmp", "phase2_epoch1_step4.pt.tmp", ".phase2_epoch1_step4.pt",
                                 "phase2_epoch1_step4.pt")]
    for p in own[1:] + others:
        p.write_bytes(b"x")
    with pytest.warns(UserWarning) as warned:
        checkpoint.clean_interrupted(ckpt, 2, 4)
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(p.name for p in others)
    assert sorted(str(w.message) for w in warned) == sorted(
        f"{p}: removed a temporary checkpoint file left by an interrupted save" for p in own)
    with pytest.warns(UserWarning, match=r"\.video_epoch1\.pt\.x1y2z3\.tmp: removed"):
        checkpoint.clean_interrupted(ckpt, None, 1)  # the video run: its own only
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(p.name for p in others if "video" not in p.name)


def test_resume_truncates_the_step_log_so_no_step_repeats(tmp_path):
    logs, ckpt = tmp_path / "logs", tmp_path / "ckpt"
    logs.mkdir()
    _write_log(logs / "phase2.csv", range(1, 9), torn="9,0.11")  # steps 1..8, then a torn row (killed writer)
    _write_log(logs / "phase2_val.csv", [4, 8])
    with pytest.warns(UserWarning) as warned:
        checkpoint.clean_interrupted(ckpt, 2, 4, [logs / "phase2.csv", logs / "phase2_val.csv", logs / "absent.csv"])
    assert [str(w.message).split(" (")[0] for w in warned] == [f"{logs / 'phase2.csv'}: dropped 5 row(s) after step 4",
                                                              f"{logs / 'phase2_val.csv'}: dropped 1 row(s) after step 4"]
    assert _steps(logs / "phase2.csv") == [1, 2, 3, 4] and _steps(logs / "phase2_val.csv") == [4]
    assert sorted(p.name for p in logs.iterdir()) == ["phase2.csv", "phase2_val.csv"]  # no temporary file left
    logger = ScalarLogger(logs, 2, tensorboard=False)  # the resumed run logs on
    for step in (5, 6):
        logger.log(step, {"loss": 0.1, "lr": 1e-3})
    assert _steps(logs / "phase2.csv") == [1, 2, 3, 4, 5, 6]


def test_fresh_run_starts_a_new_log(tmp_path):
    _write_log(tmp_path / "phase1.csv", range(1, 4))
    with pytest.warns(UserWarning, match="dropped 3 row"):
        checkpoint.clean_interrupted(tmp_path / "ckpt", 1, 0, [tmp_path / "phase1.csv"])
    assert not (tmp_path / "phase1.csv").exists()  # the new run writes its own header
    (tmp_path / "other.csv").write_text("epoch,loss\n9,1\n")  # no step column: not a step log, left alone
    assert checkpoint.truncate_log(tmp_path / "other.csv", 0) == 0 and (tmp_path / "other.csv").read_text() == "epoch,loss\n9,1\n"


def test_recipe_train_cleans_up_before_it_logs(tmp_path):
    """recipe.train at a resumed step (here: already at its last step, so nothing is trained) calls the helper."""
    ckpt, logs = tmp_path / "ckpt", tmp_path / "logs"
    ckpt.mkdir()
    logs.mkdir()
    (ckpt / ".phase2_epoch2_step8.pt.k1l2m3.tmp").write_bytes(b"x")
    _write_log(logs / "phase2.csv", range(1, 9))
    cfg = {**recipe.DEFAULTS, "phase": 2, "checkpoint_dir": str(ckpt), "log_dir": str(logs), "progress": False}
    run = SimpleNamespace(cfg=cfg, steps_per_epoch=2, rank=0, world=1, step=4, total_steps=4, timings={},
                          last_checkpoint=ckpt / checkpoint.checkpoint_name(2, 2, 4))
    with pytest.warns(UserWarning):
        recipe.train(run)
    assert _steps(logs / "phase2.csv") == [1, 2, 3, 4] and list(ckpt.iterdir()) == []

"""Distillation checkpoints: atomic write, weights_only load, keep-last-K + best, corrupt fallback, student only."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sam3m4 import checkpoint
from sam3m4.errors import DataFormatError


class Opaque:
    """An arbitrary class: a weights_only load must refuse to unpickle it."""


def _state(value: float = 0.0) -> dict:
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, value)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "config": {"lr": 1e-3, "levels": [1, 2], "name": "x"}}


def test_rng_state_round_trip_is_weights_only(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = checkpoint.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    torch.save(state, tmp_path / "rng.pt")
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_atomic_save_keep_last_and_best(tmp_path):
    best = None
    for step, metric in [(10, 0.2), (20, 0.5), (30, 0.4), (40, 0.3)]:
        res = checkpoint.save_checkpoint(tmp_path, phase=2, epoch=step // 10, step=step, state=_state(step), keep_last=2,
                                metric=metric, best=best)
        best = res["best"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["phase2_best.pt", "phase2_epoch3_step30.pt", "phase2_epoch4_step40.pt"]  # no temp files
    best_state = torch.load(tmp_path / "phase2_best.pt", weights_only=True)
    assert best_state["step"] == 20 and best == 0.5
    latest = torch.load(tmp_path / "phase2_epoch4_step40.pt", weights_only=True)
    assert latest["config"]["levels"] == [1, 2] and torch.all(latest["model"]["weight"] != 30.0)
    assert set(latest["rng"]) >= {"torch", "numpy_keys", "python_state"}


def test_refuses_teacher_weights(tmp_path):
    state = _state()
    state["model"]["teacher.vision_encoder.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="teacher"):
        checkpoint.save_checkpoint(tmp_path, phase=1, epoch=1, step=1, state=state)
    assert not list(tmp_path.iterdir())


def test_corrupt_latest_falls_back_with_warning(tmp_path):
    checkpoint.save_checkpoint(tmp_path, phase=2, epoch=1, step=5, state=_state(1.0))
    checkpoint.save_checkpoint(tmp_path, phase=2, epoch=2, step=9, state=_state(2.0))
    bad = tmp_path / "phase2_epoch2_step9.pt"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated (a kill during a copy)
    with pytest.raises(DataFormatError, match=r"phase2_epoch2_step9\.pt: corrupt or truncated checkpoint"):
        checkpoint.load_checkpoint(bad)
    with pytest.warns(UserWarning, match="falling back"):
        path, state = checkpoint.load_latest(tmp_path, phase=2)
    assert path.name == "phase2_epoch1_step5.pt" and state["step"] == 5
    assert checkpoint.load_latest(tmp_path, phase=1) == (None, None)


def test_never_unpickles_arbitrary_objects(tmp_path):
    evil = tmp_path / "phase2_epoch1_step1.pt"
    torch.save({"model": {}, "step": 1, "epoch": 1, "phase": 2, "extra": Opaque()}, evil)
    with pytest.raises(DataFormatError, match="phase2_epoch1_step1.pt"):
        checkpoint.load_checkpoint(evil)
    torch.save({"model": {}}, tmp_path / "x.pt")
    with pytest.raises(DataFormatError, match="step: missing key"):
        checkpoint.load_checkpoint(tmp_path / "x.pt")


def test_resolve_init(tmp_path):
    assert checkpoint.resolve_init("", tmp_path, 1) is None
    with pytest.raises(DataFormatError, match="no phase1 checkpoint"):
        checkpoint.resolve_init("latest", tmp_path, 1)
    checkpoint.save_checkpoint(tmp_path, phase=1, epoch=1, step=3, state=_state())
    assert checkpoint.resolve_init("latest", tmp_path, 1) == Path(tmp_path) / "phase1_epoch1_step3.pt"


def test_metadata_is_versioned_and_version_1_files_still_read(tmp_path):
    """New files say their kind and data root; an old (version 1) file gets both from phase / config."""
    state = {**_state(), "config": {"data_root": "data/x"}}
    saved = checkpoint.save_checkpoint(tmp_path, phase=2, epoch=1, step=3, state=state)
    new = checkpoint.load_checkpoint(saved["path"])
    assert (new["format_version"], new["kind"], new["data_root"]) == (checkpoint.FORMAT_VERSION, "student", "data/x")
    assert checkpoint.checkpoint_kind(new) == checkpoint.KIND_STUDENT
    assert checkpoint.checkpoint_data_root(new, saved["path"]) == "data/x"

    old_video = {"model": {}, "phase": 3, "epoch": 1, "step": 4, "config": {"data": "data/v"}}  # a v1 tracker
    assert checkpoint.checkpoint_kind(old_video) == checkpoint.KIND_TRACKER
    assert checkpoint.checkpoint_data_root(old_video, "v.pt") == "data/v"
    old_image = {"model": {}, "phase": 2, "epoch": 1, "step": 4, "config": {"data_root": "data/i", "data": "no"}}
    assert checkpoint.checkpoint_kind(old_image) == checkpoint.KIND_STUDENT
    assert checkpoint.checkpoint_data_root(old_image, "i.pt") == "data/i"
    assert checkpoint.checkpoint_data_root({"model": {}, "config": {}}, "n.pt") is None
    with pytest.raises(DataFormatError, match=r"^b\.pt: config\.data: expected str, got int"):
        checkpoint.checkpoint_data_root({"config": {"data": 7}}, "b.pt")


@pytest.mark.parametrize("extra, message", [({"kind": "teacher"}, "kind: expected one of student, tracker"),
                                            ({"format_version": 99}, "format_version: 99 is newer"),
                                            ({"data_root": 5}, "data_root: expected str, got int")])
def test_bad_metadata_is_one_line_naming_the_key(tmp_path, extra, message):
    path = tmp_path / "x.pt"
    torch.save({"model": {}, "phase": 2, "epoch": 1, "step": 1, **extra}, path)
    with pytest.raises(DataFormatError, match=message):
        checkpoint.load_checkpoint(path)

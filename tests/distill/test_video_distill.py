"""``sam3m4 distill video`` end to end on the fixtures: video teacher cache -> memory training -> atomic
checkpoint that loads weights_only -> J&F / +Video image metrics / host FPS in the results store.

    python -m pytest tests/distill/test_video_distill.py -q
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch
from sam3m4.results import schema

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "synth"


def _killed_after_epoch_1(args, monkeypatch):
    """The same run, killed while training its second epoch (after video_epoch1.pt was written)."""
    from sam3m4.distill import video_run

    real, calls = video_run.train_tracker, [0]

    def train_then_die(*a, **kw):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    with monkeypatch.context() as m:
        m.setattr(video_run, "train_tracker", train_then_die)
        with pytest.raises(KeyboardInterrupt):
            video_run.distill_video(**args)


def _random_models(tmp_path, seed):
    """The fixture data under tmp_path/synth, a random tiny video teacher that keeps every detection (noise
    masklets: a deliberately weak teacher) and a random tiny student saved as a Phase 2 checkpoint."""
    from transformers import Sam3Model

    from sam3m4.checkpoint import atomic_torch_save
    from sam3m4.models import build_student
    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.video import build_video_teacher

    shutil.copytree(FIX, tmp_path / "synth")
    torch.manual_seed(seed)
    Sam3Model(build_config(image_size=56, hidden_size=64, vit_layers=1, vit_window=2, text_layers=1,
                           decoder_layers=1, num_queries=6)).save_pretrained(tmp_path / "image")
    build_video_teacher(tmp_path / "image", tmp_path / "video", score_threshold_detection=0.0, new_det_thresh=0.0)
    student = build_student("tiny")
    atomic_torch_save({"model": student.state_dict(), "preset": "tiny", "phase": 2, "epoch": 1, "step": 1},
                      tmp_path / "phase2.pt")
    return tmp_path / "synth", student


def test_distill_video_runs_and_records(tmp_path, monkeypatch):
    from sam3m4.distill.video_run import distill_video
    from sam3m4.predict import load_tracker
    from sam3m4.results import ResultsStore

    data, student = _random_models(tmp_path, seed=0)
    args = dict(ckpt=tmp_path / "phase2.pt", teacher=tmp_path / "video", data=data, out=tmp_path / "vd", steps=4,
                epochs=2, keep_last=2, lr=1e-3, clip_len=3, num_val=4, threads=0, run="t",
                cache_dir=tmp_path / "sa_v" / "cached_features")
    monkeypatch.chdir(tmp_path)  # the results store lives under ./reports/<run>
    first = distill_video(**args)
    cache = list((tmp_path / "sa_v" / "cached_features").glob("*/*.safetensors"))
    assert cache and first["train"]["steps"] == 4
    full = load_tracker(tmp_path / "vd" / "video_epoch2.pt").state_dict()
    assert torch.equal(full["student.decoder.query_embed"], student.state_dict()["decoder.query_embed"])  # frozen

    # interrupted after epoch 1, then --resume: the same weights as the uninterrupted run; the cache is reused
    stamps = {p: p.stat().st_mtime_ns for p in cache}
    args.update(out=tmp_path / "vd2", no_eval=True)
    _killed_after_epoch_1(args, monkeypatch)
    distill_video(**args, resume=True)
    resumed = load_tracker(tmp_path / "vd2" / "video_epoch2.pt").state_dict()
    assert all(torch.equal(v, resumed[k]) for k, v in full.items())
    assert {p: p.stat().st_mtime_ns for p in cache} == stamps

    # a corrupt newest checkpoint: resume warns and falls back to the previous one
    (tmp_path / "vd2" / "video_epoch2.pt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="video_epoch2.pt.*falling back"):
        distill_video(**args, resume=True)
    again = load_tracker(tmp_path / "vd2" / "video_epoch2.pt").state_dict()
    assert all(torch.equal(v, again[k]) for k, v in full.items())
    # the loss log: one row a step, none repeated after the restarts and resumes (the report's loss curves)
    with open(tmp_path / "logs" / "distillation" / "video.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(float(r["loss"]) > 0 for r in rows)
    store = ResultsStore("t")
    for subject, metric in (("teacher", "jf"), ("student/video", "jf"), ("student/video", "miou"),
                            ("student/video", "presence_f1"), ("student/video", "host_fps")):
        rec = store.latest(stage=schema.STAGE3, subject=subject, metric=metric)
        assert rec is not None and rec.provenance, (subject, metric)
    from sam3m4.eval import saco

    if saco.available() is None:  # SA-Co official metrics of the same predictions (or why not, as a note)
        for subject, metric in (("teacher", "saco_video_cgf1"), ("teacher", "saco_video_phota"),
                                ("student/video", "saco_video_il_mcc"), ("student/video", "saco_cgf1")):
            rec = store.latest(stage=schema.STAGE3, subject=subject, metric=metric)
            assert rec is not None and (rec.value is not None and "SAM 3's" in rec.provenance or
                                        rec.note.startswith("not measured")), (subject, metric)


def test_a_non_finite_tracker_output_stops_with_stage_and_step(tmp_path):
    """NaN in the tracker's outputs (here planted in the memory's initial latents) stops training before the loss
    (whose BCE would raise on NaN) and before the optimizer, with one line naming the stage, the step and the last
    good checkpoint; the CLI turns it into exit 2."""
    from sam3m4.data import SacoVideoDataset
    from sam3m4.distill.video import train_tracker
    from sam3m4.errors import Sam3m4Error, TrainingDiverged
    from sam3m4.models import build_student
    from sam3m4.models.video import StudentTracker

    torch.manual_seed(0)
    tracker = StudentTracker(build_student("tiny"))
    with torch.no_grad():
        tracker.memory.initial[0, 0] = float("nan")
    before = {k: v.clone() for k, v in tracker.state_dict().items()}
    train = SacoVideoDataset(FIX / "saco_video" / "train.json")
    with pytest.raises(TrainingDiverged, match=r"^video distillation tracker output step 7: nan \(not finite\); run "
                                               r"stopped, last good checkpoint kept: .*video_epoch1.pt") as err:
        train_tracker(tracker, train, steps=3, clip_len=2, progress=False, first_step=6,
                      last_checkpoint=tmp_path / "video_epoch1.pt")
    assert isinstance(err.value, Sam3m4Error) and "\n" not in str(err.value)
    after = tracker.state_dict()
    assert all(torch.equal(v, after[k]) or torch.isnan(v).any() for k, v in before.items())  # no step was taken


def test_distill_video_from_a_weak_teacher_trains_to_the_end(tmp_path, monkeypatch):
    """A deliberately weak teacher (random weights, every detection kept: noise masklets) and a random student,
    at five times the default lr: the run trains all its steps, every logged loss and every saved weight finite,
    and the checkpoint carries the schedule so a resume continues it."""
    from sam3m4.checkpoint import load_checkpoint
    from sam3m4.distill.video_run import distill_video

    data, _ = _random_models(tmp_path, seed=1)
    monkeypatch.chdir(tmp_path)
    out = distill_video(tmp_path / "phase2.pt", tmp_path / "video", data=data, out=tmp_path / "vd", steps=24,
                        epochs=2, lr=1e-2, clip_len=4, num_val=4, threads=0, run="t", no_eval=True,
                        cache_dir=tmp_path / "cache", log_dir=tmp_path / "logs")
    assert out["train"]["steps"] == 24 and math.isfinite(out["train"]["final_loss"])
    with open(tmp_path / "logs" / "video.csv", newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)
    state = load_checkpoint(tmp_path / "vd" / "video_epoch2.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["scheduler"]["last_epoch"] == 24


def test_an_infinite_gradient_is_skipped_and_ten_in_a_row_stop(monkeypatch):
    """The failure the weak-teacher demo hit: the gradient norm through the clip's recurrent state overflowed to
    inf and clip_grad_norm_ turned it into NaN weights. Such a step is now skipped with a warning (weights
    untouched); ten in a row stop the run with one line naming the stage and step."""
    from sam3m4.data import SacoVideoDataset
    from sam3m4.distill import video as video_distill
    from sam3m4.errors import TrainingDiverged
    from sam3m4.models import build_student
    from sam3m4.models.video import StudentTracker

    torch.manual_seed(0)
    tracker = StudentTracker(build_student("tiny"))
    train = SacoVideoDataset(FIX / "saco_video" / "train.json")
    real_clip, calls = torch.nn.utils.clip_grad_norm_, [0]

    def exploding_at_2(params, max_norm, *a, **kw):  # the second step's gradient overflows
        calls[0] += 1
        return torch.tensor(math.inf) if calls[0] == 2 else real_clip(params, max_norm, *a, **kw)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", exploding_at_2)
    with pytest.warns(UserWarning, match=r"video distillation step 2: gradient norm inf, step skipped"):
        stats = video_distill.train_tracker(tracker, train, steps=3, clip_len=2, progress=False)
    assert stats["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in tracker.parameters())

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **kw: torch.tensor(math.inf))
    before = {k: v.clone() for k, v in tracker.state_dict().items()}
    with pytest.warns(UserWarning), pytest.raises(TrainingDiverged, match=r"^video distillation gradient \(10 steps "
                                                                         r"in a row not finite\) step 10: inf"):
        video_distill.train_tracker(tracker, train, steps=12, clip_len=2, progress=False)
    assert all(torch.equal(v, tracker.state_dict()[k]) for k, v in before.items())  # nothing was updated


def test_the_cli_passes_every_flag_and_default_to_the_library():
    """``sam3m4 distill video`` is :func:`distill_video` by flag name: the same names, the same defaults."""
    import argparse
    import inspect

    from sam3m4.config import resolve_args
    from sam3m4.distill import cli
    from sam3m4.distill.video_run import distill_video

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    plain = vars(resolve_args(parser.parse_args(["video"])))
    params = inspect.signature(distill_video).parameters
    assert set(params) == set(plain) - {"distill_command", "config", "overrides", "func"}
    assert {k: str(p.default) for k, p in params.items()} == {k: str(plain[k]) for k in params}

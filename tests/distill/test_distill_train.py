"""Distillation recipe on tiny shapes: losses fall, resume reproduces the curve, NaN stops, configs, CLI."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sam3m4.distill import cache as feature_cache
from sam3m4 import checkpoint
from sam3m4.distill import losses as distill_losses
from sam3m4.distill import recipe
from sam3m4.errors import ConfigError, Sam3m4Error

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_teacher_kwargs) -> list[str]:
    """Overrides shared by every run: fixture data, a random tiny teacher, one cache, 64 px student."""
    root = tmp_path_factory.mktemp("distill")
    teacher = feature_cache.save_random_teacher(root / "teacher", **tiny_teacher_kwargs)
    return [f"data_root={ROOT / 'fixtures' / 'synth'}", f"teacher={teacher}", f"cache_dir={root / 'cache'}",
            "image_size=64", "threads=1", "progress=false", "log_every=1", "eval_batch_size=16", "vis_pairs=2",
            "warmup_steps=2", "cache_topk=4"]


def _cfg(base, tmp_path, *extra):
    return recipe.load_config(None, base + [f"checkpoint_dir={tmp_path / 'ckpt'}", f"log_dir={tmp_path / 'logs'}", *extra])


def test_phase1_loss_falls_and_writes_logs(base, tmp_path):
    s = recipe.main(_cfg(base, tmp_path, "phase=1", "train_limit=18", "batch_size=2", "epochs=12", "lr=3e-3"))
    assert s["steps"] == 12 and s["losses"][-1] < 0.7 * s["losses"][0], s["losses"]
    rows = list(csv.DictReader(open(tmp_path / "logs" / "phase1.csv")))
    assert len(rows) >= 12 and {"loss", "lr", "images_per_s"} <= set(rows[0])
    assert list((tmp_path / "logs" / "vis").glob("phase1_epoch12_*.png"))
    state = checkpoint.load_checkpoint(tmp_path / "ckpt" / "phase1_epoch12_step12.pt")
    assert "projection" in state and state["config"]["phase"] == 1


def test_phase2_loss_falls_and_checkpoint_is_student_only(base, tmp_path):
    from sam3m4.models import build_student
    from sam3m4.teacher.sam3 import load_teacher

    s = recipe.main(_cfg(base, tmp_path, "phase=2", "train_limit=8", "batch_size=8", "epochs=20", "lr=3e-3", "w_gt=0.5",
                    "w_match_topk=2", "grad_clip=0"))
    assert s["losses"][-1] < 0.75 * s["losses"][0], s["losses"]
    assert {"student_miou", "teacher_miou", "miou_ratio", "student_presence_f1"} <= set(s)
    assert list((tmp_path / "logs" / "vis").glob("phase2_epoch20_*.png"))
    state = torch.load(tmp_path / "ckpt" / "phase2_epoch20_step20.pt", weights_only=True)
    teacher_keys = set(load_teacher(dict(x.split("=", 1) for x in base)["teacher"]).model.state_dict())
    assert set(state["model"]) == set(build_student("tiny").state_dict())
    assert not set(state["model"]) & teacher_keys and not any("teacher" in k for k in state["model"])
    assert (tmp_path / "ckpt" / "phase2_best.pt").is_file()
    assert len(checkpoint.list_checkpoints(tmp_path / "ckpt", 2)) == 3  # keep_last


def test_resume_reproduces_uninterrupted_loss_curve(base, tmp_path):
    common = ["phase=2", "train_limit=16", "batch_size=4", "epochs=2", "w_gt=0.5", "eval_every=0"]
    straight = recipe.main(_cfg(base, tmp_path / "a", *common))["losses"]  # 8 steps, 4 per epoch
    first = recipe.main(_cfg(base, tmp_path / "b", *common, "max_steps=3"))["losses"]  # stops mid-epoch
    rest = recipe.main(_cfg(base, tmp_path / "b", *common, "resume=true"))
    assert len(straight) == 8 and rest["timings"]["resumed_from"].endswith("phase2_epoch1_step3.pt")
    assert first + rest["losses"] == straight


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(base, tmp_path, monkeypatch):
    real, calls = distill_losses.output_distill_loss, []

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:  # call 1 is setup's dry run (finding parameters the loss never reaches)
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(distill_losses, "output_distill_loss", poisoned)
    with pytest.raises(Sam3m4Error, match=r"^phase2 loss step 3: nan \(not finite\); run stopped, last good "
                                          r"checkpoint kept: .*phase2_epoch1_step2\.pt"):
        recipe.main(_cfg(base, tmp_path, "phase=2", "train_limit=16", "batch_size=4", "epochs=1", "eval_every=0",
                    "save_every_steps=1"))
    path, state = checkpoint.load_latest(tmp_path / "ckpt", 2)
    assert path.name == "phase2_epoch1_step2.pt" and all(torch.isfinite(v).all() for v in state["model"].values()
                                                         if v.is_floating_point())


def test_benchmark_cache_reports_ratio(base, tmp_path, capsys):
    res = recipe.benchmark_cache(_cfg(base, tmp_path, "train_limit=16", "batch_size=4", "benchmark_steps=1"))
    assert res["cache_s_per_step"] > 0 and res["live_s_per_step"] > 0
    assert res["live_over_cache"] == pytest.approx(res["live_s_per_step"] / res["cache_s_per_step"], abs=0.005)
    assert f"live / cache = {res['live_over_cache']}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["distill_phase1.yaml", "distill_phase2.yaml"])
def test_shipped_configs_load(name):
    path = ROOT / "configs" / name
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python -m sam3m4.distill.recipe --config configs/" + name)
    cfg = recipe.load_config(path)
    assert cfg["phase"] == int(name[len("distill_phase")])


def test_unknown_keys_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("phase: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="bad.yaml: learning_rate: unknown key"):
        recipe.load_config(bad)
    with pytest.raises(ConfigError, match="epoch: unknown key"):
        recipe.load_config(None, ["epoch=3"])


def test_cli_is_light_and_parses():
    code = "import sys, sam3m4.distill.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    from sam3m4.distill import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["phase2", "--resume", "--benchmark-cache", "epochs=1"])
    assert args.func is cli.run and args.resume and args.benchmark_cache and args.overrides == ["epochs=1"]
    assert parser.parse_args(["cache"]).config == "configs/distill_phase2.yaml"


def test_resume_from_a_checkpoint_of_another_shape_is_one_line(tmp_path):
    """--resume onto a checkpoint whose weights do not fit the student names the file and the key (exit 2 from
    the CLI), instead of torch's multi-line load_state_dict error."""
    from sam3m4.checkpoint import save_checkpoint
    from sam3m4.errors import DataFormatError
    from sam3m4.models import build_student

    ckpt_dir = tmp_path / "ckpt"
    state = build_student("tiny").state_dict()
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = state[key][:, :1].clone()  # a wrong shape
    save_checkpoint(ckpt_dir, phase=2, epoch=1, step=1, state={"model": state, "preset": "tiny"}, keep_last=2)
    from sam3m4 import checkpoint

    path, loaded = checkpoint.load_latest(ckpt_dir, 2)
    with pytest.raises(DataFormatError, match=rf"{path.name}: model\.{key}: "):
        checkpoint.load_model_state(build_student("tiny"), loaded["model"], path)

"""The real run's path at small scale: pretrained student init, the full-size teacher writer (tiny config),
the m4pro / rehearsal pipeline keys reaching the stage commands, and each fix found by `make rehearse`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sam3m4.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


# --- student_init ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def timm_file(tmp_path_factory) -> Path:
    """A timm classification state dict of the tiny preset's backbone, saved as a user would download it."""
    from sam3m4.models.pretrained import save_timm_state_dict

    return save_timm_state_dict("efficientvit_b0", tmp_path_factory.mktemp("timm") / "b0.safetensors", seed=3)


def test_student_init_loads_every_backbone_tensor_and_reports_the_head(timm_file):
    from safetensors.torch import load_file

    from sam3m4.models import build_student
    from sam3m4.models.pretrained import init_backbone

    student = build_student("tiny")
    report = init_backbone(student.image_encoder.backbone, str(timm_file))
    assert report.loaded == report.total and not report.missing and not report.mismatched
    assert report.unexpected and all(k.startswith("head.") for k in report.unexpected)
    ref = load_file(str(timm_file))
    got = student.image_encoder.backbone.state_dict()
    assert torch.equal(got["stem_in_conv.conv.weight"], ref["stem.in_conv.conv.weight"])  # features_only renames


def test_student_init_reports_mismatched_and_missing_keys(timm_file, tmp_path):
    from safetensors.torch import load_file, save_file

    from sam3m4.models import build_student
    from sam3m4.models.pretrained import init_backbone

    state = load_file(str(timm_file))
    state["stem.in_conv.conv.weight"] = torch.zeros(3, 3, 3, 3)  # wrong shape
    del state["stages.0.blocks.0.main.inverted_conv.conv.weight"]
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    student = build_student("tiny")
    before = student.image_encoder.backbone.state_dict()["stem_in_conv.conv.weight"].clone()
    report = init_backbone(student.image_encoder.backbone, str(bad))
    assert report.mismatched == ["stem.in_conv.conv.weight: file (3, 3, 3, 3) vs backbone (8, 3, 3, 3)"]
    assert report.missing == ["stem_in_conv.conv.weight", "stages_0.blocks.0.main.inverted_conv.conv.weight"]
    assert torch.equal(student.image_encoder.backbone.state_dict()["stem_in_conv.conv.weight"], before)
    assert "1 mismatched" in report.summary() and "2 missing" in report.summary()


def test_student_init_missing_model_id_is_one_line_saying_how(tmp_path, monkeypatch):
    from sam3m4.models.pretrained import resolve_weights

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError) as err:
        resolve_weights("timm/repvit_m0_9.dist_450e_in1k")
    msg = str(err.value)
    assert "\n" not in msg and "not in the local Hugging Face cache" in msg and "huggingface-cli download" in msg
    with pytest.raises(ConfigError, match="no such file"):
        resolve_weights("./nowhere/weights.safetensors")


def test_student_init_is_recorded_in_the_checkpoint(timm_file, tmp_path, tiny_teacher_kwargs):
    from sam3m4 import checkpoint
    from sam3m4.distill import cache as feature_cache, recipe

    teacher = feature_cache.save_random_teacher(tmp_path / "teacher", **tiny_teacher_kwargs)
    base = [f"data_root={ROOT / 'fixtures' / 'synth'}", f"teacher={teacher}", f"cache_dir={tmp_path / 'cache'}",
            "image_size=64", "threads=1", "progress=false", "vis_pairs=0", "train_limit=4", "val_limit=4",
            "batch_size=2", "epochs=1", "cache_topk=4", f"checkpoint_dir={tmp_path / 'ckpt'}",
            f"log_dir={tmp_path / 'logs'}"]
    s1 = recipe.main(recipe.load_config(None, base + ["phase=1", f"student_init={timm_file}"]))
    state = checkpoint.load_checkpoint(Path(s1["checkpoint"]))
    rec = state["init"]["student_init"]
    assert rec["source"] == str(timm_file) and rec["loaded"] == rec["total"] and rec["unexpected"]
    s2 = recipe.main(recipe.load_config(None, base + ["phase=2", "init_from=latest", "eval_every=0"]))
    state2 = checkpoint.load_checkpoint(Path(s2["checkpoint"]))
    assert state2["init"]["init_from"].endswith(".pt") and state2["init"]["student_init"]["sha256"] == rec["sha256"]


# --- the full-size teacher writer (at a tiny config) and what broke at real dimensions ------------------------
def test_random_teacher_writer_loads_like_facebook_sam3(tmp_path, tiny_teacher_kwargs):
    """`sam3m4 teacher full` writes a Sam3VideoModel folder (like facebook/sam3): load_teacher reads its
    detector, load_video_teacher all of it, and the cache finds the resolution under detector_config."""
    from sam3m4.distill.cache import teacher_resolution
    from sam3m4.teacher import load_teacher
    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.full import write_random_teacher
    from sam3m4.teacher.video import load_video_teacher, video_config

    sizes = {**tiny_teacher_kwargs, "hidden_size": 64}  # the tracker's memory needs a multiple of 64
    info = write_random_teacher(tmp_path / "t", config=video_config(build_config(**sizes)))
    assert json.loads((tmp_path / "t" / "config.json").read_text())["model_type"] == "sam3_video"
    teacher = load_teacher(tmp_path / "t")
    assert sum(p.numel() for p in teacher.model.parameters()) == info["detector_params"] < info["checkpoint_params"]
    assert teacher_resolution(tmp_path / "t") == info["image_size"] == sizes["image_size"]
    assert load_video_teacher(tmp_path / "t").model.config.detector_config.vision_config.backbone_config.image_size \
        == info["image_size"]


def test_synth_videos_of_four_frames_and_their_own_size(tmp_path):
    """Fix: 4-frame videos (the CLI's minimum) crashed the generator (an empty uniform range for a leaving
    object); ``video_size`` draws the videos at another side than the images."""
    from sam3m4.data.synth import generate

    m = generate(tmp_path / "d", n_images=2, n_videos=2, seed=0, image_size=64, video_size=48, n_frames=4,
                 progress=False)
    assert m["video_size"] == 48
    video = json.loads((tmp_path / "d" / "saco_video" / "val.json").read_text())["videos"][0]
    assert (video["height"], video["width"], video["length"]) == (48, 48, 4)


def test_video_dataset_first_pairs_keeps_pairs_with_objects():
    from sam3m4.data import SacoVideoDataset

    ds = SacoVideoDataset(ROOT / "fixtures" / "synth" / "saco_video" / "train.json")
    view = ds.first_pairs(2)
    assert len(view) == 2 and all(p["num_objects"] > 0 for p in view.pairs) and len(ds) > 2
    assert view[1].phrase == view.pairs[1]["noun_phrase"] and ds.first_pairs(0) is ds


# --- the pipeline configs -------------------------------------------------------------------------------------
def _list(config: str, *overrides: str) -> str:
    out = subprocess.run([sys.executable, "-m", "sam3m4", "pipeline", "--config", config, "--list", *overrides],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout


def test_m4pro_pipeline_keys_reach_the_distill_commands():
    lines = {line.split()[1]: line for line in _list("configs/m4pro.yaml", "batch_size=8").splitlines()}
    for phase, epochs in (("phase1", 2), ("phase2", 4)):
        line = lines[phase]
        assert f"distill {phase} --config configs/distill_{phase}.yaml --device mps" in line
        for item in ("student_preset=repvit_m0_9_504", "student_init=timm/repvit_m0_9.dist_450e_in1k",
                     f"epochs={epochs}", "batch_size=8"):
            assert item in line, (item, line)


def test_demo_commands_do_not_change_and_rehearsal_writes_only_its_own_folders():
    from sam3m4.pipeline.stages import build_stages, load_config

    demo = {s.name: s for s in build_stages(load_config(ROOT / "configs" / "demo.yaml"))}
    assert demo["phase1"].argv[3:] == ["distill", "phase1", "--config", "configs/distill_phase1.yaml", "--device",
                                       "auto", "data_root=data/synth", "teacher=checkpoints/teacher/sam3-tiny-synth"]
    assert demo["data"].argv[3:] == ["data", "synth", "--out", "data/synth", "--images", "600", "--videos", "24",
                                     "--seed", "0"]
    stages = build_stages(load_config(ROOT / "configs" / "rehearsal.yaml"))
    written = [o for s in stages for o in s.outputs]
    assert written and all(o.startswith(("rehearsal/", "data/rehearsal", "reports/rehearsal/",
                                         "outputs/visual_eval/rehearsal/")) for o in written), written
    names = [s.name for s in stages]
    assert names[2] == "teacher" and "teacher full" in " ".join(stages[2].argv) and names[-2:] == ["plan", "report"]


def test_pipeline_rejects_bad_dataset_size_and_overrides(tmp_path):
    from sam3m4.pipeline.stages import load_config

    with pytest.raises(ConfigError, match="dataset_size: picture"):
        load_config(ROOT / "configs" / "m4pro.yaml", ["dataset_size={picture: 3}"])
    with pytest.raises(ConfigError, match="phase1_overrides"):
        load_config(ROOT / "configs" / "m4pro.yaml", ["phase1_overrides=[epochs]"])


def test_runner_records_peak_memory_per_stage(tmp_path):
    """Run from a fresh process, as `sam3m4 pipeline` runs: a forked child's peak counts the parent's resident
    pages until it execs (Linux keeps that high-water mark), and a pytest worker holds GBs of models by now."""
    grow = "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    runner = ("import sys; from pathlib import Path; from sam3m4.pipeline.runner import run_stages; "
              "from sam3m4.pipeline.stages import Stage; out = Path(sys.argv[1]); "
              f"run_stages([Stage('grow', [sys.executable, '-c', {grow!r}])], out / 'state.json', log_dir=out)")
    subprocess.run([sys.executable, "-c", runner, str(tmp_path)], check=True, cwd=ROOT)
    peak = json.loads((tmp_path / "state.json").read_text())["stages"]["grow"]["peak_rss_mb"]
    assert peak is None or 200 <= peak < 2000


def test_plan_scales_the_measurements_to_the_real_run(tmp_path):
    """plan_rows: hours = per-unit cost x the real run's counts (and its epochs / steps); disk likewise."""
    from sam3m4.pipeline.plan import plan_rows
    from sam3m4.pipeline.stages import load_config

    target = load_config(ROOT / "configs" / "m4pro.yaml",
                         ["dataset_size={images: 100, image_pairs: 1000, videos: 10, video_pairs: 20, frames: 500}",
                          "phase1_epochs=2", "phase2_epochs=3", "phase2_overrides=[epoch_items=0]", "video_steps=50",
                          "video_args=[--train-pairs, 10]"])
    m = {"teacher_s_per_image": 10.0, "teacher_s_per_pair": 1.0, "video_teacher_s_per_frame": 2.0,
         "phase1_s_per_item": 0.5, "phase2_s_per_item": 0.25, "video_s_per_step": 4.0,
         "cache_bytes_per_image": 1e6, "cache_bytes_per_pair": 1e5, "video_cache_bytes_per_pair_frame": 1e3,
         "stages": {"quantize": {"seconds": 60.0}}, "teacher": {"bytes": 3e9},
         "sizes": {"phase1_best.pt": 100, "phase2_best.pt": 200, "video_epoch2.pt": 300}}
    rows, folders, _ = plan_rows(m, target)
    here = {name: h for name, _, h, _ in rows}
    assert here["teacher-feature cache (images)"] == 100 * 10.0 + 1000 * 1.0
    assert here["Phase 1"] == 2 * 100 * 0.5 and here["Phase 2"] == 3 * 1000 * 0.25
    assert here["video teacher masklets (cache)"] == 10 * 50 * 2.0 and here["video distillation"] == 50 * 4.0
    disk = {name: size for name, _, size in folders}
    assert disk["data/sa_v/cached_features"] == 10 * 50 * 1e3
    assert disk[f"{target['data_root']}/cached_features"] == 100 * 1e6 + 1000 * 1e5


def test_report_of_a_rehearsal_says_so_at_the_top(tmp_path):
    from sam3m4.pipeline.plan import record_measurements
    from sam3m4.report.markdown import render_report

    m = {"teacher": {"detector_params": 840376374}, "teacher_s_per_image": 150.0,
         "stages": {"phase1": {"seconds": 410.5, "peak_rss_mb": 5300.0}}}
    record_measurements("reh", m, "configs/m4pro.yaml", "Linux", "2026-11-29", root=str(tmp_path))
    text = render_report("reh", root=tmp_path, plots=[]).read_text(encoding="utf-8")
    head = text.split("## 1)")[0]
    assert "**Rehearsal" in head and "random (full-size SAM 3, 840,376,374 detector parameters)" in head
    assert "teacher_s_per_image" in text and "stage/phase1" in text

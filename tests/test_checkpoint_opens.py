"""A checkpoint is opened once per stage: a 5-mode ``quantize_compare`` (3 post-training + 2 QAT modes, the real
QAT fine-tune on a random tiny teacher's cache) reads the checkpoint file exactly once."""

from __future__ import annotations

import builtins
import io
from pathlib import Path

import pytest
import torch

from sam3m4 import checkpoint
from sam3m4.checkpoint import Checkpoint, save_checkpoint
from sam3m4.models import build_student
from sam3m4.quantize import stage
from sam3m4.quantize.compare import ModeResult
from sam3m4.quantize.modes import MODES
from sam3m4.results import ResultsStore

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT / "fixtures" / "synth"


@pytest.fixture
def loads(monkeypatch):
    """Every file opened for reading while the test runs (``open`` / ``io.open``: what ``torch.load(path)``,
    ``Path.read_bytes`` and :meth:`Checkpoint.open` go through), as a list of paths."""
    seen, real = [], io.open

    def spy(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, Path)) and "r" in mode:
            seen.append(Path(file))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    return seen


@pytest.fixture
def phase2_ckpt(tmp_path, tiny_teacher_kwargs):
    """A Phase 2 checkpoint whose config names the fixture data, a random tiny teacher and a fresh cache (4 pairs)."""
    from sam3m4.distill.cache import save_random_teacher

    teacher = save_random_teacher(tmp_path / "teacher", **tiny_teacher_kwargs)
    torch.manual_seed(0)
    config = {"data_root": str(SYNTH), "teacher": str(teacher), "cache_dir": str(tmp_path / "cache"),
              "student_preset": "tiny", "train_limit": 4, "cache_topk": 4, "threads": 0, "progress": False}
    state = {"model": build_student("tiny").state_dict(), "preset": "tiny", "config": config}
    return save_checkpoint(tmp_path / "ck", phase=2, epoch=0, step=1, state=state)["path"]


def test_checkpoint_open_reads_once_and_carries_its_metadata(phase2_ckpt, loads):
    ck = Checkpoint.open(phase2_ckpt)
    assert [p for p in loads if p == phase2_ckpt] == [phase2_ckpt]
    assert (ck.kind, ck.preset, ck.phase, ck.data_root) == (checkpoint.KIND_STUDENT, "tiny", 2, str(SYNTH))
    assert ck.config["train_limit"] == 4 and set(ck.model) == set(build_student("tiny").state_dict())
    assert len(ck.sha256) == 64 and ck.provenance.startswith(str(phase2_ckpt))
    assert Checkpoint.open(ck) is ck and loads.count(phase2_ckpt) == 1  # passed along, not reread


def test_a_five_mode_compare_reads_the_checkpoint_once(phase2_ckpt, loads, monkeypatch, tmp_path):
    def measure(model, mode, val, num_val, **kw):  # scoring is test_quantize_stage's; this counts the reads
        return ModeResult(mode=mode, size_mb=1.0, miou=0.5, presence_f1=0.9, avg_ms=1.0, num_pairs=num_val,
                          sizes={"quantized_params": 1, "fp16_params": 1})

    monkeypatch.setattr(stage.compare, "measure", measure)
    r = stage.quantize_compare(phase2_ckpt, out_dir=tmp_path / "q", num_val=2, qat="always", qat_steps=1,
                               store=ResultsStore("t", root=tmp_path / "reports"), progress=False, echo=None)
    assert [row.mode for row in r.rows] == list(MODES) and len(MODES) == 5
    assert [p for p in loads if p == phase2_ckpt] == [phase2_ckpt]


def test_a_video_compare_reads_the_tracker_and_its_phase2_checkpoint_once_each(phase2_ckpt, loads, monkeypatch,
                                                                               tmp_path):
    """A tracker's QAT modes train with the config of the Phase 2 file it came from (``config.ckpt``): that file is
    opened once for both QAT modes, the tracker file once for all five."""
    from sam3m4.checkpoint import atomic_torch_save
    from sam3m4.models.video import StudentTracker
    from sam3m4.quantize import pipeline

    torch.manual_seed(0)
    video = tmp_path / "video_epoch1.pt"
    atomic_torch_save({"model": StudentTracker(build_student("tiny")).state_dict(), "preset": "tiny", "phase": 3,
                       "epoch": 1, "step": 1, **checkpoint.checkpoint_metadata(checkpoint.KIND_TRACKER, SYNTH),
                       "config": {"ckpt": str(phase2_ckpt)}}, video)
    trained_with = []

    def qat_finetune(ckpt, mode, **kw):  # the fine-tune itself is the first test's; this one checks what it gets
        trained_with.append(ckpt)
        return build_student("tiny").eval(), {"steps": 1, "lr": 1e-4}

    monkeypatch.setattr(pipeline, "qat_finetune", qat_finetune)
    monkeypatch.setattr(stage.compare, "measure", lambda model, mode, val, num_val, **kw: ModeResult(
        mode=mode, size_mb=1.0, miou=0.5, presence_f1=0.9, avg_ms=1.0, num_pairs=num_val,
        sizes={"quantized_params": 1, "fp16_params": 1}))
    r = stage.quantize_compare(video, out_dir=tmp_path / "q", num_val=2, qat="always", store=ResultsStore(
        "t", root=tmp_path / "reports"), progress=False, echo=None)
    assert [row.mode for row in r.rows] == list(MODES)
    assert [p for p in loads if p in (video, phase2_ckpt)] == [video, phase2_ckpt]
    assert len(trained_with) == 2 and trained_with[0] is trained_with[1] and trained_with[0].path == phase2_ckpt
    assert r.quantized.modes == list(MODES) and r.quantized["qat_int4"].kind == "tracker"

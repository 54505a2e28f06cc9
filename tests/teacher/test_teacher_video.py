"""Video teacher (sam3m4.teacher.video): SAM 3's Sam3VideoModel built from a tiny image teacher, saved and
loaded back through the loader facebook/sam3 uses, streaming text-prompted masklets offline.

    python -m pytest tests/teacher/test_teacher_video.py -q
"""

from __future__ import annotations

from types import SimpleNamespace

from pathlib import Path

import numpy as np
import pytest
import torch

from sam3m4.errors import Sam3m4Error

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "synth" / "saco_video" / "train.json"


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    from transformers import Sam3Model

    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.video import build_video_teacher

    root = tmp_path_factory.mktemp("video_teacher")
    torch.manual_seed(0)
    image = Sam3Model(build_config(image_size=56, hidden_size=64, vit_layers=1, vit_window=2, text_layers=1,
                                   decoder_layers=1, num_queries=6)).eval()
    image.save_pretrained(root / "image")
    # untrained detector: thresholds at 0 so that objects exist and the tracker runs frame after frame
    build_video_teacher(root / "image", root / "video", score_threshold_detection=0.0, new_det_thresh=0.0)
    return root


def test_detector_is_the_image_teacher_and_the_folder_loads_both_ways(video_dir):
    from transformers import Sam3Model

    from sam3m4.teacher import load_teacher
    from sam3m4.teacher.video import load_video_teacher

    image = Sam3Model.from_pretrained(video_dir / "image", local_files_only=True).state_dict()
    teacher = load_video_teacher(video_dir / "video")
    detector = teacher.model.detector_model.state_dict()
    assert all(torch.equal(v, detector[k]) for k, v in image.items())
    neck = teacher.model.tracker_neck.state_dict()
    assert all(torch.equal(v, neck[k]) for k, v in teacher.model.detector_model.vision_encoder.neck.state_dict().items())
    assert load_teacher(video_dir / "video").image_size == 56  # the image path reads the same folder


def test_masklets_stream_over_a_clip(video_dir):
    from sam3m4.data import SacoVideoDataset
    from sam3m4.eval.video import evaluate_videos
    from sam3m4.teacher.video import load_video_teacher

    sample = next(s for s in (SacoVideoDataset(FIX)[i] for i in range(3)) if s.present)
    teacher = load_video_teacher(video_dir / "video")
    masks, scores = teacher.masklets(sample.frames[:4], sample.phrase)
    t, h, w = 4, *sample.frames.shape[1:3]
    assert masks.ndim == 4 and masks.shape[1:] == (t, h, w) and masks.dtype == bool and len(masks) > 0
    assert scores.shape == masks.shape[:2] and (scores > 0).sum(axis=0).min() > 0  # objects on every frame
    # its own masklets as the ground truth: a second pass over the same frames must reproduce them exactly (J&F 1);
    # a stream that leaks state between clips, or masklets shifted against their frames, scores below 1
    own = SimpleNamespace(frames=sample.frames[:4], phrase=sample.phrase, masks=masks)
    assert evaluate_videos([own], teacher, progress=False).jf_mean == 1.0
    empty = SimpleNamespace(frames=sample.frames[:4], phrase=sample.phrase, masks=np.zeros_like(masks))
    assert evaluate_videos([empty], teacher, progress=False).jf_mean < 1.0  # objects where there are none: not 1


def test_errors_are_one_line(tmp_path):
    from transformers import Sam3Config

    from sam3m4.teacher.video import load_video_teacher, video_config

    with pytest.raises(Sam3m4Error, match="no such weights directory.*huggingface-cli download"):
        load_video_teacher(tmp_path / "missing")
    small = Sam3Config(vision_config=dict(fpn_hidden_size=32))
    with pytest.raises(ValueError, match="multiple of 64"):
        video_config(small)


def test_train_tracker_moves_the_tracker_only(video_dir):
    """A few steps of ground-truth tracking on the fixture videos: tracker and its neck change, the detector
    (the image teacher) does not, the loss is finite."""
    from sam3m4.data import SacoVideoDataset
    from sam3m4.teacher.video import load_video_teacher, train_teacher_tracker

    model = load_video_teacher(video_dir / "video").model
    detector = {k: v.clone() for k, v in model.detector_model.state_dict().items()}
    tracker = {k: v.clone() for k, v in model.tracker_model.state_dict().items()}
    stats = train_teacher_tracker(model, SacoVideoDataset(FIX), steps=4, clip_len=3, progress=False)
    assert stats["steps"] >= 1 and np.isfinite(stats["final_loss"])
    assert all(torch.equal(v, model.detector_model.state_dict()[k]) for k, v in detector.items())
    assert any(not torch.equal(v, model.tracker_model.state_dict()[k]) for k, v in tracker.items())
    assert not any(p.requires_grad for p in model.parameters())

"""Student video module (sam3m4.models.video): streaming ``track`` step with a fixed-size state.

    python -m pytest tests/models/test_video_student.py -q
"""

from __future__ import annotations

import pytest
import torch

from sam3m4.models import build_student
from sam3m4.models.video import StudentTracker
from sam3m4.models.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def tracker():
    torch.manual_seed(0)
    return StudentTracker(build_student("tiny")).eval()


def _clip(tracker, frames=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = tracker.student.image_size
    return torch.rand(frames, 1, 3, s, s, generator=g) * 2 - 1  # (T, B=1, 3, S, S)


def _prompt(tracker, phrase="red circle"):
    tok = get_tokenizer()([phrase])
    return tracker.student.encode_text(tok["input_ids"], tok["attention_mask"])


def test_untrained_tracker_returns_the_image_student_per_frame(tracker):
    """Every memory path starts at zero: before video training the tracker is the Phase 2 image model."""
    prompt, state = _prompt(tracker), tracker.init_state(1)
    with torch.no_grad():
        for frame in _clip(tracker):
            masks, scores, state = tracker.track(frame, prompt.tokens, prompt.mask, state)
            image = tracker.student.decode(tracker.student.encode_image(frame), prompt)
            torch.testing.assert_close(masks, image.mask_logits)
            torch.testing.assert_close(scores, image.scores)
            assert state.shape == (1, *tracker.state_shape)


def test_memory_carries_the_past_and_trains():
    """With non-zero memory weights a frame's outputs depend on the state (the latents read into the frame,
    the previous queries seeding this frame's), each step writes a new state, and a loss on a later frame
    reaches the memory and carry parameters through the state."""
    torch.manual_seed(1)
    tr = StudentTracker(build_student("tiny")).eval()
    for p in (tr.memory.read_attn.out_proj.weight, tr.carry.weight):
        torch.nn.init.normal_(p, std=0.2)
    prompt, frames = _prompt(tr), _clip(tr, 2, seed=1)
    start = tr.init_state(1).detach()
    other = start + torch.randn(start.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        m0, s0, new = tr.track(frames[1], prompt.tokens, prompt.mask, start)
        m1, s1, _ = tr.track(frames[1], prompt.tokens, prompt.mask, other)
    assert (m0 - m1).abs().max() > 1e-3 and (s0 - s1).abs().max() > 1e-4  # the state matters
    assert (new - start).abs().max() > 1e-3  # and is written
    state = tr.init_state(1)
    for frame in frames:
        masks, scores, state = tr.track(frame, prompt.tokens, prompt.mask, state)
    (masks.sigmoid().mean() + scores.mean()).backward()
    for name in ("memory.write_attn.q_proj.weight", "memory.mask_embed.weight", "memory.initial", "carry.weight"):
        grad = dict(tr.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_track_step_exports_with_static_shapes(tracker):
    prompt = _prompt(tracker)
    frame, state = _clip(tracker, 1)[0], tracker.init_state(1).detach().clone()
    inputs = (frame, prompt.tokens.detach(), prompt.mask, state)
    program = torch.export.export(tracker, inputs, strict=False)
    with torch.no_grad():
        want = tracker.track(*inputs)
        got = program.module()(*inputs)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)


def test_video_predictor_gives_masklets_the_jf_evaluator_scores(tracker):
    """VideoPredictor: one masklet per query ever kept, (M, T, H, W) at the video's size; evaluate_videos
    scores it. Threshold 0 keeps every query, threshold > 1 none."""
    from pathlib import Path

    from sam3m4.data import SacoVideoDataset
    from sam3m4.eval.video import evaluate_videos
    from sam3m4.predict import VideoPredictor

    ds = SacoVideoDataset(Path(__file__).resolve().parents[2] / "fixtures" / "synth" / "saco_video" / "train.json")
    sample = next(ds[i] for i in range(len(ds)) if ds[i].present)
    t, h, w = sample.frames.shape[:3]
    every = VideoPredictor(tracker, threshold=0.0)(sample)
    assert every.shape == (tracker.num_queries, t, h, w) and every.dtype == bool
    assert VideoPredictor(tracker, threshold=1.01)(sample).shape == (0, t, h, w)
    result = evaluate_videos([sample], VideoPredictor(tracker, threshold=0.0), progress=False)
    assert 0.0 <= result.jf_mean <= 1.0 and result.num_objects == len(sample.masks)


def test_benchmark_track_reports_consistent_statistics(tracker):
    """The host FPS benchmark (no speed assertion here: numbers are recorded, not gated, in unit tests)."""
    from sam3m4.models.video import benchmark_track

    r = benchmark_track(tracker, steps=5, warmup=1)
    assert r["steps"] == 5 and 0 < r["p50_ms"] <= r["p90_ms"]
    assert r["fps"] == pytest.approx(1000 / r["p50_ms"]) and "eager" in r["runtime"]
    with pytest.raises(ValueError, match="steps"):
        benchmark_track(tracker, steps=0)

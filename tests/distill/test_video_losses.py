"""Video distillation loss: one query per object per clip (sam3m4.distill.video_losses).

    python -m pytest tests/distill/test_video_losses.py -q
"""

from __future__ import annotations

import torch

from sam3m4.distill.video_losses import match_clip, video_distill_loss

T, Q, M = 3, 4, 8


def _clip():
    """Two objects: A (left block, visible on every frame), B (right block, hidden on frame 1)."""
    masks = torch.zeros(T, 2, M, M)
    masks[:, 0, :, :3] = 1
    masks[:, 1, :, 5:] = 1
    masks[1, 1] = 0
    visible = masks.flatten(2).amax(2) > 0  # (T, 2)
    return masks, visible


def _tracker_output(assign):
    """Per frame, ``assign[t] = {query: object}``: those queries predict the object sharply, score 0.95."""
    masks, _ = _clip()
    logits = torch.full((T, Q, M, M), -8.0)
    scores = torch.full((T, Q), 0.02)
    for t, pairs in enumerate(assign):
        for q, o in pairs.items():
            logits[t, q] = masks[0, o] * 16 - 8
            scores[t, q] = 0.95
    return logits, scores


def test_consistent_identity_beats_a_query_that_switches_objects():
    masks, visible = _clip()
    steady = [{1: 0, 3: 1}, {1: 0}, {1: 0, 3: 1}]
    switch = [{1: 0, 3: 1}, {3: 0}, {3: 0, 1: 1}]  # query 3 takes over A on frame 1, then query 1 follows B
    good = video_distill_loss(*_tracker_output(steady), masks, visible)
    bad = video_distill_loss(*_tracker_output(switch), masks, visible)
    assert good["loss"] < 0.5 and bad["loss"] > 4 * good["loss"]
    qi, oi = match_clip(*_tracker_output(steady), masks, visible)
    assert dict(zip(qi.tolist(), oi.tolist())) == {1: 0, 3: 1}


def test_gradients_and_an_empty_clip():
    masks, visible = _clip()
    logits, scores = _tracker_output([{}, {}, {}])
    logits.requires_grad_(True)
    scores = scores.clone().requires_grad_(True)
    out = video_distill_loss(logits, scores, masks, visible)
    out["loss"].backward()
    assert logits.grad.abs().sum() > 0 and scores.grad.abs().sum() > 0 and out["num_matched"] == 2
    none = video_distill_loss(logits, scores, masks[:, :0], visible[:, :0])
    assert none["num_matched"] == 0 and torch.isfinite(none["loss"])


def test_train_tracker_updates_only_the_memory_and_lowers_the_loss():
    """A few steps on the fixture videos' ground truth: the frozen image student is untouched, the memory and
    carry move, and the clip loss falls (seeded)."""
    from pathlib import Path

    from sam3m4.data import SacoVideoDataset
    from sam3m4.distill.video import train_tracker
    from sam3m4.models import build_student
    from sam3m4.models.video import StudentTracker

    ds = SacoVideoDataset(Path(__file__).resolve().parents[2] / "fixtures" / "synth" / "saco_video" / "train.json")
    torch.manual_seed(0)
    tracker = StudentTracker(build_student("tiny"))
    image_before = {k: v.clone() for k, v in tracker.student.state_dict().items()}
    carry_before = tracker.carry.weight.detach().clone()
    stats = train_tracker(tracker, ds, steps=12, lr=3e-3, clip_len=3, progress=False)
    assert all(torch.equal(v, tracker.student.state_dict()[k]) for k, v in image_before.items())
    assert not torch.equal(carry_before, tracker.carry.weight)
    assert stats["final_loss"] < stats["first_loss"] and stats["trainable_params"] > 0

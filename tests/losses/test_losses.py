"""SAM 3-style set-prediction loss (Hungarian matching) and a short bootstrap-teacher smoke run.

    python -m pytest tests/losses/test_losses.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sam3m4.errors import ConfigError
from sam3m4.losses.set_prediction import SetLossWeights, hungarian_match, set_prediction_loss

ROOT = Path(__file__).resolve().parents[2]
H = W = 16


def _square(x0, y0, x1, y1):
    m = torch.zeros(H, W)
    m[y0:y1, x0:x1] = 1
    return m, torch.tensor([x0 / W, y0 / H, x1 / W, y1 / H])


def _targets():
    (m1, b1), (m2, b2) = _square(1, 1, 6, 6), _square(8, 9, 15, 14)
    return [{"masks": torch.stack([m1, m2]), "boxes_xyxy": torch.stack([b1, b2])},
            {"masks": torch.zeros(0, H, W), "boxes_xyxy": torch.zeros(0, 4)}]  # absent pair


def _prediction(targets, Q=5, shift=0):
    """Perfect prediction: queries 3 and 1 of pair 0 reproduce the two instances (masks shifted by ``shift``)."""
    masks = torch.full((2, Q, H, W), -8.0)
    boxes = torch.tensor([0.4, 0.4, 0.6, 0.6]).repeat(2, Q, 1)
    logits = torch.full((2, Q), -8.0)
    for q, k in ((3, 0), (1, 1)):
        masks[0, q] = targets[0]["masks"][k].roll(shift, dims=1) * 16 - 8
        boxes[0, q] = (targets[0]["boxes_xyxy"][k] + shift / W).clamp(0, 1)
        logits[0, q] = 8.0
    return {"mask_logits": masks, "query_logits": logits, "boxes_xyxy": boxes,
            "presence_logit": torch.tensor([[8.0], [-8.0]]), "semantic_logits": masks.amax(1, keepdim=True)}


def test_perfect_prediction_beats_shifted_one():
    t = _targets()
    perfect = set_prediction_loss(_prediction(t), t)
    shifted = set_prediction_loss(_prediction(t, shift=3), t)
    assert perfect["num_matched"] == 2
    assert perfect["loss"] < 0.1 * shifted["loss"]
    for term in ("mask_bce", "mask_dice", "box_l1", "box_giou"):
        assert perfect[term] < shifted[term]


def test_matching_finds_the_right_queries_and_is_permutation_invariant():
    t = _targets()
    pred = _prediction(t, shift=1)
    q, k = hungarian_match(pred["query_logits"][0], pred["mask_logits"][0], pred["boxes_xyxy"][0],
                           t[0]["masks"], t[0]["boxes_xyxy"])
    assert dict(zip(q.tolist(), k.tolist())) == {1: 1, 3: 0}
    base = set_prediction_loss(pred, t)["loss"]
    perm = torch.tensor([4, 2, 0, 3, 1])  # shuffle the queries
    shuffled = {k: (v[:, perm] if k in ("mask_logits", "query_logits", "boxes_xyxy") else v) for k, v in pred.items()}
    assert torch.allclose(set_prediction_loss(shuffled, t)["loss"], base, atol=1e-5)
    flipped = [{"masks": t[0]["masks"].flip(0), "boxes_xyxy": t[0]["boxes_xyxy"].flip(0)}, t[1]]  # reorder GT
    assert torch.allclose(set_prediction_loss(pred, flipped)["loss"], base, atol=1e-5)


def test_absent_pair_gets_only_classification_and_presence_negatives():
    t = _targets()[1:]
    pred = {k: v[1:] for k, v in _prediction(_targets()).items()}
    pred["query_logits"] = pred["query_logits"].clone().fill_(3.0)  # confident queries on an absent pair
    pred["presence_logit"] = torch.tensor([[3.0]])  # and a confident (wrong) presence
    out = set_prediction_loss(pred, t, SetLossWeights(semantic=0.0))
    assert out["num_matched"] == 0
    assert out["mask_bce"] == out["mask_dice"] == out["box_l1"] == out["box_giou"] == 0
    assert out["cls"] > 1.0 and out["presence"] > 1.0
    pred["presence_logit"] = torch.tensor([[-8.0]])  # presence right: the final scores are low already
    assert set_prediction_loss(pred, t, SetLossWeights(semantic=0.0))["cls"] < 0.1
    assert set_prediction_loss(pred, t, SetLossWeights(semantic=0.0, absent_cls=0.0))["cls"] == 0


def test_shipped_bootstrap_config_is_valid():
    from sam3m4.teacher.bootstrap import load_config

    # what `sam3m4 teacher bootstrap --config` reads: raises ConfigError naming an unknown key or a wrong type
    assert load_config(ROOT / "configs" / "teacher_bootstrap.yaml")["max_steps"] > 0


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from sam3m4.data.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, n_images=10, n_videos=0, seed=3, image_size=64, progress=False)
    return out


def test_bootstrap_smoke_decreases_loss_and_reloads(tiny_synth, tmp_path):
    from sam3m4.teacher.bootstrap import bootstrap_teacher
    from sam3m4.teacher.sam3 import load_teacher

    out_dir = tmp_path / "teacher"
    r = bootstrap_teacher(tiny_synth, out_dir, max_steps=20, seed=0, progress=False,
                          image_size=56, hidden_size=32, vit_layers=1, vit_window=2, text_layers=1,
                          decoder_layers=1, num_queries=6, lr=2e-3, batch_size=4, pairs_per_image=2)
    assert r["steps"] == 20
    assert r["final_loss"] < r["first_loss"]
    assert 0.0 <= r["val_miou"] <= 1.0 and 0.0 <= r["val_presence_f1"] <= 1.0
    assert (out_dir / "bootstrap_metrics.json").is_file()
    assert load_teacher(out_dir).image_size == 56


def test_bootstrap_is_the_same_teacher_on_a_slow_host(tiny_synth, tmp_path):
    """Training is bounded by steps, never by the clock: a host whose clock runs far past the time budget trains
    the same teacher, all of its steps, and only warns."""
    from safetensors.torch import load_file

    from sam3m4.teacher import bootstrap

    kw = dict(time_budget_s=300, max_steps=6, seed=0, progress=False, image_size=56, hidden_size=32, vit_layers=1,
              vit_window=2, text_layers=1, decoder_layers=1, num_queries=6, lr=2e-3, batch_size=4, pairs_per_image=2)
    fast = bootstrap.bootstrap_teacher(tiny_synth, tmp_path / "a", evaluate_val=False, **{**kw, "time_budget_s": None})
    real_time, calls = bootstrap.time.time, [0]

    def slow_clock():  # every reading 1000 s after the last: the loop "takes" far over its 300 s budget
        calls[0] += 1
        return real_time() + 1000.0 * calls[0]

    bootstrap.time.time = slow_clock
    try:
        with pytest.warns(UserWarning, match="over time_budget_s"):
            slow = bootstrap.bootstrap_teacher(tiny_synth, tmp_path / "b", evaluate_val=False, **kw)
    finally:
        bootstrap.time.time = real_time
    assert fast["steps"] == slow["steps"] == 6
    assert slow["over_time_budget"] and not fast["over_time_budget"]
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_bootstrap_pre_trains_the_image_encoder_first_when_asked(tiny_synth, tmp_path):
    """``encoder_pretrain_steps`` > 0: the image encoder trains on dense colour + shape labels before the recipe
    (a different teacher than without, timed apart); the recipe itself runs all its steps either way."""
    from safetensors.torch import load_file

    from sam3m4.errors import TrainingDiverged
    from sam3m4.teacher.bootstrap import bootstrap_teacher

    kw = dict(max_steps=2, seed=0, progress=False, evaluate_val=False, image_size=56, hidden_size=32, vit_layers=1,
              vit_window=2, text_layers=1, decoder_layers=1, num_queries=6, batch_size=4, pairs_per_image=2)
    plain = bootstrap_teacher(tiny_synth, tmp_path / "a", **kw)
    pre = bootstrap_teacher(tiny_synth, tmp_path / "b", encoder_pretrain_steps=3, encoder_pretrain_images=2, **kw)
    assert "pretrain_s" not in plain and pre["pretrain_s"] >= 0 and pre["steps"] == plain["steps"] == 2
    assert pre["train"]["encoder_pretrain_steps"] == 3
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in "ab")
    vit = [k for k in a if k.startswith("vision_encoder.")]
    assert vit and any(not torch.equal(a[k], b[k]) for k in vit)
    with pytest.raises(ConfigError, match="encoder_pretrain_level: expected 0 to 2"):
        bootstrap_teacher(tiny_synth, tmp_path / "c", encoder_pretrain_steps=1, encoder_pretrain_level=3, **kw)
    with pytest.raises(TrainingDiverged, match=r"^encoder pre-training loss step 2: (nan|inf) \(not finite\)"):
        bootstrap_teacher(tiny_synth, tmp_path / "d", encoder_pretrain_steps=3, encoder_pretrain_lr=1e30, **kw)
    assert not (tmp_path / "d" / "model.safetensors").exists()


def test_bootstrap_stops_on_a_non_finite_loss(tiny_synth, tmp_path):
    """A NaN loss stops the bootstrap with one line naming the stage and the step, and nothing is saved."""
    from sam3m4.errors import TrainingDiverged
    from sam3m4.teacher.bootstrap import bootstrap_teacher

    with pytest.raises(TrainingDiverged, match=r"^teacher bootstrap loss step 1: nan \(not finite\); run stopped, no checkpoint written yet"):
        bootstrap_teacher(tiny_synth, tmp_path / "t", max_steps=3, seed=0, progress=False, image_size=56,
                          hidden_size=32, vit_layers=1, vit_window=2, text_layers=1, decoder_layers=1,
                          num_queries=6, batch_size=4, pairs_per_image=2, loss_cls=float("nan"))
    assert not (tmp_path / "t" / "model.safetensors").exists()


def test_phrase_targets_are_every_phrase_union_on_each_image(tiny_synth):
    """The dense auxiliary loss's targets: per image, each phrase's union mask (zeros when absent), flipped
    with the image."""
    from transformers import Sam3Model

    from sam3m4.teacher.bootstrap_data import PairTensors
    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.sam3 import Sam3Teacher

    teacher = Sam3Teacher(Sam3Model(build_config(image_size=56, hidden_size=32, vit_layers=1, vit_window=2,
                                                 text_layers=1, decoder_layers=1, num_queries=6)))
    data = PairTensors.from_json(tiny_synth / "saco_image" / "train.json", teacher, 16, keep_full=False)
    idx = torch.arange(len(data))
    maps = data.phrase_targets(idx)  # (I, T, 16, 16)
    assert maps.shape == (len(data.pixels), len(data.phrases), 16, 16)
    for p in range(len(data)):
        got = maps[data.image_of[p], data.phrase_of[p]]
        want = data.masks[p].amax(0) if data.present[p] else torch.zeros(16, 16)
        assert torch.allclose(got, want, atol=1e-3), data.phrases[data.phrase_of[p]]
    assert maps.sum() > 0
    flip = torch.ones(len(data), dtype=torch.bool)
    assert torch.equal(data.phrase_targets(idx, flip), maps.flip(-1))


def test_phase2_score_term_is_zero_at_the_teacher_and_pulls_the_joint_score_to_it():
    """Phase 2's ``score`` term: soft BCE of max_q sigmoid(q) * sigmoid(presence), the product SAM 3 thresholds."""
    from sam3m4.distill.losses import best_log_score, soft_bce_prob, weights_from_config

    q, p = torch.tensor([[0.3, -1.0, 2.0], [-3.0, -2.0, -4.0]]), torch.tensor([[1.0], [-0.5]])
    want = (q.sigmoid() * p.sigmoid()).amax(1)
    assert torch.allclose(best_log_score(q, p).exp(), want)
    assert soft_bce_prob(want.log(), want).abs() < 1e-5  # binary KL: 0 when the student matches
    q_s, p_s = torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 1, requires_grad=True)  # student scores 0.25
    target = torch.tensor([0.9, 0.05])
    loss = soft_bce_prob(best_log_score(q_s, p_s), target)
    assert loss > 0.1
    loss.backward()
    assert p_s.grad[0] < 0 < p_s.grad[1]  # descent raises pair 0's score and lowers pair 1's
    assert weights_from_config({"w_score": 2.0}).score == 2.0


def test_phase2_gt_score_term_pulls_the_joint_score_to_the_labels_where_the_teacher_is_wrong():
    """``gt_score``: the joint score against the ground-truth presence, so labels correct a teacher's misses."""
    from sam3m4.distill.losses import OutputDistillWeights, output_distill_loss

    t = _targets()  # pair 0 present, pair 1 absent
    teacher = {"presence_logit": torch.full((2, 1), -6.0), "semantic_logits": torch.full((2, 1, H, W), -6.0),
               "mask_index": torch.full((2, 2), -1), "mask_logits": torch.zeros(2, 2, H, W),
               "query_logits": torch.full((2, 5), -6.0), "boxes_xyxy": torch.zeros(2, 5, 4)}  # misses pair 0
    w = OutputDistillWeights(gt_score=1.0)
    right = output_distill_loss(_prediction(t), teacher, w, t)
    wrong = _prediction(t)
    wrong["presence_logit"] = torch.tensor([[-8.0], [8.0]], requires_grad=True)
    wrong_terms = output_distill_loss(wrong, teacher, w, t)
    assert right["gt_score"] < 1e-2 < wrong_terms["gt_score"]
    wrong_terms["gt_score"].backward()
    assert wrong["presence_logit"].grad[0] < 0 < wrong["presence_logit"].grad[1]
    assert "gt_score" not in output_distill_loss(_prediction(t), teacher, w, None)  # no labels, no term
    assert "gt_score" not in output_distill_loss(_prediction(t), teacher, OutputDistillWeights(), t)


@pytest.mark.parametrize("code", range(8))
def test_dihedral_moves_boxes_with_their_masks(code):
    """Each of the 8 symmetries of the bootstrap's augmentation keeps a box the tight box of its mask."""
    from sam3m4.teacher.bootstrap_data import dihedral, dihedral_boxes

    m = torch.zeros(1, 12, 12)
    m[0, 2:5, 6:11] = 1  # rows 2-4, columns 6-10
    box = torch.tensor([[6, 2, 11, 5]], dtype=torch.float32) / 12  # XYXY, pixel edges, in [0, 1]
    t = dihedral(m, code)[0]
    rows, cols = torch.nonzero(t.any(1)).flatten(), torch.nonzero(t.any(0)).flatten()
    want = torch.tensor([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], dtype=torch.float32) / 12
    assert torch.allclose(dihedral_boxes(box, code), want), code
    assert code != 1 or torch.equal(dihedral(m, 1), m.flip(-1))  # code 1 is the plain horizontal flip


def test_balanced_pairs_make_presence_unpredictable_from_the_phrase(tiny_synth):
    """In SA-Co synth a one-word phrase ("star") is asked mostly when present (every present shape is asked,
    absent ones rarely): a model can learn presence from the text alone. balance_pairs adds every absent
    (image, phrase) pair and draws each phrase kind present half the time."""
    from transformers import Sam3Model

    from sam3m4.teacher.bootstrap import _balanced_pick
    from sam3m4.teacher.bootstrap_data import PairTensors
    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.sam3 import Sam3Teacher

    teacher = Sam3Teacher(Sam3Model(build_config(image_size=56, hidden_size=32, vit_layers=1, vit_window=2,
                                                 text_layers=1, decoder_layers=1, num_queries=6)))
    data = PairTensors.from_json(tiny_synth / "saco_image" / "train.json", teacher, 16, keep_full=False)
    n, images = len(data), len(data.pixels)
    added = data.add_absent_pairs()
    assert len(data) == n + added == images * len(data.phrases)  # every (image, phrase) once
    assert not data.present[n:].any() and all(len(m) == 0 for m in data.masks[n:])
    inputs, targets = data.batch(torch.arange(n, len(data))[:4])  # a added pair is a negative with no instance
    assert all(len(t["masks"]) == len(t["boxes_xyxy"]) == 0 for t in targets)
    cells, gen = data.balanced_cells(), torch.Generator().manual_seed(0)
    single = torch.tensor([" " not in p for p in data.phrases])[data.phrase_of]
    picks = torch.cat([_balanced_pick(cells[i], 4, gen) for _ in range(200) for i in range(images)])
    for kind in (True, False):
        share = data.present[picks[single[picks] == kind]].float().mean().item()
        assert 0.4 < share < 0.6, (kind, share)


def test_hard_negatives_are_the_same_image_one_word_away(tiny_synth):
    """hard_negatives asks an image for a near miss of what it shows ("blue circle" or "red star" next to a red
    circle, "star" next to a circle): absent on that image, the same phrase kind, one word changed."""
    from transformers import Sam3Model

    from sam3m4.teacher.bootstrap import _hard_pick
    from sam3m4.teacher.bootstrap_data import PairTensors
    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.sam3 import Sam3Teacher

    teacher = Sam3Teacher(Sam3Model(build_config(image_size=56, hidden_size=32, vit_layers=1, vit_window=2,
                                                 text_layers=1, decoder_layers=1, num_queries=6)))
    data = PairTensors.from_json(tiny_synth / "saco_image" / "train.json", teacher, 16, keep_full=False)
    data.add_absent_pairs()
    near = data.near_misses()
    assert len(near) == len(data)
    maps = data.phrase_maps.flatten(2).amax(-1) > 0  # (I, T) phrase shown on image
    checked = 0
    for p, hits in enumerate(near):
        if not data.present[p]:
            assert len(hits) == 0
            continue
        words = data.phrases[data.phrase_of[p]].split(" ")
        for q in hits.tolist():
            other = data.phrases[data.phrase_of[q]].split(" ")
            assert data.image_of[q] == data.image_of[p] and not data.present[q]
            assert not maps[data.image_of[q], data.phrase_of[q]]
            assert len(other) == len(words) and sum(a != b for a, b in zip(words, other)) == 1
            checked += 1
    assert checked > 0
    gen = torch.Generator().manual_seed(0)
    for pairs in data.pairs_of_image():
        anchors = pairs[torch.tensor([len(near[q]) > 0 for q in pairs.tolist()], dtype=torch.bool)]
        picks = _hard_pick(anchors, near, 3, gen)
        assert len(picks) == (3 if len(anchors) else 0) and not data.present[picks].any()


def test_attribute_aucs_tell_a_colour_blind_from_a_shape_blind_teacher():
    """presence_auc_shape / presence_auc_colour: a teacher that sees colour but not shape scores an absent
    "red square" next to a red circle like the present "red circle" (0.5), an absent "blue circle" low (1.0)."""
    from sam3m4.teacher.bootstrap import _attribute_aucs

    class Pairs:  # the PairTensors fields _attribute_aucs reads
        phrases = ["blue circle", "circle", "red circle", "red square"]
        # image 0 shows a red circle: asked red circle (present), red square, blue circle, circle (present)
        phrase_of = torch.tensor([2, 3, 0, 1, 2, 3, 0, 1])
        image_of = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        present = torch.tensor([True, False, False, True] * 2)

        def __len__(self):
            return 8

    colour_only = [0.9, 0.8, 0.1, 0.9, 0.6, 0.7, 0.2, 0.9]  # red square scored like red circle
    r = _attribute_aucs(colour_only, Pairs())
    assert r["presence_auc_shape"] == 0.5 and r["presence_auc_colour"] == 1.0
    shape_only = [0.9, 0.1, 0.8, 0.9, 0.6, 0.2, 0.7, 0.9]
    r = _attribute_aucs(shape_only, Pairs())
    assert r["presence_auc_shape"] == 1.0 and r["presence_auc_colour"] == 0.5


def test_shape_probe_labels_each_object_pixel_with_its_shape():
    """The shape probe's per-pixel labels are the one-word phrases' masks; a 2-step probe runs and reports."""
    from transformers import Sam3Model

    from sam3m4.teacher.bootstrap_data import PairTensors
    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.sam3 import Sam3Teacher
    from sam3m4.teacher.encoder_pretrain import SHAPE_PHRASES, shape_labels
    from sam3m4.teacher.shape_probe import shape_probe

    synth = ROOT / "fixtures" / "synth" / "saco_image"
    teacher = Sam3Teacher(Sam3Model(build_config(image_size=56, hidden_size=32, vit_layers=1, vit_window=2,
                                                 text_layers=1, decoder_layers=1, num_queries=6)))
    data = PairTensors.from_json(synth / "val.json", teacher, 16, keep_full=False)
    lab = shape_labels(data)
    assert lab.shape == (len(data.pixels), 16, 16) and 0 <= int(lab.min()) and int(lab.max()) <= len(SHAPE_PHRASES)
    for k, shape in enumerate(SHAPE_PHRASES):
        if shape in data.phrases:
            on = data.phrase_maps[:, data.phrases.index(shape)].float() >= 0.5  # (I, 16, 16)
            assert ((lab == k + 1) <= on).all()
    r = shape_probe(ROOT / "fixtures" / "synth", steps=2, images_per_step=2, evals=1)
    assert len(r["history"]) == 1 and 0.0 <= r["history"][0]["val_shape_acc"] <= 1.0 and 0 < r["val_majority"] <= 1
    c = shape_probe(ROOT / "fixtures" / "synth", steps=2, images_per_step=2, evals=1, control=True, vit_layers=2)
    assert c["control"] and c["model"] == {"vit_layers": 2} and 0.0 <= c["history"][0]["val_shape_acc"] <= 1.0


def test_the_probe_pre_trains_a_given_teachers_image_encoder_on_colour_and_shape_in_place():
    """``labels="concept"``: one class per colour + shape phrase, each pixel's class the phrase whose mask holds it;
    a given teacher's own image encoder is what trains (its text side is untouched)."""
    from transformers import Sam3Model

    from sam3m4.teacher.bootstrap_data import PairTensors
    from sam3m4.teacher.bootstrap_model import build_config
    from sam3m4.teacher.sam3 import Sam3Teacher
    from sam3m4.teacher.encoder_pretrain import SHAPE_PHRASES, concept_phrases, shape_labels
    from sam3m4.teacher.shape_probe import shape_probe

    teacher = Sam3Teacher(Sam3Model(build_config(image_size=56, hidden_size=32, vit_layers=1, vit_window=2,
                                                 text_layers=1, decoder_layers=1, num_queries=6)))
    data = PairTensors.from_json(ROOT / "fixtures" / "synth" / "saco_image" / "val.json", teacher, 16, keep_full=False)
    names = concept_phrases(data)
    assert names and all(len(n.split()) == 2 and n.split()[1] in SHAPE_PHRASES for n in names)
    lab, shape = shape_labels(data, names), shape_labels(data)
    for k, name in enumerate(names):  # a concept pixel is a pixel of its shape
        on = lab == k + 1
        assert (shape[on] == 1 + SHAPE_PHRASES.index(name.split()[1])).all()
    vit = {k: v.clone() for k, v in teacher.model.vision_encoder.state_dict().items()}
    text = {k: v.clone() for k, v in teacher.model.text_encoder.state_dict().items()}
    r = shape_probe(ROOT / "fixtures" / "synth", steps=2, images_per_step=2, evals=1, lr=1e-2, labels="concept",
                    teacher=teacher)
    h = r["history"][0]
    assert r["labels"] == "concept" and 0.0 <= h["val_concept_acc"] <= h["val_shape_acc"] <= 1.0
    after = teacher.model.vision_encoder.state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in vit.items())
    assert all(torch.equal(v, teacher.model.text_encoder.state_dict()[k]) for k, v in text.items())
    with pytest.raises(ValueError, match="labels must be"):
        shape_probe(ROOT / "fixtures" / "synth", steps=1, labels="colour")
    with pytest.raises(ValueError, match="own sizes"):
        shape_probe(ROOT / "fixtures" / "synth", steps=1, teacher=teacher, vit_layers=2)


def test_a_wider_vit_than_the_rest_is_projected_by_the_neck_and_trains_at_its_own_lr(tiny_synth, tmp_path):
    """``vit_hidden_size`` / ``vit_mlp_ratio`` / ``vit_heads`` size the ViT alone (the FPN neck projects it to
    ``hidden_size``, as SAM 3's 1024 -> 256); ``image_encoder_lr_mult`` scales the image encoder's lr only."""
    from transformers import Sam3Model

    from sam3m4.teacher import bootstrap
    from sam3m4.teacher.bootstrap_model import build_config

    cfg = build_config(image_size=56, hidden_size=32, vit_layers=1, vit_window=2, text_layers=1, decoder_layers=1,
                       num_queries=6, vit_hidden_size=64, vit_mlp_ratio=4, vit_heads=4)
    vit = cfg.vision_config.backbone_config
    assert (vit.hidden_size, vit.intermediate_size, vit.num_attention_heads) == (64, 256, 4)
    assert cfg.vision_config.fpn_hidden_size == 32
    fpn = Sam3Model(cfg).vision_encoder(torch.zeros(1, 3, 56, 56)).fpn_hidden_states
    assert all(f.shape[1] == 32 for f in fpn)
    with pytest.raises(ConfigError, match=r"^vit_hidden_size: 60 is not a multiple of the attention heads \(8\)$"):
        build_config(image_size=56, hidden_size=32, vit_hidden_size=60, vit_heads=8)

    seen = []
    real = bootstrap.torch.optim.AdamW

    def spy(groups, **kw):
        opt = real(groups, **kw)
        seen.append(opt)
        return opt

    bootstrap.torch.optim.AdamW = spy
    try:
        bootstrap.bootstrap_teacher(tiny_synth, tmp_path / "t", max_steps=2, seed=0, progress=False,
                                    evaluate_val=False, image_size=56, hidden_size=32, vit_layers=1, vit_window=2,
                                    text_layers=1, decoder_layers=1, num_queries=6, batch_size=4, pairs_per_image=2,
                                    lr=1e-3, warmup_frac=0.0, min_lr_frac=1.0, vit_hidden_size=64,
                                    image_encoder_lr_mult=4.0)
    finally:
        bootstrap.torch.optim.AdamW = real
    (opt,) = seen
    assert {g["lr"] for g in opt.param_groups[:2]} == {4e-3} and {g["lr"] for g in opt.param_groups[2:]} == {1e-3}
    same = Sam3Model(build_config(image_size=56, hidden_size=32, vit_layers=1, vit_window=2, text_layers=1,
                                  decoder_layers=1, num_queries=6, vit_hidden_size=64))
    want = sorted(tuple(p.shape) for p in same.vision_encoder.parameters())
    assert sorted(tuple(p.shape) for g in opt.param_groups[:2] for p in g["params"]) == want

"""SAM 3's video path (transformers ``Sam3VideoModel``) as the video teacher, and its tiny embedded default.

``Sam3VideoModel`` = SAM 3's detector (a plain ``Sam3Model`` at ``.detector_model``) + a SAM 2-style tracker
(memory attention/encoder, mask decoder, its own FPN ``tracker_neck``). ``facebook/sam3`` holds both; the
embedded default is built from the bootstrapped tiny image teacher: its weights become the detector (strict
load: same architecture) and the tracker's neck starts as a copy of the detector's neck. The tracker itself
starts untrained (training it on the synthetic videos is the open part of issue 4).

    build_video_teacher("checkpoints/teacher/sam3-tiny-synth", "checkpoints/teacher/sam3-tiny-synth-video")
    teacher = load_video_teacher("checkpoints/teacher/sam3-tiny-synth-video")   # or facebook/sam3
    masks, scores = teacher.masklets(frames, "red circle")   # (M, T, H, W) bool, (M, T) in [0, 1]

Offline: the session is built by hand (``Sam3VideoProcessor`` would fetch a tokenizer), prompts are tokenised
with the project's CLIP BPE, and the embedded default sets ``det_nms_thresh = 0`` and ``fill_hole_area = 0``
(both call a hub kernel otherwise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sam3m4.data.saco_video import items_with_objects
from sam3m4.errors import TrainingDiverged
from sam3m4.fileio import atomic_folder
from sam3m4.progress import StepProgress
from sam3m4.teacher.sam3 import load_pretrained
from sam3m4.models.tokenizer import get_tokenizer

MEMORY_CHANNELS = 64  # transformers hard-codes the memory cross-attention's key/value width to 64


def patch_object_pointer_reshape() -> None:
    """Work around transformers 5.23's ``Sam3TrackerVideoModel._process_object_pointers``: when the tracker is
    exactly 64 wide its reshape branch is skipped and the pointers stay (N, B, 1, C), so the second frame
    fails ("Tensors must have same number of dimensions: got 3 and 4"). Flattens them to (N, B, C); no-op
    for the shapes the library already handles (SAM 3's 256-wide tracker). Idempotent."""
    from transformers.models.sam3_tracker_video import modeling_sam3_tracker_video as tracker_video

    original = tracker_video.Sam3TrackerVideoModel._process_object_pointers
    if getattr(original, "_sam3m4_patched", False):
        return

    def process(self, *args, **kwargs):
        pointers, pos = original(self, *args, **kwargs)
        if pointers is not None and pointers.dim() == 4:
            pointers = pointers.flatten(1, 2)
        return pointers, pos

    process._sam3m4_patched = True
    tracker_video.Sam3TrackerVideoModel._process_object_pointers = process


def video_config(detector_config, memory_layers: int = 1, num_maskmem: int = 3, **overrides):
    """``Sam3VideoConfig`` whose tracker matches a ``Sam3Config`` detector (width h, input S, patch p);
    ``overrides``: other ``Sam3VideoConfig`` fields (e.g. ``score_threshold_detection``)."""
    from transformers import Sam3VideoConfig

    bb = detector_config.vision_config.backbone_config
    s, p, h = bb.image_size, bb.patch_size, detector_config.vision_config.fpn_hidden_size
    if h % MEMORY_CHANNELS:
        raise ValueError(f"detector width {h}: SAM 3's tracker needs a multiple of {MEMORY_CHANNELS}")
    tracker = dict(
        image_size=s,  # must be given: the tracker config otherwise resets it to 1008
        vision_config=dict(backbone_config=bb.to_dict(), fpn_hidden_size=h),
        prompt_encoder_config=dict(hidden_size=h, image_size=s, patch_size=p),
        mask_decoder_config=dict(hidden_size=h, mlp_dim=2 * h, num_attention_heads=2, iou_head_hidden_dim=h),
        num_maskmem=num_maskmem, max_object_pointers_in_encoder=4, max_cond_frame_num=2,
        memory_attention_hidden_size=h, memory_attention_num_layers=memory_layers,
        memory_attention_feed_forward_hidden_size=2 * h, memory_attention_dropout=0.0,
        memory_attention_rope_dropout=0.0, memory_encoder_hidden_size=h,
        memory_encoder_output_channels=MEMORY_CHANNELS, mask_downsampler_embed_dim=h, memory_fuser_embed_dim=h,
        memory_fuser_intermediate_dim=2 * h, memory_fuser_num_layers=1,
    )
    return Sam3VideoConfig(detector_config=detector_config.to_dict(), tracker_config=tracker,
                           **{"low_res_mask_size": 4 * (s // p), "fill_hole_area": 0, "det_nms_thresh": 0.0,
                              "hotstart_delay": 0, **overrides})


def build_video_teacher(image_teacher: str | Path, out_dir: str | Path, seed: int = 0, **config) -> Path:
    """The embedded video teacher: the image teacher's weights as the detector, the tracker neck copied from
    the detector neck, the rest at init; ``save_pretrained`` to ``out_dir``. ``config``: :func:`video_config`
    overrides. Returns ``out_dir``."""
    from transformers import Sam3ImageProcessor, Sam3Model, Sam3VideoModel

    detector, path, _ = load_pretrained(Sam3Model, image_teacher)
    torch.manual_seed(seed)
    video = Sam3VideoModel(video_config(detector.config, **config)).eval()
    video.detector_model.load_state_dict(detector.state_dict(), strict=True)
    video.tracker_neck.load_state_dict(detector.vision_encoder.neck.state_dict(), strict=True)
    out = Path(out_dir)
    with atomic_folder(out) as tmp:
        video.save_pretrained(tmp)
        if (path / "preprocessor_config.json").is_file():
            Sam3ImageProcessor.from_pretrained(str(path), local_files_only=True).save_pretrained(tmp)
    return out


class VideoTeacher:
    """A loaded ``Sam3VideoModel``: text-prompted masklets for a clip (see :func:`load_video_teacher`)."""

    def __init__(self, model, processor=None, device: str = "cpu"):
        from transformers import Sam3ImageProcessor

        self.model, self.device = model.eval().to(device), device
        size = model.config.detector_config.vision_config.backbone_config.image_size
        self.processor = processor or Sam3ImageProcessor(size={"height": size, "width": size})
        self.tokenizer = get_tokenizer(int(model.config.detector_config.text_config.max_position_embeddings))

    @torch.no_grad()
    def masklets(self, frames: np.ndarray, phrase: str) -> tuple[np.ndarray, np.ndarray]:
        """(T, H, W, 3) uint8 frames + a noun phrase -> masks (M, T, H, W) bool and scores (M, T) (0 where
        the object is not output), one row per object id the model reports."""
        from transformers import Sam3VideoInferenceSession, Sam3VideoProcessor

        t_len, h, w = frames.shape[:3]
        pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"]  # (T, 3, S, S)
        session = Sam3VideoInferenceSession(video=pixels, video_height=h, video_width=w, inference_device=self.device,
                                            inference_state_device=self.device, video_storage_device="cpu",
                                            dtype=torch.float32)
        pid = session.add_prompt(phrase)
        tok = self.tokenizer([phrase])
        session.prompt_input_ids[pid], session.prompt_attention_masks[pid] = tok["input_ids"], tok["attention_mask"]
        post = object.__new__(Sam3VideoProcessor)  # postprocess_outputs needs neither tokenizer nor video processor
        per_frame: dict[int, dict[int, tuple[np.ndarray, float]]] = {}
        for out in self.model.propagate_in_video_iterator(session, start_frame_idx=0):
            r = post.postprocess_outputs(session, out)
            per_frame[out.frame_idx] = {int(i): (m.cpu().numpy().astype(bool), float(s))
                                        for i, m, s in zip(r["object_ids"].tolist(), r["masks"], r["scores"])}
        ids = sorted({i for objs in per_frame.values() for i in objs})
        masks = np.zeros((len(ids), t_len, h, w), dtype=bool)
        scores = np.zeros((len(ids), t_len), dtype=np.float32)
        for t, objs in per_frame.items():
            for row, i in enumerate(ids):
                if i in objs:
                    masks[row, t], scores[row, t] = objs[i]
        return masks, scores

    def __call__(self, sample) -> np.ndarray:
        """:func:`sam3m4.eval.video.evaluate_videos` interface: sample -> (M, T, H, W) bool."""
        return self.masklets(sample.frames, sample.phrase)[0]


def load_video_teacher(source: str | Path, *, allow_download: bool = False, device: str = "cpu") -> VideoTeacher:
    """``Sam3VideoModel`` from a directory (e.g. :func:`build_video_teacher`'s) or a hub id in the local cache
    (``facebook/sam3``), offline unless ``allow_download``; one clear error when the weights are missing."""
    from transformers import Sam3ImageProcessor, Sam3VideoModel

    patch_object_pointer_reshape()
    model, path, is_dir = load_pretrained(Sam3VideoModel, source, allow_download=allow_download)
    processor = None
    if is_dir and (path / "preprocessor_config.json").is_file():
        processor = Sam3ImageProcessor.from_pretrained(str(path), local_files_only=True)
    return VideoTeacher(model, processor, device)


def train_teacher_tracker(model, dataset, *, steps: int, lr: float = 1e-3, clip_len: int = 8, seed: int = 0,
                  progress: bool = True) -> dict:
    """Train a ``Sam3VideoModel``'s tracker (and its neck) on ground-truth masklets, detector frozen.

    SAM 2's recipe in small: per step one object of a random video pair, its ground-truth mask given on the
    clip's first frame (where it is visible) as the tracker's prompt, then the clip propagated through the
    stock per-frame forward (``Sam3TrackerVideoModel.forward`` without its ``inference_mode`` wrapper), with
    mask BCE + dice where the object is visible and the tracker calls it present (the library outputs a
    constant mask elsewhere) and BCE of the object score against visibility on every later frame.
    """
    import random
    import time

    import torch.nn.functional as F
    from transformers import Sam3VideoInferenceSession
    from transformers.loss.loss_for_object_detection import dice_loss

    patch_object_pointer_reshape()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.eval()  # the tracker's forward needs eval mode (train mode drops the object scores); dropout is 0
    model.requires_grad_(False)
    trainable = [model.tracker_model, model.tracker_neck]
    for m in trainable:
        m.requires_grad_(True)
    params = [p for m in trainable for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    size = model.config.detector_config.vision_config.backbone_config.image_size
    teacher = VideoTeacher(model)
    items = items_with_objects(dataset)
    forward = type(model.tracker_model).forward.__wrapped__  # the stock forward, gradients on
    cache: dict[int, tuple] = {}
    losses, t0 = [], time.time()
    bar = StepProgress(steps, "video teacher tracker", enabled=progress)
    for step in range(steps):
        i = rng.choice(items)
        if i not in cache:
            s = dataset[i]
            pixels = teacher.processor(images=list(s.frames), return_tensors="pt")["pixel_values"]  # (T, 3, S, S)
            masks = F.interpolate(torch.from_numpy(s.masks).float(), size=(size, size), mode="area")  # (N, T, S, S)
            cache[i] = (pixels, masks)
        pixels, masks = cache[i]
        n = rng.randrange(len(masks))
        vis = torch.nonzero(masks[n].flatten(1).amax(1) > 0.5).flatten()
        if len(vis) < 2:
            bar.update(1)
            continue
        start = int(vis[rng.randrange(len(vis) - 1)])
        px, gt = pixels[start: start + clip_len], masks[n, start: start + clip_len]  # (L, 3, S, S), (L, S, S)
        session = Sam3VideoInferenceSession(video=px, video_height=size, video_width=size,
                                            max_vision_features_cache_size=len(px), dtype=torch.float32)
        with torch.enable_grad():
            for t in range(len(px)):
                with torch.no_grad():
                    image = model.detector_model.get_vision_features(pixel_values=px[t: t + 1])
                feats, pos = model.get_vision_features_for_tracker(image)
                session.cache.cache_vision_features(t, {"vision_feats": feats, "vision_pos_embeds": pos})
            obj = session.obj_id_to_idx(0)
            session.obj_id_to_prompt_id[0] = 0
            session.add_mask_inputs(obj, 0, (gt[0:1, None] > 0.5).float())
            session.obj_with_new_inputs = [0]
            loss = torch.zeros(())
            for t in range(len(px)):
                out = forward(model.tracker_model, inference_session=session, frame_idx=t, run_mem_encoder=True)
                if t == 0:
                    continue
                target = F.interpolate(gt[t][None, None], size=out.pred_masks.shape[-2:], mode="area")[0, 0]
                seen = target.amax() > 0
                loss = loss + F.binary_cross_entropy_with_logits(out.object_score_logits.reshape(()), seen.float())
                if seen and out.object_score_logits.reshape(()) > 0:
                    logits = out.pred_masks.reshape(target.shape)
                    loss = loss + F.binary_cross_entropy_with_logits(logits, target) \
                        + dice_loss(logits.reshape(1, -1), target.reshape(1, -1), 1)
        TrainingDiverged.check(float(loss.detach()), "video teacher tracker loss", step + 1)  # nothing saved yet
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1, loss=float(np.mean(losses[-10:])))
    bar.close()
    model.requires_grad_(False)
    k = max(1, min(10, len(losses) // 3))
    return {"steps": len(losses), "train_s": round(time.time() - t0, 1), "first_loss": float(np.mean(losses[:k])),
            "final_loss": float(np.mean(losses[-k:]))}

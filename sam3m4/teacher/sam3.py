"""SAM 3 teacher adapter: load ``Sam3Model`` offline, preprocess, run, return a typed output.

The real SAM 3 (``facebook/sam3``, gated, ~848M parameters) and the small SAM 3-architecture teacher that
:mod:`sam3m4.teacher.bootstrap` trains are loaded by the same function, :func:`load_teacher`.

    teacher = load_teacher("checkpoints/teacher/sam3-tiny-synth")     # or "facebook/sam3" when cached
    batch = teacher.prepare(images, phrases)                          # HWC uint8 RGB + noun phrases
    out = teacher(**batch)                                            # TeacherOutput
    inst = teacher.instances(out, image_sizes=[(224, 224)] * len(images))   # masks/scores/boxes per pair

Conventions (all from transformers/models/sam3 in transformers 5.23):

* pixels: resized to ``config.image_size`` square (aspect not kept, like SAM 3), rescaled to [0, 1] and
  normalised with mean = std = (0.5, 0.5, 0.5) -> range [-1, 1] (``Sam3ImageProcessor`` defaults; we build
  that processor offline, so preprocessing is transformers' own code).
* text: CLIP BPE ids, context 32, see :mod:`sam3m4.models.tokenizer`.
* boxes: ``Sam3Model`` predicts XYXY normalised to [0, 1] of the (resized) image; we keep that.
* score of a query = sigmoid(query_logit) * sigmoid(presence_logit); kept at >= 0.5 (SAM 3's rule).

Run ``python -m sam3m4.teacher.sam3 <dir-or-hub-id>`` to load a teacher and print output shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sam3m4 import NETWORK_ENV, network_allowed
from sam3m4.errors import Sam3m4Error
from sam3m4.models.tokenizer import get_tokenizer

DEFAULT_HUB_ID = "facebook/sam3"


def _how_to_provide(source: str) -> str:
    return (
        f"download it on a machine with network (accept the SAM 3 licence at https://huggingface.co/{DEFAULT_HUB_ID}, "
        f"then 'huggingface-cli download {DEFAULT_HUB_ID} --local-dir <dir>'), copy <dir> here and pass it as a local "
        f"folder (--teacher <dir> / --ckpt <dir>)"
    )


@dataclass
class TeacherOutput:
    """What the teacher predicts for a batch of B (image, noun phrase) pairs.

    Q = number of queries (200 for SAM 3), C = DETR/FPN width (256 for SAM 3), g = image_size // patch_size
    (72 for SAM 3 at 1008 px, 16 for a 224 px / patch 14 model). Masks live at stride patch/4 (4g x 4g).
    """

    mask_logits: torch.Tensor
    """(B, Q, 4g, 4g) float: per-query mask logits (sigmoid > 0.5 = foreground), resized-image frame."""
    query_logits: torch.Tensor
    """(B, Q) float: per-query match logits (text-query dot product, clamped to [-12, 12])."""
    boxes_xyxy: torch.Tensor
    """(B, Q, 4) float in [0, 1]: XYXY boxes normalised by the resized image's width/height."""
    presence_logit: torch.Tensor
    """(B, 1) float: 'is the phrase in the image' logit (clamped to [-10, 10])."""
    semantic_logits: torch.Tensor
    """(B, 1, 4g, 4g) float: semantic (union) mask logits."""
    fpn_features: tuple[torch.Tensor, ...]
    """The neck (FPN) maps the detector uses, fine to coarse: (B, C, 4g, 4g) stride p/4, (B, C, 2g, 2g) stride p/2,
    (B, C, g, g) stride p (p = patch size 14). The DETR encoder reads the stride-p map; the mask decoder's pixel
    decoder reads all three. Text-independent: one per image."""
    vit_features: torch.Tensor
    """(B, D, g, g): the ViT backbone's last hidden state as a map (D = 1024 for SAM 3)."""
    encoder_memory: torch.Tensor
    """(B, g*g, C): DETR encoder output (image tokens after fusing the text prompt)."""
    query_embeddings: torch.Tensor
    """(B, Q, C): last DETR decoder layer's (layer-normed) query states, input of the mask/box/score heads."""
    text_features: torch.Tensor
    """(B, 32, C): projected text token features (``Sam3Model.get_text_features(...).pooler_output``)."""
    text_mask: torch.Tensor
    """(B, 32) bool: valid text tokens."""
    aux: dict | None = None
    """Training extras (all decoder layers), filled when ``forward(..., with_aux=True)``: ``query_logits``
    (L, B, Q), ``boxes_xyxy`` (L, B, Q, 4), ``presence_logit`` (L, B, 1)."""

    @property
    def scores(self) -> torch.Tensor:
        """(B, Q) in [0, 1]: SAM 3's detection score sigmoid(query_logit) * sigmoid(presence_logit)."""
        return self.query_logits.sigmoid() * self.presence_logit.sigmoid()


@dataclass
class TeacherInstances:
    """Kept detections of one pair at image resolution (H, W)."""

    masks: np.ndarray
    """(N, H, W) bool."""
    scores: np.ndarray
    """(N,) float32 in [0.5, 1]; all Q query scores are in ``all_scores``."""
    boxes: np.ndarray
    """(N, 4) float32 XYXY pixels of the original image."""
    all_scores: np.ndarray
    """(Q,) float32: every query's score, for presence decisions at other thresholds."""


class Sam3Teacher(torch.nn.Module):
    """A loaded ``Sam3Model`` plus SAM 3's preprocessing and tokenisation. Frozen by default (eval, no grad)."""

    def __init__(self, model, image_processor=None):
        super().__init__()
        from transformers import Sam3ImageProcessor

        self.model = model
        size = int(model.config.vision_config.backbone_config.image_size)
        self.image_size = size
        self.patch_size = int(model.config.vision_config.backbone_config.patch_size)
        self.image_processor = image_processor or Sam3ImageProcessor(size={"height": size, "width": size})
        self.tokenizer = get_tokenizer(int(model.config.text_config.max_position_embeddings))

    # --- inputs -------------------------------------------------------------------------------------
    def preprocess_images(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """HWC uint8 RGB images (any size) -> (B, 3, S, S) float32 in [-1, 1] via ``Sam3ImageProcessor``."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        enc = self.image_processor(images=list(images), return_tensors="pt")
        return enc["pixel_values"]  # (B, 3, S, S)

    def tokenize(self, phrases: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Noun phrases -> ``input_ids`` (B, 32) int64 and ``attention_mask`` (B, 32) int64."""
        return self.tokenizer(list(phrases) if not isinstance(phrases, str) else [phrases])

    def prepare(self, images, phrases) -> dict[str, torch.Tensor]:
        """Images (B of HWC uint8) and B phrases -> keyword arguments for :meth:`forward`."""
        device = next(self.model.parameters()).device
        batch = {"pixel_values": self.preprocess_images(images), **self.tokenize(phrases)}
        return {k: v.to(device) for k, v in batch.items()}

    # --- model --------------------------------------------------------------------------------------
    def forward(
        self, pixel_values, input_ids, attention_mask, image_index=None, with_aux: bool = False
    ) -> TeacherOutput:
        """Run SAM 3 on B pairs: ``input_ids``/``attention_mask`` (B, 32) and ``pixel_values`` (B, 3, S, S), or
        (I, 3, S, S) plus ``image_index`` (B,) int64 naming each pair's image (the image encoder then runs once
        per image, as SAM 3 does for several prompts on one image). ``fpn_features``/``vit_features`` are per
        pair either way."""
        m = self.model
        captured: dict = {}
        hooks = [
            m.detr_encoder.register_forward_hook(lambda mod, a, o: captured.__setitem__("enc", o)),
            m.detr_decoder.register_forward_hook(lambda mod, a, o: captured.__setitem__("dec", o)),
        ]
        try:
            vision = m.get_vision_features(pixel_values=pixel_values)
            if image_index is not None:
                vision = _index_vision(vision, image_index)
            text = m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            out = m(vision_embeds=vision, text_embeds=text, attention_mask=attention_mask)
        finally:
            for h in hooks:
                h.remove()
        g = pixel_values.shape[-1] // self.patch_size
        vit = vision.last_hidden_state  # (B, g*g, D)
        vit = vit.transpose(1, 2).reshape(vit.shape[0], vit.shape[2], g, g)  # (B, D, g, g)
        dec = captured["dec"]
        aux = None
        if with_aux:
            aux = self._all_layer_heads(dec, captured["enc"].text_features, attention_mask)
        return TeacherOutput(
            mask_logits=out.pred_masks,
            query_logits=out.pred_logits,
            boxes_xyxy=out.pred_boxes,
            presence_logit=out.presence_logits,
            semantic_logits=out.semantic_seg,
            fpn_features=tuple(vision.fpn_hidden_states[:-1]),
            vit_features=vit,
            encoder_memory=captured["enc"].last_hidden_state,
            query_embeddings=dec.intermediate_hidden_states[-1],
            text_features=text.pooler_output,
            text_mask=attention_mask.bool(),
            aux=aux,
        )

    def _all_layer_heads(self, dec, text_features, attention_mask) -> dict:
        """Box/score/presence heads on every decoder layer (as ``Sam3Model.forward`` computes them)."""
        from transformers.models.sam3.modeling_sam3 import box_cxcywh_to_xyxy, inverse_sigmoid

        m = self.model
        hs = dec.intermediate_hidden_states  # (L, B, Q, C)
        offsets = m.detr_decoder.box_head(hs)  # (L, B, Q, 4)
        boxes = box_cxcywh_to_xyxy((inverse_sigmoid(dec.reference_boxes) + offsets).sigmoid())
        logits = m.dot_product_scoring(hs, text_features, attention_mask.bool()).squeeze(-1)  # (L, B, Q)
        return {"query_logits": logits, "boxes_xyxy": boxes, "presence_logit": dec.presence_logits}

    # --- outputs ------------------------------------------------------------------------------------
    @torch.no_grad()
    def instances(self, out: TeacherOutput, image_sizes, threshold: float = 0.5) -> list[TeacherInstances]:
        """Per pair: queries with score >= ``threshold``, masks bilinearly resized to (H, W) and cut at 0."""
        return instances_from_output(out, image_sizes, threshold)

    @torch.no_grad()
    def predict(self, images, phrases, threshold: float = 0.5) -> list[TeacherInstances]:
        """Convenience: preprocess, run and post-process B (image, phrase) pairs."""
        sizes = [im.shape[:2] for im in images]
        return instances_from_output(self(**self.prepare(images, phrases)), sizes, threshold)


def _index_vision(vision, index: torch.Tensor):
    """Select/repeat a ``Sam3VisionEncoderOutput``'s per-image tensors along the batch: one row per pair."""
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    pick = lambda xs: None if xs is None else tuple(x[index] for x in xs)  # noqa: E731
    return Sam3VisionEncoderOutput(
        last_hidden_state=vision.last_hidden_state[index],
        fpn_hidden_states=pick(vision.fpn_hidden_states),
        fpn_position_encoding=pick(vision.fpn_position_encoding),
    )


def instances_from_output(out: TeacherOutput, image_sizes, threshold: float = 0.5) -> list[TeacherInstances]:
    """SAM 3's rule: score = sigmoid(query_logit) * sigmoid(presence_logit), keep score >= threshold.

    ``image_sizes``: B (H, W) of the original images; masks are bilinearly upsampled there (no aspect fix,
    as SAM 3 resizes without keeping aspect) and thresholded at logit 0; boxes scaled to pixels.
    """
    scores = out.scores.detach().float().cpu()  # (B, Q)
    result = []
    for b, (h, w) in enumerate(image_sizes):
        keep = torch.nonzero(scores[b] >= threshold).flatten()
        logits = out.mask_logits[b, keep].detach().float()  # (N, 4g, 4g)
        if len(keep):
            logits = F.interpolate(logits[None], size=(int(h), int(w)), mode="bilinear", align_corners=False)[0]
        masks = (logits > 0).cpu().numpy().reshape(len(keep), int(h), int(w))
        boxes = out.boxes_xyxy[b, keep].detach().float().cpu() * torch.tensor([w, h, w, h], dtype=torch.float32)
        result.append(
            TeacherInstances(
                masks=masks,
                scores=scores[b, keep].numpy().astype(np.float32),
                boxes=boxes.numpy().astype(np.float32),
                all_scores=scores[b].numpy().astype(np.float32),
            )
        )
    return result


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _looks_like_path(source: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (``./x``, ``/x``, ``a/b/c``) is a directory."""
    return not _HUB_ID.match(source)


def _check_weights_dir(path: Path) -> None:
    """A weights folder must hold ``config.json`` and ``*.safetensors``; pickled weights are refused by name."""
    if not (path / "config.json").is_file():
        raise Sam3m4Error(f"{path / 'config.json'}: missing; not a SAM 3 weights directory; "
                          f"{_how_to_provide(str(path))}")
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(p for p in path.iterdir() if p.suffix in PICKLED_SUFFIXES)
    if pickled:
        raise Sam3m4Error(f"{pickled[0]}: pickled PyTorch weights are refused (unpickling can run code); sam3m4 "
                          "loads safetensors only: put model.safetensors (what save_pretrained writes) in "
                          f"{path}")
    raise Sam3m4Error(f"{path}: no *.safetensors weights file; {_how_to_provide(str(path))}")


def _shape_mismatch(model_cls, folder: Path) -> str | None:
    """``"<file>: <key>: expected shape (..), found (..)"`` for the first weight of ``folder``'s safetensors
    whose shape differs from the model its ``config.json`` builds (built on the meta device: no memory), or None."""
    from safetensors import safe_open

    try:
        config = model_cls.config_class.from_pretrained(str(folder), local_files_only=True)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in model_cls(config).state_dict().items()}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), "pt") as handle:
                for key in handle.keys():
                    found = tuple(handle.get_slice(key).get_shape())
                    if key in expected and expected[key] != found:
                        return f"{file}: {key}: expected shape {expected[key]} (config.json), found {found}"
    except Exception:  # noqa: BLE001 - a diagnosis only; the caller reports the original error
        return None
    return None


def load_pretrained(model_cls, source: str | Path, *, allow_download: bool = False, cache_dir=None,
                    dtype: torch.dtype = torch.float32):
    """``model_cls.from_pretrained`` (``Sam3Model``, ``Sam3VideoModel``) from a directory or a hub id, offline
    unless ``allow_download`` (which also needs ``SAM3M4_ALLOW_NETWORK=1``, see :mod:`sam3m4`); safetensors
    only (pickled ``pytorch_model.bin`` is refused); any failure is one :class:`Sam3m4Error` naming the folder
    or file and saying how to provide the weights. Returns (model, path, is_dir)."""
    src = str(source)
    path = Path(src).expanduser()
    is_dir = path.is_dir()
    if not is_dir and (path.exists() or _looks_like_path(src)):
        raise Sam3m4Error(f"teacher '{src}': no such weights directory; {_how_to_provide(src)}")
    if is_dir:
        _check_weights_dir(path)
    elif allow_download and not network_allowed():
        raise Sam3m4Error(f"teacher '{src}': downloading needs {NETWORK_ENV}=1 in the environment (sam3m4 is "
                          "offline by default)")
    from transformers.utils import logging as hf_logging

    local_only = is_dir or not allow_download
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # Sam3Model from facebook/sam3 leaves the tracker weights unused, by design
    try:
        model = model_cls.from_pretrained(str(path) if is_dir else src, local_files_only=local_only,
                                          cache_dir=cache_dir, dtype=dtype, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 - missing cache (OSError), bad config (ValueError), shapes (RuntimeError)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not is_dir:  # HF's OSError text talks of connecting; offline, it never tried
            state = "not in the local Hugging Face cache" if isinstance(exc, OSError) else \
                f"unreadable in the local Hugging Face cache ({type(exc).__name__}: {first[:120]})"
            raise Sam3m4Error(f"{src}: {state}; {_how_to_provide(src)}") from exc
        mismatch = _shape_mismatch(model_cls, path)
        if mismatch:
            raise Sam3m4Error(f"{mismatch}; the weights do not fit their config") from exc
        raise Sam3m4Error(f"{path}: cannot load SAM 3 weights ({type(exc).__name__}: {first[:160]})") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, path, is_dir


def load_teacher(
    source: str | Path = DEFAULT_HUB_ID,
    *,
    allow_download: bool = False,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trainable: bool = False,
) -> Sam3Teacher:
    """Load a SAM 3 (-architecture) model from a local directory or a hub id, offline unless allowed.

    ``source``: a directory written by ``save_pretrained`` / ``huggingface-cli download`` (``config.json`` +
    ``*.safetensors``) or a hub id such as ``facebook/sam3`` looked up in the local HF cache only
    (``local_files_only=True``) unless ``allow_download``. Any failure to find weights raises one
    :class:`Sam3m4Error` whose one-line message says how to provide them. ``trainable=False`` puts the model
    in eval mode with gradients off.
    """
    from transformers import Sam3ImageProcessor, Sam3Model

    model, path, is_dir = load_pretrained(Sam3Model, source, allow_download=allow_download, cache_dir=cache_dir,
                                          dtype=dtype)
    processor = None
    if is_dir and (path / "preprocessor_config.json").is_file():
        try:
            processor = Sam3ImageProcessor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Sam3m4Error(f"{path / 'preprocessor_config.json'}: cannot read ({first[:160]})") from exc
    model.to(device)
    if not trainable:
        model.eval().requires_grad_(False)
    return Sam3Teacher(model, processor)


if __name__ == "__main__":
    import sys

    t = load_teacher(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_HUB_ID)
    img = np.zeros((224, 224, 3), np.uint8)
    with torch.no_grad():
        o = t(**t.prepare([img], ["red circle"]))
    for k, v in vars(o).items():
        shapes = [tuple(x.shape) for x in v] if isinstance(v, tuple) else getattr(v, "shape", v)
        print(f"{k}: {shapes}")

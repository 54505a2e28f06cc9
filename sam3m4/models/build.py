"""Student presets: a registry of sized builders (like SAM's ``sam_model_registry``).

    from sam3m4.models import build_student, PRESETS
    model = build_student("tiny")             # random init, eval() it yourself for inference
    sorted(PRESETS)                           # ['efficientvit_b1_504', 'repvit_m0_9_504', 'tiny']

* ``tiny``: tests, CI and the demo; 224 px, seconds on a CPU.
* ``repvit_m0_9_504``, ``efficientvit_b1_504``: production, 504 px, RepViT-M0.9 / EfficientViT-B1 class
  encoders, sized to leave room for the video memory module in a < 50 MB fp16 ``.pte``.

Every number lives in a builder below; the modules receive plain arguments, never a config object.
Run ``sam3m4 models table`` for parameters, fp16/int4 MB and GFLOPs of every preset and the teacher.
"""

from __future__ import annotations

from sam3m4.errors import ConfigError
from sam3m4.models.decoder import DetectionHeads, FusionEncoder, QueryDecoder
from sam3m4.models.image_encoder import ImageEncoder
from sam3m4.models.mask_head import MaskHead
from sam3m4.models.student import Student
from sam3m4.models.text_encoder import TextEncoder


def _build(preset: str, *, backbone: str, image_size: int, dim: int, heads: int, num_queries: int,
           fusion_layers: int, fusion_self_attn: bool, decoder_layers: int, mlp_ratio: float, mask_dim: int,
           text_embed_dim: int, text_width: int, text_layers: int, text_heads: int):
    return Student(
        image_encoder=ImageEncoder(backbone, dim),
        text_encoder=TextEncoder(embed_dim=text_embed_dim, width=text_width, layers=text_layers, heads=text_heads,
                                 out_dim=dim),
        fusion=FusionEncoder(dim, heads, fusion_layers, mlp_ratio, self_attn=fusion_self_attn),
        decoder=QueryDecoder(dim, heads, decoder_layers, num_queries, mlp_ratio),
        heads=DetectionHeads(dim, num_queries),
        mask_head=MaskHead(dim, mask_dim),
        image_size=image_size,
        preset=preset,
    )


def build_student_tiny():
    """Tests and demo: EfficientViT-B0 at 224 px, width 64, 16 queries, 2+2 text/decoder layers (~4M params,
    3.2M of them the 49408 x 64 token table)."""
    return _build("tiny", backbone="efficientvit_b0", image_size=224, dim=64, heads=2, num_queries=16,
                  fusion_layers=1, fusion_self_attn=False, decoder_layers=2, mlp_ratio=2.0, mask_dim=32,
                  text_embed_dim=64, text_width=64, text_layers=2, text_heads=2)


def build_student_repvit_m0_9_504():
    """Production: RepViT-M0.9 at 504 px, width 128, 100 queries, 2 fusion + 3 decoder layers; text tower
    128-d token table projected to a 256-wide 4-layer transformer."""
    return _build("repvit_m0_9_504", backbone="repvit_m0_9", image_size=504, dim=128, heads=4, num_queries=100,
                  fusion_layers=2, fusion_self_attn=True, decoder_layers=3, mlp_ratio=4.0, mask_dim=64,
                  text_embed_dim=128, text_width=256, text_layers=4, text_heads=4)


def build_student_efficientvit_b1_504():
    """Production: EfficientViT-B1 at 504 px, width 192, 100 queries, 2 fusion + 3 decoder layers; same text
    tower as ``repvit_m0_9_504``."""
    return _build("efficientvit_b1_504", backbone="efficientvit_b1", image_size=504, dim=192, heads=6,
                  num_queries=100, fusion_layers=2, fusion_self_attn=True, decoder_layers=3, mlp_ratio=4.0,
                  mask_dim=64, text_embed_dim=128, text_width=256, text_layers=4, text_heads=4)


PRESETS = {
    "tiny": build_student_tiny,
    "repvit_m0_9_504": build_student_repvit_m0_9_504,
    "efficientvit_b1_504": build_student_efficientvit_b1_504,
}
PRODUCTION_PRESETS = ("repvit_m0_9_504", "efficientvit_b1_504")


def build_student(preset: str):
    """A randomly initialised :class:`~sam3m4.models.student.Student` for ``preset`` (train mode).

    Unknown names raise :class:`~sam3m4.errors.ConfigError` naming the preset and listing the choices.
    """
    if preset not in PRESETS:
        raise ConfigError(f"student preset '{preset}': unknown; choices: {', '.join(PRESETS)}")
    return PRESETS[preset]()

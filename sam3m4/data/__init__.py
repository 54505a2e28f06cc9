"""Data: readers for the real SA-Co image/video and SA-V formats, COCO RLE helpers and the synthetic generator.

    from sam3m4.data import SacoImageDataset, SacoVideoDataset, generate
    generate("data/synth", n_images=600, n_videos=24, seed=0)
    ds = SacoImageDataset("data/synth/saco_image/val.json")
"""

from sam3m4.data.rle import decode_rle, encode_mask
from sam3m4.data.saco_image import ImageSample, SacoImageDataset
from sam3m4.data.saco_video import SacoVideoDataset, VideoSample, items_with_objects
from sam3m4.data.sav import SavDataset
from sam3m4.data.synth import generate

__all__ = ["ImageSample", "SacoImageDataset", "VideoSample", "SacoVideoDataset", "SavDataset", "items_with_objects", "encode_mask", "decode_rle",
           "generate"]

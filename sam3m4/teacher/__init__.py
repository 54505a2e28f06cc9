"""The SAM 3 teacher: adapter over transformers' ``Sam3Model`` and the bootstrapped tiny default.

    from sam3m4.teacher import load_teacher
    teacher = load_teacher("facebook/sam3")            # or a save_pretrained directory; offline by default
    out = teacher(**teacher.prepare(images, phrases))  # TeacherOutput (masks, scores, boxes, features)

``sam3m4.teacher.bootstrap`` trains the embedded default teacher on synthetic data (imported lazily: it
pulls in the data readers).
"""

from sam3m4.teacher.sam3 import (
    DEFAULT_HUB_ID,
    Sam3Teacher,
    TeacherInstances,
    TeacherOutput,
    instances_from_output,
    load_teacher,
)
from sam3m4.models.tokenizer import ClipTokenizer, get_tokenizer

__all__ = [
    "DEFAULT_HUB_ID",
    "ClipTokenizer",
    "Sam3Teacher",
    "TeacherInstances",
    "TeacherOutput",
    "get_tokenizer",
    "instances_from_output",
    "load_teacher",
]

"""The mobile student model: presets, parts and export wrappers.

    from sam3m4.models import build_student, PRESETS, StudentOutput
    model = build_student("tiny").eval()
    out = model(pixel_values, input_ids, attention_mask)   # StudentOutput (SAM 3's output contract)

Names are imported lazily so that ``import sam3m4.models.cli`` (and ``sam3m4 --help``) does not load torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PRESETS": "sam3m4.models.build",
    "PRODUCTION_PRESETS": "sam3m4.models.build",
    "build_student": "sam3m4.models.build",
    "Student": "sam3m4.models.student",
    "StudentOutput": "sam3m4.models.student",
    "PromptEmbedding": "sam3m4.models.text_encoder",
    "StudentTracker": "sam3m4.models.video",
    "ExportableStudent": "sam3m4.models.export_wrappers",
    "export_programs": "sam3m4.models.export_wrappers",
    "model_table": "sam3m4.models.table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sam3m4.models' has no attribute '{name}'")

"""Metrics behind every reported number: union mIoU and presence (image), DAVIS J/F and J&F-Mean (video).

See :mod:`sam3m4.metrics.image` and :mod:`sam3m4.metrics.davis` for definitions and conventions.
"""

from sam3m4.metrics.davis import (
    JFMeter,
    JFResult,
    boundary_f,
    boundary_precision_recall,
    boundary_tolerance,
    disk,
    jaccard,
    seg2bmap,
)
from sam3m4.metrics.image import (
    MIoUMeter,
    MIoUResult,
    PresenceMeter,
    PresenceResult,
    is_present,
    presence_metrics,
    union_iou,
)

__all__ = [
    "JFMeter",
    "JFResult",
    "MIoUMeter",
    "MIoUResult",
    "PresenceMeter",
    "PresenceResult",
    "boundary_f",
    "boundary_precision_recall",
    "boundary_tolerance",
    "disk",
    "is_present",
    "jaccard",
    "presence_metrics",
    "seg2bmap",
    "union_iou",
]

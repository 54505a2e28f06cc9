"""Moved to :mod:`sam3m4.checkpoint` (the checkpoint format is a low layer: predict, quantize, storage and the
gates read it). Kept as a re-export so code written against the old path still imports; new code imports
:mod:`sam3m4.checkpoint`."""

from sam3m4.checkpoint import *  # noqa: F401,F403
from sam3m4.checkpoint import (NAME, TMP_NAME, VIDEO_NAME, _check_student_only, _check_types,  # noqa: F401
                               atomic_torch_save, best_name, checkpoint_name, clean_interrupted, list_checkpoints,
                               list_video_checkpoints, load_checkpoint, load_latest, load_model_state, remove_stale_tmp,
                               resolve_init, rng_state, save_checkpoint, set_rng_state, truncate_log)

"""Distillation: SAM 3 teacher -> mobile student.

* :mod:`sam3m4.distill.cache` - the teacher-feature cache (fp16 safetensors shards, file-locked, resumable)
  and the in-memory pair set training reads;
* :mod:`sam3m4.distill.losses` - Phase 1 (features) and Phase 2 (outputs + ground truth) losses;
* :mod:`sam3m4.distill.trainer` - device/AMP, optimizer/schedule, DDP helpers, logging, evaluation, pictures;
* :mod:`sam3m4.checkpoint` - atomic, weights_only-loadable, student-only checkpoints;
* :mod:`sam3m4.distill.recipe` - the recipe (setup -> train -> save), ``python -m sam3m4.distill.recipe``;
* :mod:`sam3m4.distill.cli` - ``sam3m4 distill cache|phase1|phase2``.

Nothing is imported here, so ``import sam3m4.distill.cli`` stays light.
"""

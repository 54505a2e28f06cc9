"""Distillation: SAM 3 teacher -> mobile student.

* :mod:`sam3m4.distill.cache` - the teacher-feature cache (fp16 safetensors shards, file-locked, resumable)
  and the in-memory pair set training reads;
* :mod:`sam3m4.distill.cache_pass` - the cache pass, one process or sharded over ``torchrun`` ranks (same bytes),
  and what every recipe opens the cache with (``ensure_cache``, ``fill_cache``, ``load_splits``);
* :mod:`sam3m4.distill.losses` - Phase 1 (features) and Phase 2 (outputs + ground truth) losses;
* :mod:`sam3m4.distill.runtime` - device, AMP, seeds and the DDP process group;
* :mod:`sam3m4.distill.optim` - AdamW and the warm-up + cosine schedule;
* :mod:`sam3m4.distill.logs` - CSV/TensorBoard scalars, item rate, final metrics into the results store;
* :mod:`sam3m4.distill.evaluation` - per-epoch validation (kept masks, mIoU / Presence F1, feature loss);
* :mod:`sam3m4.distill.visualise` - image | teacher | student pictures per epoch;
* :mod:`sam3m4.checkpoint` - atomic, weights_only-loadable, student-only checkpoints;
* :mod:`sam3m4.distill.recipe` - the recipe (setup -> train -> save), ``python -m sam3m4.distill.recipe``;
* :mod:`sam3m4.distill.video_run` - video distillation (``sam3m4 distill video``);
* :mod:`sam3m4.distill.cli` - ``sam3m4 distill cache|phase1|phase2|video``.

Nothing is imported here, so ``import sam3m4.distill.cli`` stays light.
"""

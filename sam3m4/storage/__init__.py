"""Storage housekeeping: ``sam3m4 prune`` thins checkpoints, pictures and caches, measured before and after.

* :mod:`sam3m4.storage.prune` - the plan (what is kept and why), the dry-run / apply logs, the safe delete;
* :mod:`sam3m4.storage.cli` - ``sam3m4 prune [--apply]``, which also records the sizes for report section 7.

Nothing is imported here, so ``import sam3m4.storage.cli`` stays light.
"""

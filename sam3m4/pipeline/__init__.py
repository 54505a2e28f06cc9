"""The end-to-end pipeline behind ``make demo``: ``sam3m4 pipeline --config configs/demo.yaml``.

:mod:`.stages` turns a flat YAML config into the ordered stage list (each stage a ``sam3m4`` or ``pytest``
command with its declared inputs and outputs), :mod:`.runner` runs them and skips what is unchanged (sha256
of inputs, outputs and the command), :mod:`.artifacts` writes the run manifest and the report's sections 1
and 6, and :mod:`.cli` is the command.
"""

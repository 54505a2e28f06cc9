"""Run names: the one rule for the folder ``reports/<run>/`` (and ``outputs/visual_eval/<run>/``).

Every command that takes a run name (``--run`` of eval, quantize, export, bench, device import, distill video,
visual-eval, prune, report and pytest; ``run=`` of ``sam3m4 pipeline``; ``results_run=`` of a distillation
config) checks it here, so a name can never climb out of ``reports/`` or hide there:

    check_run_name("try2")                  # -> "try2"
    check_run_name("../x", "--run")         # ConfigError: --run: '../x' is not a valid run name (...)
"""

from __future__ import annotations

import re

from sam3m4.errors import ConfigError

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RULE = "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, no '..'"


def check_run_name(name, option: str = "--run") -> str:
    """``name`` when it is a valid run name, else a one-line :class:`ConfigError` naming ``option`` and the rule."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"{option}: {name!r} is not a valid run name ({RULE})")
    return name

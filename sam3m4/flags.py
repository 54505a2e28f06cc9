"""Ranges of the command line's numeric flags, declared next to the flag and checked before any work.

    from sam3m4.flags import ranged
    ranged(parser.add_argument("--steps", type=int, default=800), minimum=1)
    ranged(parser.add_argument("--threshold", type=float, default=0.5), minimum=0, maximum=1)

:func:`sam3m4.cli.main` calls :func:`check_ranges` on the parsed arguments after ``--config`` / ``key=value``
were resolved and before the command's function runs, so a bad value never reaches the data, a cache or a
checkpoint: ``--steps -5: must be >= 1`` (one line, exit 2). Every float flag must also be finite (argparse's
``float`` takes ``nan`` and ``inf``). A flag left at ``None`` (its "not given" default) is not checked.
:func:`declared_ranges` lists what a parser declares, so a test can require a range on every numeric flag.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from sam3m4.errors import ConfigError

__all__ = ["Range", "check_ranges", "declared_ranges", "ranged"]

DEST = "flag_ranges"  # the parsed Namespace's attribute holding {dest: Range} of the chosen (sub)command


@dataclass(frozen=True)
class Range:
    """The values a numeric flag accepts: ``minimum <= value <= maximum`` (None: unbounded), or ``zero_ok``
    for a flag whose 0 means "off / the default" while other values must reach ``minimum``."""

    flag: str
    minimum: float | None = None
    maximum: float | None = None
    zero_ok: bool = False
    below_maximum: bool = False  # True: value < maximum (a fraction in [0, 1))
    above_minimum: bool = False  # True: value > minimum (a learning rate)

    def wanted(self) -> str:
        """The range in words: ``>= 1``, ``in [0, 1)``, ``a positive number``, ``0 or in [32, 2048]``."""
        zero = "0 or " if self.zero_ok else ""
        if self.minimum is not None and self.maximum is not None:
            return f"{zero}in [{self.minimum:g}, {self.maximum:g}{')' if self.below_maximum else ']'}"
        if self.minimum is not None:
            if self.above_minimum:
                return f"{zero}a positive number" if self.minimum == 0 else f"{zero}> {self.minimum:g}"
            return f"{zero}>= {self.minimum:g}"
        if self.maximum is not None:
            return f"{zero}{'<' if self.below_maximum else '<='} {self.maximum:g}"
        return "a finite number"

    def problem(self, value) -> str | None:
        """Why ``value`` is out of range (``must be >= 1``), or None when it is fine."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            want = self.wanted()
            return f"must be {want}" + ("" if want.startswith("a ") else " (a finite number)")
        if self.zero_ok and value == 0:
            return None
        low = self.minimum is not None and (value <= self.minimum if self.above_minimum else value < self.minimum)
        high = self.maximum is not None and (value >= self.maximum if self.below_maximum else value > self.maximum)
        return f"must be {self.wanted()}" if low or high else None


def ranged(action: argparse.Action, minimum: float | None = None, maximum: float | None = None, *,
           zero_ok: bool = False, below_maximum: bool = False, above_minimum: bool = False) -> argparse.Action:
    """Declare the range of the numeric flag ``action`` (what ``parser.add_argument`` returned); returns it."""
    action.flag_range = Range(action.option_strings[0] if action.option_strings else action.dest, minimum, maximum,
                              zero_ok, below_maximum, above_minimum)
    return action


def declared_ranges(parser: argparse.ArgumentParser) -> dict[str, Range]:
    """``{dest: Range}`` of ``parser``'s own flags declared with :func:`ranged`."""
    return {a.dest: a.flag_range for a in parser._actions if getattr(a, "flag_range", None) is not None}


def install(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` and each of its subcommands put their ranges in the parsed Namespace (``flag_ranges``),
    so :func:`check_ranges` knows the chosen subcommand's. Called by :func:`sam3m4.cli.build_parser`."""
    ranges = declared_ranges(parser)
    if ranges:
        parser.set_defaults(**{DEST: ranges})
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                install(sub)


def check_ranges(args: argparse.Namespace) -> argparse.Namespace:
    """Raise a one-line ConfigError (``--steps -5: must be >= 1``) for the first flag out of its range."""
    for dest, rule in (getattr(args, DEST, None) or {}).items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        problem = rule.problem(value)
        if problem:
            raise ConfigError(f"{rule.flag} {value}: {problem}")
    return args

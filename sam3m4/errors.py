"""Exceptions that the CLI turns into one-line messages.

Every error raised on bad user input is a :class:`Sam3m4Error`; its message is one line that names the
file and the field at fault (``data/x/val.json: images[3].height: missing key``). The CLI prints it as
``sam3m4: error: <message>`` and exits with status 2 (``--debug`` shows the traceback).
"""

import math


class Sam3m4Error(Exception):
    """Base class for errors that are the user's input, not a bug."""


class DataFormatError(Sam3m4Error, ValueError):
    """A data, checkpoint or result file does not follow its format; the message names file and field."""


class ConfigError(Sam3m4Error, ValueError):
    """A config file or command-line value is invalid; the message names the file and the key."""


class TrainingDiverged(Sam3m4Error, RuntimeError):
    """Training produced a non-finite loss or output; the message names the stage and the step, and says which
    checkpoint (if any) holds the last good state."""

    @classmethod
    def check(cls, value: float, stage: str, step: int, last_checkpoint=None) -> None:
        """Raise when ``value`` (a loss, or a sum of outputs) is NaN or inf: ``<stage> step <step>: ... not
        finite; run stopped, last good checkpoint kept: <path>``. Call it before ``optimizer.step()``."""
        if not math.isfinite(value):
            kept = f"last good checkpoint kept: {last_checkpoint}" if last_checkpoint else "no checkpoint written yet"
            raise cls(f"{stage} step {step}: {value} (not finite); run stopped, {kept}. Lower lr, check the data "
                      "or the teacher")

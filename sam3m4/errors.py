"""Exceptions that the CLI turns into one-line messages.

Every error raised on bad user input is a :class:`Sam3m4Error`; its message is one line that names the
file and the field at fault (``data/x/val.json: images[3].height: missing key``). The CLI prints it as
``sam3m4: error: <message>`` and exits with status 2 (``--debug`` shows the traceback).
"""


class Sam3m4Error(Exception):
    """Base class for errors that are the user's input, not a bug."""


class DataFormatError(Sam3m4Error, ValueError):
    """A data, checkpoint or result file does not follow its format; the message names file and field."""


class ConfigError(Sam3m4Error, ValueError):
    """A config file or command-line value is invalid; the message names the file and the key."""

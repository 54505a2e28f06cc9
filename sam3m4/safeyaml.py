"""The one YAML reader: every YAML file and ``key=value`` override the project reads goes through it.

    from sam3m4.safeyaml import load_yaml_file, load_yaml_text
    raw = load_yaml_file("configs/demo.yaml")          # dict | list | scalar | None, or a one-line ConfigError
    value = load_yaml_text("[1, 2]", "override 'x=[1, 2]'")

PyYAML's ``safe_load`` builds no arbitrary objects but still takes inputs that hurt: an alias bomb (a few lines
of ``&a`` / ``*a`` that expand to billions of items) runs to MemoryError, a key given twice silently keeps the
last value, keys may be integers or lists, a 5000-digit integer raises a bare ValueError, and deep nesting a
RecursionError. This loader refuses all of them with one :class:`~sam3m4.errors.ConfigError` line naming the
source and the line:

- no anchors and no aliases (``&name`` / ``*name``): refused when the parser meets the first one;
- no key given twice in one mapping, and every key a string;
- at most :data:`MAX_BYTES` of text and :data:`MAX_DEPTH` levels of nesting;
- integers of at most :data:`MAX_DIGITS` digits (Python refuses more than 4300 anyway; we say so in one line).

It is the pure-Python ``yaml.SafeLoader`` underneath (same YAML 1.1 scalars: ``5e-4`` stays text, ``yes`` is
True), so a file the old loader read the same way reads the same here.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from sam3m4.errors import ConfigError
from sam3m4.fileio import read_regular_bytes

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_DIGITS", "RefusedYAML", "load_yaml_file", "load_yaml_text", "load_yaml_value"]

MAX_BYTES = 4 * 1024 * 1024   # a config or targets file is a few KB; 4 MB leaves room and stops a runaway file
MAX_DEPTH = 32                # configs are flat (depth 1-3); targets.yaml is 3 deep
MAX_DIGITS = 100              # an int beyond this is a typo or an attack, never a setting


class _Refused(yaml.YAMLError):
    """A rule of this loader was broken; ``mark`` says where."""

    def __init__(self, problem: str, mark=None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without anchors/aliases, duplicate or non-string keys, deep nesting or huge ints."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(f"alias *{event.anchor} is not allowed (no anchors or aliases)", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _Refused(f"anchor &{event.anchor} is not allowed (no anchors or aliases)", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)  # merge keys ('<<') need an alias, so there is nothing left to merge
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                shown = f"key {key!r}" if isinstance(key_node, yaml.ScalarNode) else "a list or mapping as a key"
                raise _Refused(f"{shown} is not text (keys must be strings)", key_node.start_mark)
            if key in seen:
                raise _Refused(f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_DIGITS:
            raise _Refused(f"a number of {digits} digits (at most {MAX_DIGITS})", node.start_mark)
        return super().construct_yaml_int(node)


_SafeLoader.add_constructor("tag:yaml.org,2002:int", _SafeLoader.construct_yaml_int)


class RefusedYAML(ValueError):
    """Valid YAML that this loader refuses (alias, duplicate or non-text key, too deep, too many digits)."""


def _message(err: yaml.YAMLError) -> str:
    """``line 3 column 5: duplicate key 'a'``: the first line of a YAML error with its place."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"line {mark.line + 1} column {mark.column + 1}: {problem}" if mark is not None else problem


def _parse(text: str):
    """``text`` parsed by :class:`_SafeLoader`; a refusal -> ValueError with its one-line reason."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"{len(text)} characters of YAML, more than the {MAX_BYTES} allowed")
    loader = _SafeLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as err:
        raise RefusedYAML(_message(err)) from None
    except yaml.YAMLError as err:
        raise ValueError(_message(err)) from None
    except (ValueError, RecursionError, MemoryError) as err:  # the scanner's own limits, in one line
        raise ValueError(f"cannot parse YAML ({type(err).__name__})") from None
    finally:
        loader.dispose()


def load_yaml_text(text: str, where: str):
    """Parse one YAML document ``text`` by this module's rules; ``where`` names the source in errors
    (``configs/demo.yaml`` or ``override 'k=v'``). Returns what ``yaml.safe_load`` would (None when empty)."""
    try:
        return _parse(text)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


def load_yaml_value(text: str, where: str):
    """A ``key=value`` override's value: ``text`` read as YAML (``3`` -> 3, ``[a, b]`` -> list); text that is
    not valid YAML (``[1``) is kept as text for the type check to name, and a refused value (an alias, a
    5000-digit number) is a ConfigError naming ``where``."""
    try:
        return _parse(text)
    except RefusedYAML as err:
        raise ConfigError(f"{where}: {err}") from None
    except ValueError:
        return text


def load_yaml_file(path: str | os.PathLike, what: str = "config"):
    """Read ``path`` (a regular file of at most :data:`MAX_BYTES`, UTF-8) and parse it with
    :func:`load_yaml_text`. A missing, unreadable, oversized, non-regular (FIFO), non-UTF-8 or refused file is
    one ConfigError line ``<path>: cannot read <what>: <why>``."""
    path = Path(path)
    try:
        data = read_regular_bytes(path, MAX_BYTES)  # a FIFO would block open(), a device never end
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what}: {err.strerror or err}") from None
    try:
        return _parse(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: cannot read {what}: not UTF-8 text (byte {err.start})") from None
    except ValueError as err:
        raise ConfigError(f"{path}: cannot read {what}: {err}") from None

"""One loader for every recipe's flat YAML config, with ``key=value`` overrides typed by the recipe's defaults.

    from sam3m4.config import load_config
    cfg = load_config("configs/distill_phase2.yaml", ["epochs=3", "lr=5e-4"], DEFAULTS)

The torchtune shape: one flat YAML per recipe (``configs/*.yaml``, each opening with the command that runs it),
and on the command line ``key=value`` pairs that override it. Every key must be a key of the recipe's defaults
(a dict, or a dataclass instance); the default's type types the value:

=========  ===========================================================================================
default    accepted (from the file or an override)
=========  ===========================================================================================
bool       true / false, 1 / 0
int        a whole number (not a bool)
float      any number, or text that reads as one (YAML 1.1 reads ``5e-4`` as text); stored as float
str        text; an empty value or ``null`` gives ""; an override's text is kept as typed (``run=007``)
list/dict  a YAML list / mapping; an empty value or ``null`` gives an empty one
None       any value (give ``types`` to say which)
=========  ===========================================================================================

``types`` widens or fixes a key's types, e.g. ``{"threads": (int, None)}`` for "a whole number or null". An
unknown key or a badly typed value is a one-line :class:`~sam3m4.errors.ConfigError` naming where it was set
(the file, or ``override 'key=value'``) and the key.

Command-line tools whose options are flags (``sam3m4 quantize``, ``sam3m4 export``, ``sam3m4 distill video``)
take the same file through :func:`add_config_arguments` / :func:`resolve_args`: the file's keys are the flags'
names (``--num-val`` -> ``num_val``); a flag given on the command line wins over ``key=value``, which wins over
the file, which wins over the flag's default.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from pathlib import Path

import math

from sam3m4.errors import ConfigError
from sam3m4.safeyaml import load_yaml_file, load_yaml_value

NONE = type(None)


class Config(dict):
    """A recipe's settings (a plain ``dict``) that also remember where each key was set: :meth:`where`."""

    def __init__(self, values: dict, origins: dict[str, str], path=None):
        super().__init__(values)
        self.origins, self.path = origins, path

    def where(self, key: str) -> str:
        """``<file>`` or ``override 'key=value'`` for a key that was set; else the file (or ``config``)."""
        return self.origins.get(key, str(self.path) if self.path else "config")


def read_yaml(path: str | Path) -> dict:
    """A flat YAML file -> its mapping, unchecked (:func:`load_config` checks keys and types); an empty file
    gives {}. A missing, unreadable or non-mapping file, or one :mod:`sam3m4.safeyaml` refuses (aliases,
    duplicate or non-text keys, too large or deep), is a one-line :class:`ConfigError` naming it."""
    path = Path(path)
    data = load_yaml_file(path, "config")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of key: value")
    return data


def parse_override(item: str) -> tuple[str, object, str]:
    """``"key=value"`` -> (key, value read as YAML, the value's text); no ``=`` or no key -> ConfigError.
    Text that is not YAML (``[1``) is kept as text, which the type check then names; a value the safe loader
    refuses (an alias, a 5000-digit number) is a ConfigError."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{_short(item)}': expected key=value")
    value = load_yaml_value(text, f"override '{_short(item)}'")
    return key, value, text


def _short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for an error line (a 5000-digit value is not echoed whole)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _defaults_dict(defaults) -> dict:
    if dataclasses.is_dataclass(defaults) and not isinstance(defaults, type):
        return {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    return dict(defaults)


def _type_names(want: tuple) -> str:
    return " or ".join("null" if t is NONE else t.__name__ for t in want)


def coerce(key: str, value, want: tuple, where: str, text: str | None = None):
    """``value`` as one of the types ``want`` (see the module's table); ``text``: the override's raw text.
    A value none of them accepts -> ``<where>: <key>: expected <types>, got <type> <value>``."""
    if NONE in want and value is None:
        return None
    for kind in want:
        if kind is NONE:
            continue
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif kind is float:
            number = None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                number = float(value)
            elif isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    pass
            if number is not None:
                if not math.isfinite(number):  # .inf, nan, 1e400: never a setting
                    raise ConfigError(f"{where}: {key}: expected a finite number, got {_short(repr(value))}")
                return number
        elif kind is str:
            if isinstance(value, str):
                return value
            if value is None:
                return ""
            if text is not None and isinstance(value, (int, float, bool)):
                return text  # run=007, name=2024: the text as typed
        elif kind in (list, dict):
            if isinstance(value, kind):
                return value
            if value is None:
                return kind()
        elif isinstance(value, kind):
            return value
    if not want:  # a default of None with no declared type: anything goes
        return value
    raise ConfigError(f"{where}: {key}: expected {_type_names(want)}, got {type(value).__name__} "
                      f"{_short(repr(value))}")


def key_types(defaults: dict, types: dict | None = None) -> dict[str, tuple]:
    """Each key -> the types its value may have: ``types[key]`` when given, else the default's type (a default
    of None: any type)."""
    out = {}
    for key, default in defaults.items():
        if types and key in types:
            out[key] = tuple(NONE if t is None else t for t in types[key])
        elif default is None:
            out[key] = ()
        elif isinstance(default, Path):
            out[key] = (str,)
        else:
            out[key] = (type(default),)
    return out


def _unknown(where: str, key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}: {key}: unknown key{hint}")


def load_config(path: str | Path | None, overrides=(), defaults=None, *, types: dict | None = None,
                required=()) -> Config:
    """The recipe's ``defaults``, then the YAML file ``path`` (None: none), then ``key=value`` ``overrides``;
    every value typed by :func:`coerce`. ``required``: keys that the file or an override must set. Returns a
    :class:`Config` holding every key of ``defaults``."""
    defaults = _defaults_dict(defaults or {})
    want = key_types(defaults, types)
    values, origins = dict(defaults), {}
    raw = read_yaml(path) if path else {}
    for key, value in raw.items():
        if key not in want:
            raise _unknown(str(path), key, want)
        values[key], origins[key] = coerce(key, value, want[key], str(path)), str(path)
    for item in overrides:
        key, value, text = parse_override(item)
        where = f"override '{_short(item)}'"
        if key not in want:
            raise _unknown(where, key, want)
        values[key], origins[key] = coerce(key, value, want[key], where, text), where
    for key in required:
        if key not in origins:
            raise ConfigError(f"{path or 'config'}: {key}: missing key")
    return Config(values, origins, path)


# --- command-line tools whose settings are flags ---------------------------------------------------------------
class _Unset:
    """The default of a flag under :func:`add_config_arguments`: "not given", so the config file decides."""

    def __repr__(self) -> str:
        return "<from config>"


UNSET = _Unset()


def add_config_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """Give ``parser`` a ``--config FILE`` option and ``key=value`` overrides for its other options.

    Call it after the options are added. Their defaults move into the parser's ``config_defaults`` (and read
    ``UNSET`` until :func:`resolve_args` fills them in), so a flag given on the command line can be told from
    one left at its default. ``example``: a shipped config holding the defaults, named in the help.
    """
    spec = {}
    for action in parser._actions:  # argparse keeps its options there; there is no public iterator
        if action.required or action.default is argparse.SUPPRESS or not action.option_strings:
            continue
        default = action.default
        kinds = (bool,) if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) else \
            (action.type if action.type in (int, float, str) else str,)
        if default is None:
            kinds = (*kinds, NONE)
        spec[action.dest] = (default, kinds, action.type if callable(action.type) else None, action.choices)
        action.default = UNSET
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"flat YAML of these options by their names, e.g. {example} (flags win over it)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override a config key, e.g. num_val=50 (a flag given too wins)")
    parser.set_defaults(config_spec=spec)


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in ``args`` from its ``--config`` file and ``key=value`` overrides where no flag was given; flags
    left out everywhere get their usual defaults. A Namespace built without :func:`add_config_arguments`
    (code calling a CLI's ``run``) is returned as it is."""
    spec = getattr(args, "config_spec", None)
    if spec is None:
        return args
    defaults = {dest: (str(d) if isinstance(d, Path) else d) for dest, (d, _, _, _) in spec.items()}
    cfg = load_config(getattr(args, "config", None), getattr(args, "overrides", None) or (), defaults,
                      types={dest: kinds for dest, (_, kinds, _, _) in spec.items()})
    for dest, (default, _, convert, choices) in spec.items():
        if getattr(args, dest, UNSET) is not UNSET:
            continue  # given as a flag
        value = cfg[dest] if dest in cfg.origins else default
        if dest in cfg.origins and value is not None and convert is not None and not isinstance(value, bool):
            value = convert(value)
        if choices is not None and value is not None and value not in choices:
            raise ConfigError(f"{cfg.where(dest)}: {dest}: {value!r} is not one of {', '.join(map(str, choices))}")
        setattr(args, dest, value)
    del args.config_spec
    return args

"""Validation helpers shared by the SA-Co readers: load JSON, read typed fields, read image files.

Every failure is a one-line :class:`~sam3m4.errors.DataFormatError` of the form
``<file>: <field path>: <problem>``, e.g. ``val.json: images[3].height: missing key``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sam3m4.errors import DataFormatError

# field kind -> (python types, name used in messages); bool is not an int here
_KINDS = {
    "int": ((int,), "int"),
    "str": ((str,), "str"),
    "list": ((list,), "list"),
    "dict": ((dict,), "object"),
    "number": ((int, float), "number"),
}


def load_json(path: Path) -> object:
    """Parse a JSON file; a missing file or a syntax error names the file (and line:col)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def check_kind(file: Path, field: str, value: object, kind: str) -> object:
    """Return value if it has the kind ("int", "str", "list", "dict", "number"), else raise."""
    types, name = _KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, types):
        raise DataFormatError(f"{file}: {field}: expected {name}, got {type_name(value)}")
    return value


def get(file: Path, obj: dict, field: str, key: str, kind: str, *, default: object = ...) -> object:
    """Read ``obj[key]`` checked against kind; field is the path of obj (``"images[3]"``).

    Without default a missing key is an error; with default the default is returned when missing.
    """
    where = f"{field}.{key}" if field else key
    if key not in obj:
        if default is ...:
            raise DataFormatError(f"{file}: {where}: missing key")
        return default
    return check_kind(file, where, obj[key], kind)


def get_positive(file: Path, obj: dict, field: str, key: str) -> int:
    """Read a positive int field (image height/width, video length)."""
    value = get(file, obj, field, key, "int")
    if value <= 0:
        raise DataFormatError(f"{file}: {field}.{key}: must be > 0, got {value}")
    return value


def list_of_dicts(file: Path, data: dict, key: str, *, required: bool = True) -> list[dict]:
    """Top-level ``data[key]`` as a list whose entries are all objects."""
    items = get(file, data, "", key, "list", default=... if required else [])
    for i, item in enumerate(items):
        check_kind(file, f"{key}[{i}]", item, "dict")
    return items


def read_rgb(file: Path, field: str, path: Path, height: int, width: int) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB and check it is height x width.

    file/field name the JSON entry that points at the image (used in the error message).
    """
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))          # (H, W, 3) uint8
    except FileNotFoundError:
        raise DataFormatError(f"{file}: {field}: image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataFormatError(f"{file}: {field}: cannot decode image {path}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if rgb.shape[:2] != (height, width):
        raise DataFormatError(f"{file}: {field}: image {path} is {rgb.shape[0]}x{rgb.shape[1]} (HxW) "
                              f"but the JSON says {height}x{width}")
    return rgb

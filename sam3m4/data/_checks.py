"""Validation helpers shared by the SA-Co readers: load JSON, read typed fields, read image files.

Every failure is a one-line :class:`~sam3m4.errors.DataFormatError` of the form
``<file>: <field path>: <problem>``, e.g. ``val.json: images[3].height: missing key``.

Limits: an image or frame side is at most :data:`MAX_SIDE` pixels (checked before anything is allocated);
JSON numbers must be finite (``NaN``, ``Infinity`` and ``1e400`` are refused); paths in the JSON
(``file_name``, ``file_names``, SA-V ``video_id``) must stay inside the data root.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from sam3m4.errors import DataFormatError
from sam3m4.schemas import MAX_SIDE, read_json  # noqa: F401  (MAX_SIDE: the readers' limit)

# field kind -> (python types, name used in messages); bool is not an int here
_KINDS = {
    "int": ((int,), "int"),
    "str": ((str,), "str"),
    "list": ((list,), "list"),
    "dict": ((dict,), "object"),
    "number": ((int, float), "number"),
}




def load_json(path: Path) -> object:
    """Parse a JSON file; a missing file, bad encoding or syntax error names the file (and line:col).

    Numbers must be finite: ``NaN``, ``Infinity`` and overflowing floats are an error, so every number a
    reader gets can be compared and converted (:func:`sam3m4.schemas.read_json`).
    """
    return read_json(path)


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


def get_positive(file: Path, obj: dict, field: str, key: str, *, maximum: int | None = None) -> int:
    """Read a positive int field (image height/width, video length), at most ``maximum`` when given."""
    value = get(file, obj, field, key, "int")
    if value <= 0:
        raise DataFormatError(f"{file}: {field}.{key}: must be > 0, got {value}")
    if maximum is not None and value > maximum:
        raise DataFormatError(f"{file}: {field}.{key}: must be <= {maximum}, got {value}")
    return value


def get_side(file: Path, obj: dict, field: str, key: str) -> int:
    """Read an image height or width: a positive int <= MAX_SIDE."""
    return get_positive(file, obj, field, key, maximum=MAX_SIDE)


def get_text(file: Path, obj: dict, field: str, key: str) -> str:
    """Read a non-blank string field (a noun phrase, a category name)."""
    value = get(file, obj, field, key, "str")
    if not value.strip():
        raise DataFormatError(f"{file}: {field}.{key}: must not be empty, got {value!r}")
    return value


def unique_id(file: Path, field: str, value: object, seen: dict[int, str]) -> int:
    """Check that ``value`` (the ``id`` at ``field``) is an int not in seen (id -> field); record it."""
    check_kind(file, field, value, "int")
    if value in seen:
        raise DataFormatError(f"{file}: {field}: duplicate id {value} (also {seen[value]})")
    seen[value] = field
    return value


def check_path(file: Path, field: str, value: object) -> str:
    """A path from the JSON, relative to the data root: a non-empty str, not absolute, no ``..`` part."""
    check_kind(file, field, value, "str")
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if (not value.strip() or "\0" in value or value.startswith(("/", "\\")) or PureWindowsPath(value).drive
            or ".." in parts):
        raise DataFormatError(f"{file}: {field}: must be a relative path inside the data root, got {value!r:.80}")
    return value


def check_area(file: Path, field: str, value: object, height: int, width: int) -> float:
    """A mask area in pixels: a number in [0, height * width]."""
    check_kind(file, field, value, "number")
    if not 0 <= value <= height * width:
        raise DataFormatError(f"{file}: {field}: must be in [0, H*W = {height * width}], got {value}")
    return value


def check_bbox(file: Path, field: str, value: object, height: int, width: int) -> list:
    """A COCO box ``[x, y, w, h]`` in pixels: w, h > 0, inside the height x width image (1 px slack)."""
    if not isinstance(value, list) or len(value) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise DataFormatError(f"{file}: {field}: expected [x, y, w, h] numbers, got {value!r:.60}")
    x, y, w, h = value
    if w <= 0 or h <= 0:
        raise DataFormatError(f"{file}: {field}: width and height must be > 0, got {value}")
    if x < 0 or y < 0 or x + w > width + 1 or y + h > height + 1:
        raise DataFormatError(f"{file}: {field}: box {value} is outside the {height}x{width} (HxW) image")
    return value


def list_of_dicts(file: Path, data: dict, key: str, *, required: bool = True) -> list[dict]:
    """Top-level ``data[key]`` as a list whose entries are all objects."""
    items = get(file, data, "", key, "list", default=... if required else [])
    for i, item in enumerate(items):
        check_kind(file, f"{key}[{i}]", item, "dict")
    return items


def read_rgb(file: Path, field: str, path: Path, height: int, width: int) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB and check it is height x width.

    file/field name the JSON entry that points at the image (used in the error message). The size in the
    file's header is compared before the pixels are decoded.
    """
    rgb = None
    try:
        with Image.open(path) as im:
            size = im.size                               # (W, H) from the header
            if size == (width, height):
                rgb = np.asarray(im.convert("RGB"))      # (H, W, 3) uint8
    except FileNotFoundError:
        raise DataFormatError(f"{file}: {field}: image file not found: {path}") from None
    except Image.DecompressionBombError as exc:
        raise DataFormatError(f"{file}: {field}: image {path} is too large to decode: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataFormatError(f"{file}: {field}: cannot decode image {path}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if rgb is None or rgb.shape[:2] != (height, width):
        h, w = (size[1], size[0]) if rgb is None else rgb.shape[:2]
        raise DataFormatError(f"{file}: {field}: image {path} is {h}x{w} (HxW) but the JSON says {height}x{width}")
    return rgb

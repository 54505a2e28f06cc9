"""The one way a file becomes a checked object: parse JSON safely, validate against a pydantic model, and turn
every failure into one line ``<file>: <field path>: <what was expected>, got <what was there>``.

    data = read_json(path)                                   # DataFormatError on syntax, encoding, NaN, depth
    state = validate(data, PipelineState, source=path)       # DataFormatError naming the field
    state = load_file(path, PipelineState)                   # both

Field paths read as in the file: ``images[3].height``, ``[2].benchmarkModel.name``; ``<top level>`` for the
whole document. Models derive from :class:`Own` (the project's own files: strict types, unknown keys refused)
or :class:`External` (SA-Co, SA-V, benchmark apps: strict types for the keys used, other keys allowed).
Strict means: no ``"123"`` for a number or a list, no ``true`` for an int, no ``3.0`` for an id; every float
is finite.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, TypeVar

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter,
                      ValidationError)

from sam3m4.errors import DataFormatError, Sam3m4Error

__all__ = ["Own", "External", "read_json", "parse_json", "validate", "load_file", "field_path", "type_name",
           "Finite", "NonNeg", "Prob", "Id", "Count", "Text", "NonEmpty", "Hex64", "Bool", "Side", "Positive",
           "RelPath", "Xywh", "json_array", "MAX_SIDE", "MAX_JSON_BYTES"]

M = TypeVar("M", bound=BaseModel)

MAX_JSON_BYTES = 1 << 30
"""Largest JSON file read (1 GiB): SA-Co/Gold's biggest GT file is a few hundred MB."""


class Own(BaseModel):
    """A file sam3m4 writes itself: every key is known, so an unknown one is an error."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class External(BaseModel):
    """A file another tool writes (SA-Co, SA-V, ExecuTorch's benchmark apps): the keys sam3m4 uses are checked,
    the rest are kept as they are."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)


# --- field types -----------------------------------------------------------------------------------------------
Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]
"""A finite number (an int is accepted, a bool is not)."""
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
"""A finite number >= 0 (a size, an area, a duration)."""
Prob = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
"""A probability or score in [0, 1]."""
Id = StrictInt
"""An integer id: no bool, no float (``3.0``), no string."""
Count = Annotated[StrictInt, Field(ge=0)]
"""An integer >= 0."""
Text = StrictStr


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(f"must not be empty, got {value!r}")
    return value


NonEmpty = Annotated[StrictStr, AfterValidator(_not_blank)]
"""A string with something in it besides white space."""
Hex64 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
"""A lower-case hex sha256."""
Bool = StrictBool


# --- reading -----------------------------------------------------------------------------------------------------
class _NonFinite(ValueError):
    def __init__(self, token: str):
        super().__init__(token)
        self.token = token


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _NonFinite(token)
    return value


def _constant(token: str) -> float:
    raise _NonFinite(token)


def _line_col(text: str, index: int) -> str:
    line, line_start = text.count("\n", 0, index) + 1, text.rfind("\n", 0, index) + 1
    return f"{line}:{index - line_start + 1}"


def parse_json(text: str, source: str | Path, error: type[Sam3m4Error] = DataFormatError) -> Any:
    """JSON text -> Python objects; every number finite (``NaN``, ``Infinity``, ``1e400`` refused), at most
    the interpreter's nesting depth (deeper: one line, not a RecursionError)."""
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except _NonFinite as exc:
        where = _line_col(text, max(text.find(exc.token), 0))
        raise error(f"{source}:{where}: invalid JSON: {exc.token} is not a finite number") from None
    except RecursionError:
        raise error(f"{source}: invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise error(f"{source}: invalid JSON: {str(exc).splitlines()[0]}") from None


def read_json(path: str | Path, error: type[Sam3m4Error] = DataFormatError) -> Any:
    """Parse a JSON file; a missing file, a folder, a FIFO, bad encoding, an empty file or a syntax error is one
    line naming the file (and line:col). Numbers are finite (:func:`parse_json`)."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            raise error(f"{path}: not a regular file (a FIFO, socket or device), expected a JSON file")
        with path.open("rb") as handle:
            raw = handle.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected a JSON file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise error(f"{path}: larger than {MAX_JSON_BYTES} bytes, not read")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise error(f"{path}: empty file, expected JSON")
    return parse_json(text, path, error)


# --- validating --------------------------------------------------------------------------------------------------
def type_name(value: object) -> str:
    """JSON-ish name of a Python value's type: ``null``, ``int``, ``str``, ``list``, ``dict``, ``bool``."""
    return "null" if value is None else type(value).__name__


def _short(value: object) -> str:
    try:
        text = repr(value)
    except RecursionError:
        return f"a deeply nested {type_name(value)}"
    return text if len(text) <= 60 else text[:57] + "..."


_EXPECTED = {
    "int_type": "int", "int_from_float": "int", "int_parsing": "int", "float_type": "number",
    "float_parsing": "number", "string_type": "str", "list_type": "list", "tuple_type": "list",
    "dict_type": "object", "model_type": "object", "model_attributes_type": "object", "bool_type": "bool",
    "none_required": "null", "is_instance_of": "object",
}
_COMPARE = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _is_branch(part) -> bool:
    """A union member's or validator's name in pydantic's ``loc`` (``"int"``, ``"function-after[...]"``), not
    a key of the file."""
    return isinstance(part, str) and (part in _BRANCHES or part.startswith(
        ("function-", "constrained-", "lax-", "json-or-python", "list[", "dict[", "tagged-union", "nullable")))


_BRANCHES = {"int", "float", "str", "bool", "none", "list", "dict", "is-instance"}


def field_path(loc: tuple) -> str:
    """pydantic's ``("images", 3, "height")`` -> ``images[3].height``; ``()`` -> ``<top level>``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_branch(part):
            out += f".{part}" if out else str(part)
    return out or "<top level>"


_PROSE = {"int": "an integer", "number": "a number", "str": "a string", "list": "a list", "object": "an object",
          "bool": "a boolean", "null": "null"}


def describe_error(err: dict, prose: str | None = None) -> str:
    """One pydantic error dict -> ``<what was expected>, got <what was there>`` (without the field).

    ``prose``: None for the data files' short words (``expected int, got bool``); else the word for an object
    (``"an object"``, ``"a mapping"`` for YAML) and sentences as the config and device messages write them
    (``expected a number, got 'fast'``: the value itself for a scalar, its type for a container)."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "missing key"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in _EXPECTED:
        name = _EXPECTED[kind]
        if prose is None:
            return f"expected {name}, got {type_name(value)}"
        words = {**_PROSE, "object": prose}
        got = type_name(value) if name in ("object", "list") or isinstance(value, (dict, list)) else _short(value)
        return f"expected {words[name]}, got {got}"
    if kind == "finite_number":
        return f"expected a finite number, got {_short(value)}"
    if kind in _COMPARE:
        bound = next(iter(ctx.values()), "?")
        return f"must be {_COMPARE[kind]} {bound:g}, got {_short(value)}" if isinstance(bound, float) else \
            f"must be {_COMPARE[kind]} {bound}, got {_short(value)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', '?')}, got {_short(value)}"
    if kind == "string_pattern_mismatch":
        return f"expected a string matching {ctx.get('pattern')}, got {_short(value)}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    msg = err["msg"]
    return f"{msg[0].lower() + msg[1:]}, got {_short(value)}"


def _message(errors: list[dict], prose: str | None = None) -> str:
    """``<field>: <problem>`` of the first field in file order that fails; a field that fails every member of a
    union names the types it may have (or the range it broke, when its type was right)."""
    first = field_path(errors[0]["loc"])
    same = [e for e in errors if field_path(e["loc"]) == first]
    fields = {field_path(e["loc"]) for e in errors}
    more = f" (and {len(fields) - 1} more field{'s' if len(fields) > 2 else ''})" if len(fields) > 1 else ""
    typed = [e for e in same if e["type"] in _EXPECTED]
    if len(same) > 1 and len(typed) < len(same):       # the right type, the wrong value
        return f"{first}: {describe_error(next(e for e in same if e['type'] not in _EXPECTED), prose)}{more}"
    if len(same) > 1:
        words = _PROSE if prose is not None else {}
        names = list(dict.fromkeys(words.get(_EXPECTED[e["type"]], _EXPECTED[e["type"]]) for e in typed))
        wanted = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        return f"{first}: expected {wanted}, got {type_name(same[0].get('input'))}{more}"
    return f"{first}: {describe_error(same[0], prose)}{more}"


@functools.lru_cache(maxsize=None)
def _adapter(kind) -> TypeAdapter:
    return TypeAdapter(kind)


def validate(obj: Any, model: type[M], *, source: str | Path, error: type[Sam3m4Error] = DataFormatError,
             context: dict | None = None, prose: str | None = None) -> M:
    """``model`` checked from ``obj`` (parsed JSON / YAML); the first problem, in file order, becomes one
    ``error`` line ``<source>: <field path>: <problem>``. ``context`` goes to the model's validators (sizes known
    from elsewhere, e.g. the GT's image sizes). ``prose``: the wording of :func:`describe_error`."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(obj, strict=True, context=context)
        return _adapter(model).validate_python(obj, strict=True, context=context)
    except ValidationError as exc:
        try:
            message = _message(exc.errors(include_url=False), prose)
        except RecursionError:
            message = "<top level>: nested too deeply"
        raise error(f"{source}: {message}".replace("\n", " ")) from None
    except RecursionError:
        raise error(f"{source}: nested too deeply") from None


def load_file(path: str | Path, model: type[M], *, error: type[Sam3m4Error] = DataFormatError,
              context: dict | None = None, prose: str | None = None) -> M:
    """:func:`read_json` then :func:`validate`: a checked ``model`` from a JSON file, or one ``error`` line."""
    return validate(read_json(path, error), model, source=path, error=error, context=context, prose=prose)


# --- shared field types that need a check of their own -----------------------------------------------------------
MAX_SIDE = 16384
"""Largest image/frame height or width accepted (pixels); SA-Co and SA-V frames are at most a few thousand."""
Side = Annotated[StrictInt, Field(gt=0, le=MAX_SIDE)]
"""An image or frame height or width in pixels: an int in (0, MAX_SIDE]."""
Positive = Annotated[StrictInt, Field(gt=0)]
"""An integer > 0 (a frame count)."""


def _relative_path(value: str) -> str:
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if (not value.strip() or "\0" in value or value.startswith(("/", "\\")) or PureWindowsPath(value).drive
            or ".." in parts):
        raise ValueError(f"must be a relative path inside the data root, got {value!r:.80}")
    return value


RelPath = Annotated[StrictStr, AfterValidator(_relative_path)]
"""A path relative to a data root: not empty, not absolute (POSIX or Windows), no ``..`` part, no NUL."""


def _xywh(value: Any) -> Any:
    if not isinstance(value, list) or len(value) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"expected [x, y, w, h] numbers, got {_short(value)}")
    return value


Xywh = Annotated[list[Finite], BeforeValidator(_xywh)]
"""A COCO box ``[x, y, w, h]`` in pixels: four finite numbers (sizes checked where the image is known)."""


def json_array(value: Any) -> Any:
    """A JSON array given to a fixed-length tuple field (strict mode takes only Python tuples): as a tuple."""
    return tuple(value) if isinstance(value, list) else value

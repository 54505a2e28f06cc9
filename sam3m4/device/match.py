"""Find the exported ``.pte`` a device result measured, and check it is the file we think it is.

Stage 5 writes ``<model>_<backend>_<quant>.pte`` under ``outputs/export/``. Android reports the file name
without ``.pte``, so the name matches exactly. The iOS app only shows the name inside the XCTest test
name, with every punctuation character turned into ``_`` (``repvit-m0.9_coreml_fp16.pte`` ->
``test_forward_repvit_m0_9_coreml_fp16_pte_iOS_...``): so both sides are compared in that cleaned form too,
and two files that clean to the same name are an error.

The match carries the file's sha256 (:func:`sam3m4.results.store.sha256_file`). An expected sha256, from
``--sha256 NAME=HEX`` or from a sidecar ``<name>.pte.sha256`` (``sha256sum`` output: hex first), must equal
it, else :class:`DeviceMatchError` names the file and both hashes.

    m = match_pte(row, "outputs/export", expected_sha256=None)   # PteMatch(path, sha256)
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sam3m4.device.results import DeviceResult
from sam3m4.errors import DataFormatError, Sam3m4Error
from sam3m4.fileio import check_regular_file
from sam3m4.results.store import sha256_file

_HEX = re.compile(r"^[0-9a-f]{64}$")


class DeviceMatchError(Sam3m4Error):
    """A device result has no (or no unique) .pte, or the .pte's sha256 is not the expected one."""


@dataclass(frozen=True)
class PteMatch:
    """The .pte a result measured."""

    path: Path
    """``<pte_dir>/<model>_<backend>_<quant>.pte``."""
    sha256: str
    """Hex sha256 of its bytes now."""


def clean_name(name: str) -> str:
    """The iOS benchmark app's form of a file name: each punctuation character (Unicode P*) -> ``_``."""
    return "".join("_" if unicodedata.category(c).startswith("P") else c for c in name)


def parse_sha256(text: str, where: str) -> str:
    """A 64-digit hex sha256 (lower-cased) from ``text``'s first word; else DataFormatError naming ``where``."""
    words = text.split()
    digest = words[0].lower() if words else ""
    if not _HEX.match(digest):
        raise DataFormatError(f"{where}: expected a 64-digit hex sha256, got {digest[:80]!r}")
    return digest


def find_pte(result: DeviceResult, pte_dir: str | os.PathLike) -> Path:
    """``pte_dir/<result.pte_name>``, or the one .pte whose cleaned name equals it; else DeviceMatchError."""
    folder = Path(pte_dir)
    exact = folder / result.pte_name
    if os.path.lexists(exact):
        return regular(exact)
    if not folder.is_dir():
        raise DeviceMatchError(f"{folder}: no such folder, looking for {result.pte_name} ({result.where}); "
                               "pass --pte-dir with the exported .pte files")
    wanted = clean_name(result.pte_name)
    found = sorted(p for p in folder.glob("*.pte") if clean_name(p.name) == wanted)
    if len(found) > 1:
        raise DeviceMatchError(f"{result.where}: {result.pte_name} is ambiguous in {folder}: "
                               + ", ".join(p.name for p in found))
    if not found:
        raise DeviceMatchError(f"{result.where}: no {result.pte_name} in {folder} (export it, or pass --pte-dir)")
    return regular(found[0])


def regular(path: Path) -> Path:
    """``path`` when it is a regular file; a FIFO (which would block the hash forever), a folder or a device is
    a one-line DataFormatError naming it."""
    try:
        return check_regular_file(path)
    except OSError as err:
        raise DataFormatError(f"{path}: {err.strerror or err}") from None


def match_pte(result: DeviceResult, pte_dir: str | os.PathLike, expected_sha256: str | None = None) -> PteMatch:
    """The .pte ``result`` measured and its sha256, checked against ``expected_sha256`` and a sidecar.

    Sidecar: ``<pte>.sha256`` next to the .pte, first word a 64-digit hex sha256. Every expectation given
    must match; a mismatch raises :class:`DeviceMatchError` naming the file, its hash and the expected one.
    """
    path = find_pte(result, pte_dir)
    digest = sha256_file(path)
    expected: list[tuple[str, str]] = []
    if expected_sha256 is not None:
        expected.append(("--sha256", parse_sha256(expected_sha256, f"--sha256 {path.name}")))
    sidecar = path.with_name(path.name + ".sha256")
    if os.path.lexists(sidecar) and regular(sidecar):
        expected.append((str(sidecar), parse_sha256(sidecar.read_text(encoding="utf-8"), str(sidecar))))
    for source, want in expected:
        if want != digest:
            raise DeviceMatchError(f"{path}: sha256 {digest} is not the expected {want} (from {source}); "
                                   f"the device measured another build of {path.name}")
    return PteMatch(path=path, sha256=digest)

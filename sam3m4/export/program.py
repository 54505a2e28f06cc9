"""An exported ``.pte`` as Stage 5 hands it on: the file, its sha256, the backend and mode it was lowered for.

    program = export_case("xnnpack", "int8_int4", quantized=qset).program    # or ExportResult.program
    program.path, program.sha256, program.backend, program.mode, program.methods
    program.check()                                   # one-line DataFormatError when the file changed since
    PteStudent(program, image_size)                   # os.fspath(program) is the .pte: path-taking code accepts it

A later stage (the deployed evaluation, the device import, the report) takes this object instead of a path, so it
knows which bytes it is about without hashing or parsing the file name again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sam3m4.errors import DataFormatError
from sam3m4.results import schema
from sam3m4.results.store import sha256_file


@dataclass(frozen=True)
class ExportedProgram:
    """One written ExecuTorch program (multi-method, or the split layout's ``forward`` file and its siblings)."""

    path: Path
    """The ``.pte`` (``<out_dir>/<model_name>_<backend>_<mode>.pte``); the ``forward`` file when split."""
    sha256: str
    """sha256 of :attr:`path` as written (64 hex digits)."""
    backend: str
    """Flow name: ``coreml``, ``qnn`` or ``xnnpack``."""
    mode: str
    """sam3m4 quant mode (``fp16``, ``int4``, ``int8_int4``, ``qat_int4``, ``qat_int8_int4``)."""
    methods: tuple[str, ...] = ()
    """Methods in the program, in export order (``encode_text``, ``forward`` [, ``track``])."""
    files: dict[str, Path] = field(default_factory=dict)
    """Method -> the ``.pte`` holding it (all :attr:`path` in the multi-method layout)."""
    size_bytes: int = 0
    """Bytes of all distinct files."""

    @classmethod
    def open(cls, path: str | Path, *, backend: str, mode: str) -> "ExportedProgram":
        """A ``.pte`` already on disk (hashed here; the methods are not read): for a CLI given a file."""
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(f"{path}: no such .pte")
        siblings = {p.name.split(".")[-2]: p for p in path.parent.glob(f"{path.stem}.*.pte")}
        files = {"forward": path, **siblings} if siblings else {}
        size = sum(p.stat().st_size for p in {path, *files.values()})
        return cls(path=path, sha256=sha256_file(path), backend=backend, mode=mode, files=files, size_bytes=size)

    def check(self) -> "ExportedProgram":
        """``self`` when the file still has :attr:`sha256`; else a one-line :class:`DataFormatError` naming it."""
        if not self.path.is_file():
            raise DataFormatError(f"{self.path}: the exported program is gone (sha256 {self.sha256[:12]})")
        found = sha256_file(self.path)
        if found != self.sha256:
            raise DataFormatError(f"{self.path}: sha256: {found[:12]}, exported as {self.sha256[:12]} "
                                  f"(the file changed since {self.backend}/{self.mode} was exported)")
        return self

    @property
    def subject(self) -> str:
        """``<backend>/<mode>``: the records' subject (:func:`sam3m4.results.schema.export_subject`)."""
        return schema.export_subject(self.backend, self.mode)

    def __str__(self) -> str:  # where a path was printed, the path still is
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

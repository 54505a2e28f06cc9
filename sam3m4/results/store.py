"""Append-only results store: one JSON Lines file per run, safe for concurrent writers.

Every number sam3m4 reports goes through here: training, evaluation, quantization, export and the
acceptance tests append :class:`Record` s to ``reports/<run>/results.jsonl`` and the Markdown report,
the pytest-html page and the docs tables are read back from it.

Writers hold an OS lock (``flock``) on ``results.jsonl`` itself while appending one line, so pytest-xdist
workers and training processes can write at once without losing a record, and no lock file is left in
``reports/<run>/``. A writer killed in the middle of a line leaves a fragment without a newline; the next
append starts on a fresh line. Readers skip a corrupt line (or the broken fragment glued in front of a whole
record) with a warning that names the file and the line number: never a crash, never silence.

    store = ResultsStore("demo")
    store.record(stage="stage3", subject="student/phase2", metric="miou", value=0.81, unit="fraction",
                 provenance="host CPU (x86_64, 2 threads), torch 2.14.1 eager fp32, 80 val pairs")
    store.frame()   # pandas view
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sam3m4.errors import DataFormatError
from sam3m4.fileio import check_contained
from sam3m4.paths import REPORTS_ROOT
from sam3m4.results.runs import check_run_name
from sam3m4.schemas import validate
from sam3m4.schemas.results import ResultRecord
from sam3m4.results.schema import NOT_MEASURABLE, RECORD_OUTCOMES, UNSUPPORTED_OUTCOME  # noqa: F401  (writers import the outcomes from here too)

try:  # POSIX: lock the results file itself
    import fcntl
except ImportError:  # Windows: a lock file next to it (filelock)
    fcntl = None

RESULTS_FILE = "results.jsonl"

_COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
}


def compare(value: float, comparison: str, target: float) -> bool:
    """``value <comparison> target``, e.g. ``compare(41.2, "<", 50)``; unknown comparison -> ValueError."""
    if comparison not in _COMPARE:
        raise ValueError(f"unknown comparison {comparison!r}; expected one of {sorted(_COMPARE)}")
    return bool(_COMPARE[comparison](value, target))


# Record.outcome values: no number, and not a failure.
# what a record's ``outcome`` may say (defined with the rest of the names in sam3m4.results.schema)
UNSUPPORTED = UNSUPPORTED_OUTCOME  # the backend declares this case unsupported; nothing was attempted
OUTCOMES = RECORD_OUTCOMES


@dataclass(frozen=True)
class Record:
    """One measurement. Fields are what a reader of the report needs to trust the number."""

    run: str
    """Run name: the folder under ``reports/``."""
    stage: str
    """Pipeline stage: ``sanity``, ``stage3``, ``stage4``, ``stage5``, ``visual``, ``storage``, ``summary``, ``artifacts``."""
    subject: str
    """What was measured: ``teacher``, ``student/phase2``, ``int4``, ``coreml/int4``, ``checkpoints/distillation``."""
    metric: str
    """Metric name: ``miou``, ``presence_f1``, ``jf``, ``pte_mb``, ``image_latency_ms`` ..."""
    value: Any
    """A number, a string (a verdict, a path) or a bool."""
    unit: str = ""
    """``fraction``, ``ms``, ``MB``, ``fps``, ``points`` ..."""
    target: float | None = None
    """Threshold from the targets file, when this record is a gate."""
    comparison: str | None = None
    """How ``value`` is compared to ``target``: ``<``, ``<=``, ``>``, ``>=``."""
    passed: bool | None = None
    """Gate verdict; None when the record is not a gate."""
    provenance: str = ""
    """How and where it was measured: host CPU + runtime, AOT analysis, imported device file."""
    artifact: str | None = None
    """Path of the artifact the value describes (checkpoint, .pte, log)."""
    sha256: str | None = None
    """sha256 of ``artifact`` at measurement time."""
    note: str = ""
    """Free text shown in a report's remark column (a memo, a reason)."""
    failed_stage: str | None = None
    """Where the measurement failed, when it did: ``quantize``, ``export``, ``lower``, ``serialize`` (export),
    ``load``, ``run`` (on the device), ``metric``; None otherwise. A gate given such a record fails."""
    outcome: str | None = None
    """Why there is no number to judge when that is not a failure: :data:`UNSUPPORTED` or :data:`NOT_MEASURABLE`;
    None for an ordinary measurement. Gates skip on these (fail under ``--release``), never on note text."""
    timestamp: str = ""
    """UTC ISO-8601 time of writing; filled by the store."""

    @classmethod
    def from_dict(cls, data: dict, *, where: str) -> "Record":
        """A record from a parsed line, checked against :class:`sam3m4.schemas.results.ResultRecord` (types,
        finite numbers, known keys); DataFormatError ``<where>: <field>: <problem>``."""
        return cls(**validate(data, ResultRecord, source=where).model_dump())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class ResultsStore:
    """The records of one run, at ``<root>/<run>/results.jsonl``."""

    def __init__(self, run: str, root: str | os.PathLike = REPORTS_ROOT):
        self.run = check_run_name(run, "run")
        self.dir = Path(root) / run
        self.path = self.dir / RESULTS_FILE

    # --- writing -------------------------------------------------------------------------------
    def append(self, record: Record) -> Record:
        """Append one record (timestamp filled when empty); returns what was written."""
        if not record.timestamp:
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            record = dataclasses.replace(record, timestamp=now)
        line = _record_line(record, self.path)
        check_contained(self.path)  # a results.jsonl (or run folder) symlinked out of the project: refused
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._locked() as fd:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a killed writer's fragment: start a fresh line
                line = "\n" + line
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        return record

    @contextlib.contextmanager
    def _locked(self):
        """The results file opened for appending (created when missing), under an exclusive lock."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
                yield fd
            else:
                from filelock import FileLock

                with FileLock(str(self.path) + ".lock"):
                    yield fd
        finally:
            os.close(fd)

    def record(self, *, stage: str, subject: str, metric: str, value: Any, artifact: str | os.PathLike | None = None,
               hash_artifact: bool = True, **fields: Any) -> Record:
        """Build and append a :class:`Record`; hashes ``artifact`` when it is an existing file.

        When ``target`` and ``comparison`` are given and ``passed`` is not, the verdict is computed. A measured
        value that is NaN or infinite is never written as such (JSON has no such numbers): the record keeps no value,
        says what was measured in its note, fails at the ``metric`` stage and, when gated, does not pass.
        """
        if isinstance(value, float) and not math.isfinite(value):
            fields["note"] = "; ".join(x for x in (f"not a finite number ({value!r})", fields.get("note")) if x)
            fields.setdefault("failed_stage", "metric")
            if fields.get("target") is not None:
                fields["passed"] = False
            value = None
        if artifact is not None:
            artifact_path = Path(artifact)
            fields["artifact"] = str(artifact_path)
            if hash_artifact and artifact_path.is_file() and "sha256" not in fields:
                fields["sha256"] = sha256_file(artifact_path)
        target, comparison = fields.get("target"), fields.get("comparison")
        if target is not None and comparison and fields.get("passed") is None and isinstance(value, (int, float)):
            fields["passed"] = compare(float(value), comparison, float(target))
        rec = Record(run=self.run, stage=stage, subject=subject, metric=metric, value=value, **fields)
        return self.append(rec)

    # --- reading -------------------------------------------------------------------------------
    def records(self) -> list[Record]:
        """All readable records in file order; corrupt lines are skipped with a warning naming the line."""
        if not self.path.exists():
            return []
        out: list[Record] = []
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{self.path}:{lineno}"
                try:
                    out.append(_parse(line, where))
                except (ValueError, TypeError) as err:
                    glued = _glued_record(line, where)
                    if glued is not None:  # an interrupted writer's fragment, then a whole record
                        out.append(glued[1])
                        warnings.warn(f"skipped a broken results fragment: {where}: {glued[0]} characters before "
                                      "a whole record (a writer was interrupted); the record is kept", stacklevel=2)
                        continue
                    msg = str(err) if str(err).startswith(where) else f"{where}: {err}"
                    warnings.warn(f"skipped corrupt results record: {msg}", stacklevel=2)
        return out

    def latest(self, stage: str | None = None, subject: str | None = None, metric: str | None = None) -> Record | None:
        """The last record matching every given field, or None."""
        found = None
        for rec in self.records():
            if (stage is None or rec.stage == stage) and (subject is None or rec.subject == subject) \
                    and (metric is None or rec.metric == metric):
                found = rec
        return found

    def frame(self):
        """All records as a pandas DataFrame (one row a record, columns as :class:`Record`)."""
        import pandas as pd

        columns = [f.name for f in dataclasses.fields(Record)]
        return pd.DataFrame([dataclasses.asdict(r) for r in self.records()], columns=columns)

    def table(self, stage: str, metrics: Iterable[str]):
        """Latest value per subject x metric for one stage, as a pandas pivot (subjects as rows)."""
        df = self.frame()
        df = df[df["stage"] == stage]
        metrics = list(metrics)
        df = df[df["metric"].isin(metrics)]
        if df.empty:
            import pandas as pd

            return pd.DataFrame(columns=metrics)
        latest = df.groupby(["subject", "metric"], sort=False).tail(1)
        return latest.pivot(index="subject", columns="metric", values="value").reindex(columns=metrics)


def _record_line(record: Record, path: Path) -> str:
    """The JSON line of ``record``, checked as a reader will check it: never NaN or Infinity, every field of its
    declared type (:class:`sam3m4.schemas.results.ResultRecord`); else DataFormatError naming the record."""
    what = f"{path}: record {record.stage}/{record.subject}/{record.metric}"
    try:
        line = json.dumps(dataclasses.asdict(record), ensure_ascii=False, default=_jsonable, allow_nan=False)
    except ValueError:
        raise DataFormatError(f"{what}: a value is NaN or infinite ({record.value!r}); not written") from None
    except TypeError as err:
        raise DataFormatError(f"{what}: {err}; not written") from None
    validate(json.loads(line), ResultRecord, source=f"{what} (not written)")
    return line + "\n"


def _non_finite(token: str):
    raise ValueError(f"{token} is not a finite number")


def _parse(text: str, where: str) -> Record:
    try:
        data = json.loads(text, parse_constant=_non_finite)  # 1e400 (inf) is refused by the schema
    except RecursionError:
        raise DataFormatError(f"{where}: nested too deeply") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{where}: expected a JSON object")
    return Record.from_dict(data, where=where)


def _glued_record(line: str, where: str) -> tuple[int, Record] | None:
    """``(fragment length, record)`` when ``line`` is a killed writer's fragment followed by a whole record
    (written before appends started on a fresh line); None when no whole record ends the line."""
    text = line.rstrip()
    start = text.find("{", 1)
    while start > 0:
        try:
            return start, _parse(text[start:], where)
        except (ValueError, TypeError):
            start = text.find("{", start + 1)
    return None


def _jsonable(obj: Any):
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

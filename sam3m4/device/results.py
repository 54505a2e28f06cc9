"""Read ExecuTorch benchmark-app results into :class:`DeviceResult` rows, and rows into Stage 5 metrics.

Two formats, both written by ExecuTorch's benchmark apps (``extension/benchmark/{android,apple}``):

* **Android minibench** ``benchmark_results.json``: a JSON list, one object per metric::

      {"benchmarkModel": {"name": "repvit_m0_9_504", "backend": "qnn", "quantization": "int8_int4"},
       "metric": "trimmean_inference_latency(ms)", "actualValue": 41.7, "targetValue": 0.0,
       "deviceInfo": {"device": "samsung", "arch": "SM-S928B", "os": "Android 14",
                      "totalMem": 12000000000, "availMem": 5000000000}}

  Metrics: ``avg_inference_latency(ms)`` (mean of 50 ``forward`` calls after 10 warm-ups),
  ``trimmean_inference_latency(ms)`` (mean of the middle 80% of the sorted samples), ``model_load_time(ms)``,
  ``ram_pss_usage(mb)`` (PSS growth, MB) and ``load_status`` (0 = loaded, else an ExecuTorch error code).
  The unit is the metric name's parenthesised suffix. The app splits the file name with a greedy regex, so
  ``repvit_m0_9_504_qnn_int8_int4`` arrives as name ``repvit_m0_9_504_qnn``, backend ``int8``, quantization
  ``int4``: we re-join the three and split again with :func:`split_pte_stem`.

* **iOS benchmark** (XCTest), lines of the test log such as::

      Test Case '-[GenericTests test_forward_repvit_m0_9_504_coreml_fp16_pte_iOS_17_2_1_iPhone15_4]' measured
      [Clock Monotonic Time, s] average: 0.0381, relative standard deviation: 1.2%, values: [...], ...

  One line per test and XCTest metric: ``Clock Monotonic Time, s`` (seconds per block) and, from
  ``XCTMemoryMetric``, ``Memory Physical, kB`` and ``Memory Peak Physical, kB``. The test name is
  ``test_<method>_<file>_<device>``: method ``load`` (Module load + ``load_forward``) or ``forward`` (20
  measured ``forward`` calls) in the stock app (an added test such as ``track`` is read the same way);
  ``<file>`` is the .pte file name with every punctuation character (``.``, ``-``, ``,`` ...) replaced by
  ``_`` (``repvit_m0_9_504_coreml_fp16.pte`` -> ``..._fp16_pte``); ``<device>`` is
  ``<systemName>_<version>_<machine>`` cleaned the same way (``iOS_17.2.1_iPhone15,4`` -> ``iOS_17_2_1_iPhone15_4``).
  Every other line is noise and skipped.

Malformed input raises :class:`~sam3m4.errors.DataFormatError` with one line naming the file and the
field (``results.json: [3].benchmarkModel.name: missing``) or the line (``ios.log:12: average: ...``). So does
an impossible number (:data:`PLAUSIBLE`: a time <= 0, a negative memory figure, a load status that is not an
ExecuTorch error code) and a second value for the same .pte, device, method and metric in one import
(:func:`check_one_value_each`: two files of the same run are refused, never silently merged).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sam3m4.errors import DataFormatError
from sam3m4.fileio import check_regular_file, read_regular_bytes
from sam3m4.results import schema
from sam3m4.schemas.device import DEVICE_MEMORY_BYTES, MAX_FPS, PLAUSIBLE

BACKENDS = ("coreml", "qnn", "xnnpack")
QUANTS = ("fp16", "int4", "int8_int4", "qat_int4", "qat_int8_int4")
MAX_RESULT_BYTES = 64 * 2**20  # a benchmark app's result file is KBs; beyond this it is not one
_STEM = re.compile(r"^(?P<model>\w+?)_(?P<backend>%s)_(?P<quant>%s)$" % (
    "|".join(BACKENDS), "|".join(sorted(QUANTS, key=len, reverse=True))))
_IOS_LINE = re.compile(r"Test Case\s+'-\[(?P<cls>[\w.]+)\s+(?P<test>[\w+]+)\]'\s+measured\s+"
                       r"\[(?P<metric>[^\]]+)\]\s+average:\s*(?P<value>[^,\s]*),")
_IOS_TEST = re.compile(r"^test_(?P<method>[a-z]+)_(?P<stem>\w+?)_pte_(?P<os>iOS|iPadOS|macOS)_(?P<rest>\w+)$")


# What a possible value is, per benchmark-app metric (the ones turned into Stage 5 metrics): declared with the file
# schema in sam3m4.schemas.device (a time in [10 us, 1 h], a memory figure in [0, 1 TiB], an error code).
_MEMORY = ">= 0 (a memory figure)"


def check_plausible(metric: str, value: float, where: str) -> None:
    """DataFormatError ``<where>: <metric> must be > 0 (a time), got -41.7`` for an impossible value (and
    ``must be in [0.01, 3.6e+06] ms (a time, ...)`` for a 1e-6 ms step or a 1e306 s average)."""
    rule = PLAUSIBLE.get(metric)
    problem = rule.problem(value) if rule is not None else None
    if problem is not None:
        raise DataFormatError(f"{where}: {metric} {problem}, got {value!r}")


def split_pte_stem(stem: str) -> tuple[str, str, str] | None:
    """``"repvit_m0_9_504_qnn_int8_int4"`` -> ``("repvit_m0_9_504", "qnn", "int8_int4")``; None if not that form."""
    m = _STEM.match(stem)
    return (m["model"], m["backend"], m["quant"]) if m else None


@dataclass(frozen=True)
class DeviceResult:
    """One metric of one .pte measured on one device, as the benchmark app reported it."""

    model: str
    """Model part of the .pte name (``repvit_m0_9_504``; a tracker's contains ``track``)."""
    backend: str
    """``coreml``, ``qnn`` or ``xnnpack``."""
    quant: str
    """One of :data:`QUANTS`."""
    platform: str
    """``android`` or ``ios`` (the app that measured it)."""
    device: str
    """Device: ``samsung SM-S928B`` (Android brand + model) or ``iPhone15,4`` (iOS machine id)."""
    os: str
    """``Android 14``, ``iOS 17.2.1``."""
    method: str
    """What was timed: ``forward`` (inference; Android reports its load time here too), ``load`` (iOS load test),
    or another iOS test method (``track`` in an app test that runs the tracker method)."""
    metric: str
    """The app's metric name: ``trimmean_inference_latency(ms)``, ``Clock Monotonic Time, s`` ..."""
    value: float
    """The number as reported, in ``unit``."""
    unit: str
    """``ms``, ``MB``, ``s``, ``kB``, or ``""`` (``load_status``)."""
    source: str
    """The file it came from, as given."""
    location: str
    """Where in ``source``: ``[3]`` (index in the JSON list) or ``line 12``."""

    @property
    def pte_name(self) -> str:
        """``<model>_<backend>_<quant>.pte``."""
        return f"{self.model}_{self.backend}_{self.quant}.pte"

    @property
    def where(self) -> str:
        """``file [3]`` / ``file line 12``, for messages and notes."""
        return f"{self.source} {self.location}"


# --- Android minibench JSON ------------------------------------------------------------------------
def _field(obj: dict, key: str, where: str, kind: type = str):
    """``obj[key]`` checked to be ``kind`` (``str``, ``dict``; ``float`` accepts int and float, never bool)."""
    if key not in obj:
        raise DataFormatError(f"{where}.{key}: missing")
    value = obj[key]
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataFormatError(f"{where}.{key}: expected a number, got {repr(value)[:60]}")
        if not math.isfinite(value):
            raise DataFormatError(f"{where}.{key}: expected a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, kind):
        want, got = ("an object", "") if kind is dict else ("a string", f" {repr(value)[:60]}")
        raise DataFormatError(f"{where}.{key}: expected {want}, got {type(value).__name__}{got}")
    if kind is str and key in ("name", "metric", "device", "os") and not value.strip():
        raise DataFormatError(f"{where}.{key}: empty")
    return value


def _unit_of(metric: str) -> str:
    m = re.search(r"\(([^)]*)\)\s*$", metric)
    unit = m.group(1) if m else ""
    return {"mb": "MB", "kb": "kB", "gb": "GB"}.get(unit.lower(), unit)


def parse_android_results(path: str | Path) -> list[DeviceResult]:
    """Rows of an Android minibench ``benchmark_results.json`` (format in the module docstring)."""
    name = str(path)
    try:
        text = read_regular_bytes(path, MAX_RESULT_BYTES).decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{name}: not UTF-8 text (byte {err.start})") from None
    try:
        data = json.loads(text)  # NaN / Infinity are refused per field below (actualValue: expected a finite number)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{name}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise DataFormatError(f"{name}: invalid JSON: nested too deeply") from None
    except ValueError as err:  # an integer of more than 4300 digits
        raise DataFormatError(f"{name}: invalid JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(data, list):
        raise DataFormatError(f"{name}: expected a JSON list of benchmark results, got {type(data).__name__}")
    if not data:
        raise DataFormatError(f"{name}: no benchmark results (empty list)")
    rows = []
    for i, entry in enumerate(data):
        where = f"{name}: [{i}]"
        if not isinstance(entry, dict):
            raise DataFormatError(f"{where}: expected an object, got {type(entry).__name__}")
        bm = _field(entry, "benchmarkModel", where, dict)
        parts = [_field(bm, k, f"{where}.benchmarkModel") for k in ("name", "backend", "quantization")]
        metric = _field(entry, "metric", where)
        value = _field(entry, "actualValue", where, float)
        check_plausible(metric, value, f"{where}.actualValue")
        if "targetValue" in entry:
            _field(entry, "targetValue", where, float)
        info = _field(entry, "deviceInfo", where, dict)
        device, os_ = (_field(info, k, f"{where}.deviceInfo") for k in ("device", "os"))
        arch = _field(info, "arch", f"{where}.deviceInfo") if "arch" in info else ""
        for key in ("totalMem", "availMem"):
            if key in info and not 0 <= _field(info, key, f"{where}.deviceInfo", float) <= DEVICE_MEMORY_BYTES:
                raise DataFormatError(f"{where}.deviceInfo.{key}: must be {_MEMORY} and at most 1 TiB, "
                                      f"got {info[key]!r}")
        stem = "_".join(p for p in parts if p)
        split = split_pte_stem(stem)
        if split is None:
            raise DataFormatError(f"{where}.benchmarkModel: {stem!r} is not <model>_<backend>_<quant> with backend "
                                  f"in {'|'.join(BACKENDS)} and quant in {'|'.join(QUANTS)}")
        label = f"{device} {arch}" if arch and arch.lower() not in device.lower() else device
        rows.append(DeviceResult(*split, platform="android", device=label, os=os_, method="forward", metric=metric,
                                 value=value, unit=_unit_of(metric), source=name, location=f"[{i}]"))
    return rows


# --- iOS XCTest log --------------------------------------------------------------------------------
def _ios_device(os_name: str, rest: str) -> tuple[str, str]:
    """``("iOS", "17_2_1_iPhone15_4")`` -> ``("iPhone15,4", "iOS 17.2.1")``."""
    tokens = rest.split("_")
    n = 0
    while n < len(tokens) and tokens[n].isdigit():
        n += 1
    version = ".".join(tokens[:n])
    machine = ",".join(tokens[n:]) or "unknown device"
    return machine, f"{os_name} {version}".strip()


def parse_ios_log(path: str | Path) -> list[DeviceResult]:
    """Rows of an iOS benchmark XCTest log (format in the module docstring); other lines are skipped."""
    name = str(path)
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            if "Test Case" not in line or " measured [" not in line:
                continue
            where = f"{name}:{lineno}"
            m = _IOS_LINE.search(line)
            if m is None:
                raise DataFormatError(f"{where}: malformed XCTest measurement, expected \"Test Case '-[Class "
                                      "test_...]' measured [Metric, unit] average: X,\"")
            try:
                value = float(m["value"])
            except ValueError:
                raise DataFormatError(f"{where}: average: expected a number, got {m['value']!r}") from None
            if not math.isfinite(value):
                raise DataFormatError(f"{where}: average: expected a finite number, got {m['value']!r}")
            check_plausible(m["metric"].strip(), value, f"{where}: average")
            t = _IOS_TEST.match(m["test"])
            if t is None:
                raise DataFormatError(f"{where}: test name {m['test']!r} is not test_<method>_<file>_pte_<device>")
            split = split_pte_stem(t["stem"])
            if split is None:
                raise DataFormatError(f"{where}: .pte name {t['stem']!r} is not <model>_<backend>_<quant> with "
                                      f"backend in {'|'.join(BACKENDS)} and quant in {'|'.join(QUANTS)}")
            metric = m["metric"].strip()
            unit = metric.rsplit(",", 1)[1].strip() if "," in metric else ""
            device, os_ = _ios_device(t["os"], t["rest"])
            rows.append(DeviceResult(*split, platform="ios", device=device, os=os_, method=t["method"], metric=metric,
                                     value=value, unit=unit, source=name, location=f"line {lineno}"))
    if not rows:
        raise DataFormatError(f"{name}: no XCTest measurement lines "
                              "(\"Test Case '-[...]' measured [...] average: X,\")")
    return rows


def parse_results_file(path: str | Path) -> list[DeviceResult]:
    """Android JSON (``.json``, or text starting with ``[`` or ``{``) or else an iOS XCTest log."""
    path = Path(path)
    if not path.is_file() and not os.path.lexists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        check_regular_file(path)  # a FIFO would block the read below forever
        if os.path.getsize(path) > MAX_RESULT_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_RESULT_BYTES // 2**20} MB (not a benchmark result file)")
    except OSError as err:
        raise DataFormatError(f"{path}: {err.strerror or err}") from None
    with open(path, encoding="utf-8", errors="replace") as handle:
        head = handle.read(256).lstrip()
    if path.suffix.lower() == ".json" or head.startswith(("[", "{")):
        return parse_android_results(path)
    return parse_ios_log(path)


# --- rows -> Stage 5 metrics -----------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceMetric:
    """One Stage 5 number derived from a :class:`DeviceResult` (``value`` in ``unit``)."""

    subject: str
    """``<platform>/<backend>/<quant>``, e.g. ``android/qnn/int8_int4``."""
    metric: str
    """``image_latency_ms``, ``video_fps``, ``track_step_ms``, ``load_ms``, ``memory_mb``, ``track_load_ms``,
    ``track_memory_mb`` or ``load_status`` (non-zero only: the .pte failed to load on the device)."""
    value: float | None
    """None when the measurement failed (:attr:`failed_stage`)."""
    unit: str
    row: DeviceResult
    """The measurement it comes from (its .pte, device, file and location)."""
    failed_stage: str | None = None
    """``load`` when the .pte failed to load on the device (then ``value`` is None); else None."""


def _pick(rows: list[DeviceResult], *wanted: tuple[str, str]) -> DeviceResult | None:
    """The last row with the first (role, metric) pair of ``wanted`` that is present (role: ``run`` or ``load``)."""
    for role, metric in wanted:
        found = [r for r in rows if ("load" if r.method == "load" else "run") == role and r.metric == metric]
        if found:
            return found[-1]
    return None


def is_tracker(row: DeviceResult) -> bool:
    """True for the video tracker's step: a .pte whose model name contains ``track`` (a tracker-only export), or
    an iOS test method containing ``track`` (``test_track_<file>_pte_...``, an app test running the ``track``
    method of the combined .pte). The stock apps time only ``forward``, so one of the two is needed for fps."""
    return "track" in row.model or "track" in row.method


def check_one_value_each(rows: list[DeviceResult]) -> None:
    """One value per .pte, platform, device, OS, method and metric among the rows of one import, else a
    DataFormatError naming both places: two files (or a file twice) measuring the same .pte on the same device
    are refused rather than letting one silently win. Import the one you mean; a later ``device import`` into
    the same run replaces the earlier records, and says so."""
    seen: dict[tuple, DeviceResult] = {}
    for r in rows:
        key = (r.platform, r.pte_name, r.device, r.os, r.method, r.metric)
        if key in seen:
            first = seen[key]
            raise DataFormatError(f"{r.where}: {r.metric} of {r.pte_name} on {r.device} ({r.os}) was already given "
                                  f"by {first.where}: one value per .pte, device and metric in an import; "
                                  "import one of the two")
        seen[key] = r


def device_metrics(rows: list[DeviceResult]) -> list[DeviceMetric]:
    """Stage 5 metrics of parsed rows: latency in ms, fps, load ms, memory MB; one .pte per subject and kind.

    Rows of the video tracker's step (:func:`is_tracker`): their latency becomes ``video_fps``
    (1000 / step ms) and ``track_step_ms``, their load and memory ``track_load_ms`` / ``track_memory_mb``.
    Other rows are the image path: ``image_latency_ms`` (Android trimmean, else average; iOS forward clock
    x 1000), ``load_ms`` and ``memory_mb`` (Android PSS growth; iOS peak physical memory / 1024).
    A non-zero ``load_status`` (the .pte did not load) gives ``load_status`` and the gated metric
    (``image_latency_ms`` or ``video_fps``) with no value and ``failed_stage="load"``: a latency reported
    for a program that did not load is not used. Rows go through :func:`check_one_value_each` first.
    """
    for r in rows:  # the parsers check these already; rows built by hand are checked here
        if not math.isfinite(r.value):
            raise DataFormatError(f"{r.where}: {r.metric}: expected a finite number, got {r.value!r}")
        check_plausible(r.metric, r.value, r.where)
    check_one_value_each(rows)
    groups: dict[tuple, list[DeviceResult]] = {}
    for r in rows:
        groups.setdefault((r.platform, r.backend, r.quant, r.model, r.device, r.os, is_tracker(r)), []).append(r)
    out: list[DeviceMetric] = []
    seen: dict[tuple[str, bool], DeviceResult] = {}
    for (platform, backend, quant, _, _, _, track), rs in groups.items():
        subject, first = f"{platform}/{backend}/{quant}", rs[0]
        if (subject, track) in seen:
            other = seen[(subject, track)]
            raise DataFormatError(f"{subject}: two {'tracker' if track else 'image'} results, {other.pte_name} on "
                                  f"{other.device} ({other.where}) and {first.pte_name} on {first.device} "
                                  f"({first.where}); import one model and one device per run")
        seen[(subject, track)] = first
        status = _pick(rs, ("run", "load_status"))
        failed = status is not None and status.value != 0
        if failed:
            out.append(DeviceMetric(subject, "load_status", status.value, "", status))
            out.append(DeviceMetric(subject, schema.VIDEO_FPS if track else schema.IMAGE_LATENCY_MS, None,
                                    "fps" if track else "ms", status, failed_stage="load"))
        latency = _pick(rs, ("run", "trimmean_inference_latency(ms)"), ("run", "avg_inference_latency(ms)"),
                        ("run", "Clock Monotonic Time, s"))
        load = _pick(rs, ("run", "model_load_time(ms)"), ("load", "Clock Monotonic Time, s"))
        memory = _pick(rs, ("run", "ram_pss_usage(mb)"), ("run", "Memory Peak Physical, kB"),
                       ("load", "Memory Peak Physical, kB"))
        prefix = "track_" if track else ""
        if latency is not None and not failed:
            ms = _to(latency, "ms")
            if track:
                if not 0 < 1000.0 / ms <= MAX_FPS:  # check_plausible bounds the step; the rate is checked too
                    raise DataFormatError(f"{latency.where}: {latency.metric}: tracker step time {ms!r} ms is no rate")
                out.append(DeviceMetric(subject, schema.VIDEO_FPS, 1000.0 / ms, "fps", latency))
                out.append(DeviceMetric(subject, "track_step_ms", ms, "ms", latency))
            else:
                out.append(DeviceMetric(subject, schema.IMAGE_LATENCY_MS, ms, "ms", latency))
        if load is not None:
            out.append(DeviceMetric(subject, prefix + "load_ms", _to(load, "ms"), "ms", load))
        if memory is not None:
            out.append(DeviceMetric(subject, prefix + "memory_mb", _to(memory, "MB"), "MB", memory))
    return out


_SCALE = {("s", "ms"): 1000.0, ("ms", "ms"): 1.0, ("MB", "MB"): 1.0, ("kB", "MB"): 1 / 1024, ("GB", "MB"): 1024.0}


def _to(row: DeviceResult, unit: str) -> float:
    if (row.unit, unit) not in _SCALE:
        raise DataFormatError(f"{row.where}: {row.metric}: unit {row.unit!r} cannot be converted to {unit}")
    return row.value * _SCALE[(row.unit, unit)]

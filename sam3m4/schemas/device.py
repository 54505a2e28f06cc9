"""ExecuTorch benchmark-app result files (:mod:`sam3m4.device.results`) and what a plausible device figure is.

Android minibench ``benchmark_results.json`` is a JSON list of :class:`AndroidResult`; the iOS XCTest log is
text (one ``Test Case ... measured [Metric, unit] average: X,`` line a measurement) and is parsed line by line.
Every value then has to be plausible for its metric (:data:`PLAUSIBLE`): a time between 10 us and one hour
(a 1e-6 ms step would read as 1e9 fps; 1e306 s overflows when turned into ms), a memory figure between 0 and
1 TiB, a load status an ExecuTorch error code.
"""

from __future__ import annotations

from dataclasses import dataclass

from sam3m4.schemas._base import External, Finite, NonEmpty, NonNeg, Text


class BenchmarkModel(External):
    name: NonEmpty
    """The .pte stem as the app split it (re-joined with backend and quantization)."""
    backend: Text
    quantization: Text


class DeviceInfo(External):
    device: NonEmpty
    os: NonEmpty
    arch: Text = ""
    totalMem: NonNeg | None = None  # noqa: N815  (the app's key)
    availMem: NonNeg | None = None  # noqa: N815


class AndroidResult(External):
    """One metric of one .pte: ``{benchmarkModel, metric, actualValue, targetValue?, deviceInfo}``."""

    benchmarkModel: BenchmarkModel  # noqa: N815
    metric: NonEmpty
    """``avg_inference_latency(ms)``, ``trimmean_inference_latency(ms)``, ``model_load_time(ms)``,
    ``ram_pss_usage(mb)``, ``load_status``; the unit is the parenthesised suffix."""
    actualValue: Finite  # noqa: N815
    targetValue: Finite | None = None  # noqa: N815
    deviceInfo: DeviceInfo  # noqa: N815


AndroidResults = list[AndroidResult]


@dataclass(frozen=True)
class Plausible:
    """What a value of a metric may be: of the sign ``sign`` (``> 0``, ``>= 0``) and in ``[low, high]`` ``unit``."""

    what: str
    """``a time``, ``a memory figure``, ``an ExecuTorch error code``."""
    sign: str
    low: float
    high: float
    unit: str
    integer: bool = False

    def problem(self, value: float) -> str | None:
        """None when ``value`` is plausible, else what it must be (``must be > 0 (a time)``)."""
        positive = value > 0 if self.sign == "> 0" else value >= 0
        if not positive or (self.integer and value != int(value)):
            return f"must be {'an integer ' if self.integer else ''}{self.sign} ({self.what})"
        if not self.low <= value <= self.high:
            return f"must be in [{self.low:g}, {self.high:g}] {self.unit} ({self.what}, no device measures outside)"
        return None


# a time: at least 10 us (nothing on a phone runs a network forward faster), at most an hour
_MS = Plausible("a time", "> 0", 0.01, 3_600_000.0, "ms")
_S = Plausible("a time", "> 0", 1e-5, 3600.0, "s")
_MB = Plausible("a memory figure", ">= 0", 0.0, 1024.0 ** 2, "MB")
_KB = Plausible("a memory figure", ">= 0", 0.0, 1024.0 ** 3, "kB")
_CODE = Plausible("an ExecuTorch error code", ">= 0", 0.0, 65535.0, "", integer=True)
PLAUSIBLE = {
    "avg_inference_latency(ms)": _MS, "trimmean_inference_latency(ms)": _MS, "model_load_time(ms)": _MS,
    "ram_pss_usage(mb)": _MB, "load_status": _CODE,
    "Clock Monotonic Time, s": _S, "Memory Physical, kB": _KB, "Memory Peak Physical, kB": _KB,
}
"""Benchmark-app metric -> the values a real measurement has."""
MAX_FPS = 100_000.0
"""A tracker rate above this (a step under 10 us) is not a measurement."""
DEVICE_MEMORY_BYTES = 2.0 ** 40
"""``deviceInfo.totalMem`` / ``availMem`` at most 1 TiB."""

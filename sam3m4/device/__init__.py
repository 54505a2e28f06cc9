"""On-device results: import what ExecuTorch's benchmark apps measured on a phone into the results store.

    sam3m4 device import benchmark_results.json ios_benchmark.log --pte-dir outputs/export --run demo

:mod:`.results` reads the two formats (Android minibench ``benchmark_results.json``, iOS XCTest log lines)
into :class:`~sam3m4.device.results.DeviceResult` rows and turns them into Stage 5 metrics;
:mod:`.match` finds the ``<model>_<backend>_<quant>.pte`` each row measured and checks its sha256;
:mod:`.cli` records ``image_latency_ms``, ``video_fps``, ``load_ms`` and ``memory_mb`` under stage
``stage5``, subject ``<platform>/<backend>/<quant>`` (``android/qnn/int8_int4``).
"""

from sam3m4.device.match import DeviceMatchError, PteMatch, match_pte
from sam3m4.device.results import (BACKENDS, QUANTS, DeviceMetric, DeviceResult, device_metrics, is_tracker,
                                   parse_android_results, parse_ios_log, parse_results_file, split_pte_stem)

__all__ = ["BACKENDS", "QUANTS", "DeviceMatchError", "DeviceMetric", "DeviceResult", "PteMatch", "device_metrics",
           "is_tracker", "match_pte", "parse_android_results", "parse_ios_log", "parse_results_file", "split_pte_stem"]

"""Core ML: which device each operation of a ``.pte``'s Core ML partitions would run on (``MLComputePlan``).

    partitions = coreml_partitions("outputs/export/sam3m4_tiny_coreml_int4.pte", tmp_dir)   # any OS
    share = ane_share("outputs/export/sam3m4_tiny_coreml_int4.pte")                       # macOS 14.4+ only

The partitions are pulled out of the ``.pte`` with ExecuTorch's own ``extract_coreml_models`` (this works on
any OS). ``MLComputePlan`` (coremltools 9) asks Core ML for the preferred compute device of every MLProgram
operation under ``CPU_AND_NE``; it exists only on macOS 14.4+, so elsewhere :func:`ane_share` raises
:class:`ComputePlanUnavailable` with the reason. The per-op analysis is ExecuTorch's
``examples/apple/coreml/scripts/coreml_compute_plan.analyze_one`` (multifunction packages analysed function by
function). Written against that script; it cannot run on this project's Linux host, so it is untested here.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from collections import Counter
from pathlib import Path


class ComputePlanUnavailable(RuntimeError):
    """MLComputePlan cannot run on this host (not macOS 14.4+)."""


def coreml_partitions(pte_path: str | Path, out_dir: str | Path) -> list[Path]:
    """The Core ML models (``.mlpackage``) delegated inside ``pte_path``, written under ``out_dir``."""
    from executorch.examples.apple.coreml.scripts.extract_coreml_models import extract_coreml_models

    return [Path(p) for p in extract_coreml_models(Path(pte_path).read_bytes(), out_dir=out_dir)]


def compute_plan_available() -> tuple[bool, str]:
    if sys.platform != "darwin":
        return False, f"MLComputePlan needs macOS 14.4+ (this host: {platform.system()})"
    major, minor = (int(x) for x in (platform.mac_ver()[0].split(".") + ["0"])[:2])
    if (major, minor) < (14, 4):
        return False, f"MLComputePlan needs macOS 14.4+ (this host: macOS {platform.mac_ver()[0]})"
    return True, ""


def ane_share(pte_path: str | Path) -> dict:
    """ANE share of the planned operations of every Core ML partition in ``pte_path`` (``CPU_AND_NE``).

    Returns ``{"ane_ops": n, "ops": n, "share": ane_ops / ops, "partitions": k, "non_ane": {op type: count}}``.
    """
    ok, why = compute_plan_available()
    if not ok:
        raise ComputePlanUnavailable(why)
    import coremltools as ct
    from executorch.examples.apple.coreml.scripts.coreml_compute_plan import analyze_one

    devices, non_ane = Counter(), Counter()
    with tempfile.TemporaryDirectory() as tmp:
        parts = coreml_partitions(pte_path, tmp)
        for part in parts:
            for _, op_name, device in analyze_one(str(part), ct.ComputeUnit.CPU_AND_NE):
                devices[device] += 1
                if device != "ANE":
                    non_ane[op_name] += 1
    total = sum(devices.values())
    return {"ane_ops": devices["ANE"], "ops": total, "share": devices["ANE"] / total if total else 0.0,
            "partitions": len(parts), "non_ane": dict(non_ane)}

"""Facts about where a run happens (host, accelerator, library versions, git commit) and byte formatting.

Used by the Markdown report's header, the pytest-html environment table and every record's provenance line, so
all say the same. A low layer: imports nothing from sam3m4.
Nothing here imports torch at module import time; every probe is cheap and never touches the network.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from functools import lru_cache

PACKAGES = ("torch", "torchvision", "executorch", "torchao", "coremltools", "transformers", "timm",
            "open-clip-torch", "pycocotools", "numpy", "pandas", "pytest", "pytest-html", "sam3m4")


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve")
"""CPU flags (``/proc/cpuinfo``) of int8 dot-product instructions: x86 VNNI / AMX, ARM dotprod / i8mm / SVE.
Without one, XNNPACK's int8 kernels multiply through 16-bit lanes and are no faster than fp32 FMA."""


def int8_dot_isa(cpuinfo: str | None = None) -> str:
    """The CPU's int8 dot-product instructions (``avx512_vnni``, ``asimddp i8mm``), or ``none (avx2 only)``.

    ``cpuinfo``: the text of ``/proc/cpuinfo`` (default: read it; on macOS, Apple silicon has dotprod and i8mm
    from M2 on, reported from ``sysctl``)."""
    if cpuinfo is None and platform.system() == "Darwin":
        found = [f for f, key in (("asimddp", "hw.optional.arm.FEAT_DotProd"), ("i8mm", "hw.optional.arm.FEAT_I8MM"))
                 if _sysctl(key) == "1"]
        return " ".join(found) or "none"
    flags = _cpu_flags(cpuinfo)
    if flags is None:
        return "unknown"
    found = [f for f in INT8_DOT_FLAGS if f in flags]
    if found:
        return " ".join(found)
    best = next((f for f in ("avx512bw", "avx2", "asimd", "sse4_1") if f in flags), "")
    return f"none ({best} only)" if best else "none"


def _cpu_flags(cpuinfo: str | None) -> set[str] | None:
    """The ``flags`` / ``Features`` of ``cpuinfo`` (default: ``/proc/cpuinfo``); None when it cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpuinfo = handle.read()
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[1].split())
    return flags


def _sysctl(key: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                "avx_vnni", "amx_bf16", "amx_int8", "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")
"""The instruction sets that decide which float / int8 kernels oneDNN, MKL and XNNPACK pick: two hosts with
the same code, seed and library versions give bit-identical numbers when these agree, and numbers that differ
by float rounding when they do not (e.g. AVX-512 / AMX vs AVX2)."""


def vector_isa(cpuinfo: str | None = None) -> str:
    """The CPU's vector instruction sets among :data:`VECTOR_FLAGS`, e.g. ``avx2 fma avx512f avx512bw``;
    ``unknown`` when ``/proc/cpuinfo`` cannot be read (macOS: from ``sysctl``, as :func:`int8_dot_isa`)."""
    if cpuinfo is None and platform.system() == "Darwin":
        found = ["asimd"] + [f for f, key in (("asimddp", "hw.optional.arm.FEAT_DotProd"),
                                              ("i8mm", "hw.optional.arm.FEAT_I8MM"),
                                              ("bf16", "hw.optional.arm.FEAT_BF16")) if _sysctl(key) == "1"]
        return " ".join(found) if platform.machine() == "arm64" else "unknown"
    flags = _cpu_flags(cpuinfo)
    if flags is None:
        return "unknown"
    return " ".join(f for f in VECTOR_FLAGS if f in flags) or "none"


def host_summary() -> str:
    """``Linux x86_64, AMD EPYC 7B13, 2 cores, ISA avx2 fma avx512f ...`` (or macOS arm64 ...): the CPU model
    and its vector instruction sets (:func:`vector_isa`), which decide float rounding across hosts."""
    system = "macOS " + platform.mac_ver()[0] if platform.system() == "Darwin" else platform.system()
    return f"{system} {platform.machine()}, {cpu_name()}, {os.cpu_count()} cores, ISA {_vector_isa_cached()}"


@lru_cache(maxsize=1)
def _vector_isa_cached() -> str:
    return vector_isa()


@lru_cache(maxsize=1)
def accelerator() -> str:
    """``cuda (NVIDIA H100 ...)``, ``mps`` or ``none (CPU only)``."""
    try:
        import torch
    except ImportError:
        return "unknown (torch not installed)"
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps (Apple GPU)"
    return "none (CPU only)"


def git_commit(cwd: str | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=5, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip() or "unknown (no commit)"
    return sha + ("+dirty" if dirty.stdout.strip() else "")


def environment_line() -> str:
    """One line for the report header: host / accelerator / torch / executorch."""
    return (f"{host_summary()} / accelerator: {accelerator()} / torch {package_version('torch')} / "
            f"executorch {package_version('executorch')}")


def metadata() -> dict[str, str]:
    """Environment table for pytest-html and run manifests."""
    meta = {"Host": host_summary(), "Accelerator": accelerator(), "Python": platform.python_version(),
            "Git commit": git_commit()}
    meta.update({name: package_version(name) for name in PACKAGES})
    return meta


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KB``, ``3.2 MB`` ... (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"

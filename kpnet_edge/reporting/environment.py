"""The machine and the tool versions a report's numbers were measured with."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

from kpnet_edge import __version__

TOOLS = ("numpy", "opencv-python-headless", "opencv-python", "torch", "onnxruntime", "openvino",
         "ai-edge-litert", "nncf", "matplotlib")


def machine() -> dict:
    """CPU model, logical cores and those this process may use, OS, Python, load averages (other
    work on the machine slows every model alike but widens the spread of the timings)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "simd": simd_extensions(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
              "asimddp", "i8mm", "sve")
"""CPU extensions that decide how fast int8 and float kernels run (x86 flags, Arm features): the
same model's INT8 gain over FP32 differs several-fold between a CPU with VNNI and one without."""


def simd_extensions() -> list[str]:
    """Which of SIMD_FLAGS this CPU has (from /proc/cpuinfo; empty where it cannot be read)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in SIMD_FLAGS if flag in present]
    return []


def summary() -> str:
    """One line naming the machine for a benchmark's result file: CPU model, its SIMD extensions,
    logical cores and the load average now."""
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{_cpu_model()} ({', '.join(simd_extensions()) or 'SIMD unknown'}), {os.cpu_count()} cores{load}"


def tool_versions() -> dict[str, str]:
    """kpnet-edge and the installed version of each of TOOLS (absent ones left out)."""
    versions = {"kpnet-edge": __version__}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()

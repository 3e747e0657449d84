"""The machine and the tool versions a report's numbers were measured with."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

from kpnet_edge import __version__

CPUINFO = Path("/proc/cpuinfo")
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


def simd_extensions(cpuinfo: Path = CPUINFO) -> list[str]:
    """Which of SIMD_FLAGS this CPU has, from the `flags` (x86) or `Features` (Arm) line of
    `cpuinfo`; empty where it cannot be read."""
    present = set((_cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())
    return [flag for flag in SIMD_FLAGS if flag in present]


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
    return _cpuinfo_field(("model name",)) or platform.processor() or platform.machine()


def _cpuinfo_field(keys: tuple[str, ...], cpuinfo: Path = CPUINFO) -> str | None:
    """The value of the first line of `cpuinfo` starting with one of `keys`, or None."""
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith(keys):
            return line.split(":", 1)[1].strip()
    return None

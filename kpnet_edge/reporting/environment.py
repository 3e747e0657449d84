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
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


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

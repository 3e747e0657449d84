"""The on-device path (pre-processing, runtimes' interface, post-processor, detector, image I/O,
the detect command's module) imports neither torch nor tensorflow nor nncf."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "tensorflow", "nncf", "keras")
ON_DEVICE = (
    "kpnet_edge.config",
    "kpnet_edge.preprocess",
    "kpnet_edge.postprocess",
    "kpnet_edge.geometry",
    "kpnet_edge.imageio",
    "kpnet_edge.detector",
    "kpnet_edge.drawing",
    "kpnet_edge.runtimes.base",
    "kpnet_edge.commands.detect",
    "kpnet_edge.cli",
)


def test_on_device_modules_import_no_heavy_framework():
    code = (
        "import importlib, sys\n"
        f"for name in {ON_DEVICE!r}: importlib.import_module(name)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"on-device path imported: {result.stdout.strip()}"

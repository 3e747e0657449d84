"""The on-device path (pre-processing, the artefact contract, every runtime adapter and the registry,
post-processor, detector, image I/O, the detect command's module) imports neither torch nor
tensorflow nor anything from converters, quantization, training or reporting."""

from __future__ import annotations

import subprocess
import sys

from kpnet_edge.artifacts import BACKENDS

HEAVY = ("torch", "tensorflow", "nncf", "keras", "litert_torch", "ai_edge_quantizer", "onnx")
OFF_DEVICE = ("kpnet_edge.converters", "kpnet_edge.quantization", "kpnet_edge.training", "kpnet_edge.reporting")
ADAPTERS = tuple(backend.adapter.split(":")[0] for backend in BACKENDS.values())
ON_DEVICE = (
    "kpnet_edge.config",
    "kpnet_edge.artifacts",
    "kpnet_edge.preprocess",
    "kpnet_edge.postprocess",
    "kpnet_edge.quantized_maps",
    "kpnet_edge.geometry",
    "kpnet_edge.imageio",
    "kpnet_edge.detector",
    "kpnet_edge.read_ahead",
    "kpnet_edge.drawing",
    "kpnet_edge.runtimes.base",
    "kpnet_edge.runtimes.tensors",
    "kpnet_edge.runtimes.registry",
    *ADAPTERS,
    "kpnet_edge.commands.detect",
    "kpnet_edge.cli",
)


def test_every_adapter_is_on_the_device_path() -> None:
    assert len(ADAPTERS) == len(BACKENDS) >= 3


def test_on_device_modules_import_no_heavy_framework_and_nothing_off_device() -> None:
    # The adapters import their runtime (onnxruntime, openvino, ai_edge_litert) only when opened.
    code = (
        "import importlib, sys\n"
        f"for name in {ON_DEVICE!r}: importlib.import_module(name)\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        f"off = sorted({{m for m in sys.modules for p in {OFF_DEVICE!r} if m == p or m.startswith(p + '.')}})\n"
        "print(','.join(heavy + off))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"on-device path imported: {result.stdout.strip()}"

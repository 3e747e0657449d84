"""The one table of backends x precisions: for each, the file suffix and layout, the package that
runs it and the adapter class that wraps it, the options `convert` accepts, and the parity
tolerance its file must meet against PyTorch. The CLI, converters, runtimes and report read it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kpnet_edge.errors import KpnetError

PRECISIONS = ("fp32", "fp16", "int8")

OPTION_FLAGS = {"batch": "--batch", "per_tensor": "--per-tensor", "max_drop": "--max-drop"}
"""Per-target options (Python keyword -> CLI flag). Calibration options are common to all targets:
float targets use the calibration images for their parity check."""

# Parity metrics (kpnet_edge/quantization/agreement.py computes them), all "lower is better":
#   max_abs_logit   max |candidate - PyTorch| over both heads' logits (recorded, not bounded).
#   max_rel_logit   max_abs_logit / max(1, largest |PyTorch logit|): float round-off scales with
#                   the values computed, so an absolute bound that fits one model's logits fails a
#                   more confident one's (1e-4 passed logits up to 31 and failed logits up to 89,
#                   both at ~1.3e-6 relative). 1e-5 is ~80 float32 ulps, while a wrong layer errs
#                   by O(1). Since config.SCALE_LOGIT_FLOOR the outputs' magnitude no longer shows
#                   the floored background's: the shipped model measures 1.4e-6 (ONNX), 3.6e-6
#                   (TFLite) and 5.8e-6 (OpenVINO), a thin margin for OpenVINO.
#   keypoint_nme    mean keypoint displacement / proposal side after the scale-adaptive soft-argmax
#                   (Eq. 5-6) in the windows of the top PyTorch scale-map proposals: the landmark
#                   head as the post-processor decodes it.
#   proposal_prob   max |sigmoid(candidate) - sigmoid(PyTorch)| of the scale map at those
#                   proposals: the scale head where detections come from.
# FP32 must match to float round-off. Reduced precisions are judged on what they decode to:
# FP16 within 0.2 % of the face size, INT8 within 1 % (a fraction of a trained detector's own
# landmark error); a proposal's probability may move by 0.01 (FP16) / 0.1 (INT8), against a
# detection threshold of 0.3.
FLOAT_TOLERANCE = {"max_rel_logit": 1e-5}
FP16_TOLERANCE = {"keypoint_nme": 0.002, "proposal_prob": 0.01}
INT8_TOLERANCE = {"keypoint_nme": 0.01, "proposal_prob": 0.1}


@dataclass(frozen=True)
class Backend:
    """One runtime family: how its files are named and laid out, what runs them, where from.

    package: the module whose presence means the backend is installed; extra: the pip extra
    that installs it; adapter / converter: "module:Class" of the runtime adapter and the module
    that exports to it (imported only when used)."""

    name: str
    suffix: str
    layout: str
    runtime: str
    package: str
    extra: str
    adapter: str
    converter: str


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("onnx", ".onnx", "NCHW", "onnxruntime", "onnxruntime", "onnx",
                "kpnet_edge.runtimes.onnxruntime_runtime:OnnxRuntime", "kpnet_edge.converters.onnx_export"),
        Backend("openvino", ".xml", "NCHW", "openvino", "openvino", "openvino",
                "kpnet_edge.runtimes.openvino_runtime:OpenVinoRuntime", "kpnet_edge.converters.openvino_export"),
        Backend("tflite", ".tflite", "NHWC", "ai-edge-litert", "ai_edge_litert", "tflite",
                "kpnet_edge.runtimes.tflite_runtime:TfliteRuntime", "kpnet_edge.converters.tflite_export"),
    )
}
"""Every backend that runs converted files, in the order `detect` prefers them. torch, which runs
the checkpoint itself, is not a row: it has no converted file."""

FORMATS = tuple(BACKENDS)


@dataclass(frozen=True, eq=False)  # one instance per row of TARGETS; compared by identity
class Target:
    """One exportable (backend, precision) pair and everything the toolkit knows about it."""

    backend: Backend
    precision: str
    options: frozenset[str]
    tolerance: Mapping[str, float]

    @property
    def format(self) -> str:
        return self.backend.name

    @property
    def suffix(self) -> str:
        return self.backend.suffix

    @property
    def runtime(self) -> str:
        return self.backend.runtime

    @property
    def layout(self) -> str:
        return self.backend.layout

    @property
    def quantized(self) -> bool:
        """Integer weights calibrated on images (needs --calib)."""
        return self.precision.startswith("int")

    @property
    def key(self) -> str:
        """'format-precision', e.g. 'openvino-int8': the name used on the command line and in reports."""
        return f"{self.format}-{self.precision}"

    def filename(self, batch: int = 1) -> str:
        """Model file name: drnet_<precision>[_b<batch>]<suffix>."""
        tag = f"_b{batch}" if batch != 1 else ""
        return f"drnet_{self.precision}{tag}{self.suffix}"

    def accepts(self, option: str) -> bool:
        return option in self.options


def _target(backend: str, precision: str, options: Iterable[str], tolerance: Mapping[str, float]) -> Target:
    return Target(BACKENDS[backend], precision, frozenset(options), dict(tolerance))


TARGETS: dict[str, Target] = {
    t.key: t
    for t in (
        _target("onnx", "fp32", {"batch"}, FLOAT_TOLERANCE),
        _target("onnx", "int8", {"batch", "per_tensor"}, INT8_TOLERANCE),
        _target("openvino", "fp32", {"batch"}, FLOAT_TOLERANCE),
        _target("openvino", "fp16", {"batch"}, FP16_TOLERANCE),
        _target("openvino", "int8", {"batch", "per_tensor", "max_drop"}, INT8_TOLERANCE),
        _target("tflite", "fp32", (), FLOAT_TOLERANCE),
        _target("tflite", "int8", {"per_tensor"}, INT8_TOLERANCE),
    )
}
"""Every target, keyed 'format-precision'. Without --int8 a format gives its float targets."""


def target(backend: str, precision: str) -> Target | None:
    """The table's row for (backend, precision), None when there is none."""
    return TARGETS.get(f"{backend}-{precision}")


def select_targets(formats: Iterable[str], int8: bool = False) -> list[Target]:
    """Targets for formats (e.g. ['onnx', 'tflite']): each one's float precisions, plus INT8 when
    asked. Raises KpnetError naming the known formats."""
    formats = list(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise KpnetError(f"unknown format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    return [t for t in TARGETS.values() if t.format in formats and (int8 or not t.quantized)]


def check_options(targets: Iterable[Target], options: Mapping[str, object]) -> None:
    """Refuse options (given, i.e. not None/False/1-batch) that none of the targets accepts.

    The message names the option, what each chosen target accepts, and which targets take it.
    """
    targets = list(targets)
    for option, value in options.items():
        if option not in OPTION_FLAGS:
            raise KpnetError(f"unknown option {option!r}; options are {', '.join(OPTION_FLAGS)}")
        if value is None or value is False or (option == "batch" and value == 1):
            continue
        if not any(t.accepts(option) for t in targets):
            accepted = "; ".join(
                f"{t.key} accepts {', '.join(OPTION_FLAGS[o] for o in sorted(t.options)) or 'no options'}"
                for t in targets
            )
            takers = ", ".join(t.key for t in TARGETS.values() if t.accepts(option))
            raise KpnetError(
                f"{OPTION_FLAGS[option]} does not apply here ({accepted}); it applies to {takers}"
            )

"""TFLite backend: the Keras mirror of DRNet (keras_drnet.py) through TFLiteConverter, FP32 or
full-integer INT8 (uint8 raw-pixel input, int8 outputs).
TFLite drops output names and order, so outputs are identified by their channel count."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kpnet_edge import config

if TYPE_CHECKING:
    from kpnet_edge.artifacts import Target
    from kpnet_edge.converters.pipeline import Job

TOOLS = ("tensorflow", "keras", "ai-edge-litert")
_CHANNELS = {config.NUM_SCALES: config.OUTPUT_NAMES[0], config.NUM_LANDMARKS: config.OUTPUT_NAMES[1]}


def export(target: Target, job: Job, batch: int) -> Path:
    """Write job.staging/<target file>; INT8 is calibrated on job.calibration."""
    import tensorflow as tf

    from kpnet_edge.converters.keras_drnet import build_keras_drnet

    converter = tf.lite.TFLiteConverter.from_keras_model(build_keras_drnet(job.model, batch, job.input_size))
    if target.quantized:
        assert job.calibration is not None
        canvases = job.calibration.canvases
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([c[None].astype(np.float32)] for c in canvases)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
        # Private but long-standing switch (TF >= 2.7): one weight scale per tensor, for
        # accelerators that lack per-channel support.
        converter._experimental_disable_per_channel = job.per_tensor
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the whole traced signature
        flatbuffer = converter.convert()
    if target.quantized:
        flatbuffer = pin_raw_pixel_input(flatbuffer)
    path = job.staging / target.filename(batch)
    path.write_bytes(flatbuffer)
    return path


def pin_raw_pixel_input(flatbuffer: bytes) -> bytes:
    """Set the uint8 input's quantization to scale 1, zero point 0, so it takes raw pixels.

    The converter derives the input scale from the calibration images' range (max pixel / 255),
    which is not exactly 1. The uint8 input only feeds a QUANTIZE op that requantizes to the
    first layer's int8 range, so changing its parameters changes no other tensor: pixels beyond
    the calibrated range saturate there, as they would with any INT8 calibration.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    (input_index,) = graph.inputs
    consumers = [op for op in graph.operators if input_index in op.inputs]
    kinds = [flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for op in consumers]
    if kinds != ["QUANTIZE"]:
        raise RuntimeError(f"expected the uint8 input to feed one QUANTIZE op, it feeds {kinds}")
    quantization = graph.tensors[input_index].quantization
    quantization.scale, quantization.zeroPoint = [1.0], [0]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def describe(path: Path) -> dict[str, object]:
    """Input and outputs with their TFLite tensor index and quantization; names by channel count."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))

    def info(detail: dict[str, Any], name: str) -> dict[str, object]:
        scale, zero_point = detail["quantization"]
        dtype = np.dtype(detail["dtype"])
        quantized = dtype.kind in "iu"
        return {
            "name": name,
            "shape": [int(d) for d in detail["shape"]],
            "dtype": dtype.name,
            "layout": "NHWC",
            "index": int(detail["index"]),
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if quantized else None,
        }

    (source,) = interpreter.get_input_details()
    outputs = sorted(interpreter.get_output_details(), key=lambda d: d["index"])
    return {
        "input": info(source, config.INPUT_NAME),
        "outputs": [info(d, _CHANNELS[int(d["shape"][-1])]) for d in outputs],
        "extra_files": [],
    }

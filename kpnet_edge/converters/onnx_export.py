"""ONNX backend: torch.onnx (dynamo) at a fixed opset, one self-contained simplified file; INT8
as ONNX Runtime's static QDQ quantisation of that file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kpnet_edge import config

if TYPE_CHECKING:
    from kpnet_edge.artifacts import Target
    from kpnet_edge.converters.pipeline import Job
    from kpnet_edge.model import DRNet

OPSET = 18
TOOLS = ("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime")


def export(target: Target, job: Job, batch: int) -> Path:
    """Write job.staging/<target file> for a fixed batch; returns its path."""
    path = job.staging / target.filename(batch)
    if target.quantized:
        quantize(job, path, batch)
    else:
        export_onnx(job.model, path, batch, job.input_size)
    return path


def quantize(job: Job, path: Path, batch: int) -> None:
    """Static INT8 of the FP32 export for ONNX Runtime's CPU provider, written to `path`.

    QuantizeLinear / DequantizeLinear pairs around the convolutions (QDQ), uint8 activations and
    int8 weights per output channel (per tensor with job.per_tensor), in 7 bits (reduce_range):
    on x86 CPUs without VNNI, ONNX Runtime multiplies uint8 by int8 with VPMADDUBSW, whose 16-bit
    pair sums saturate with full-range weights (measured on DRNet, AVX2: keypoint NME 0.028 and
    proposal probability 0.24 off the FP32 model, against 0.006 and 0.09 in 7 bits). The layers
    that write the two output maps stay float (0.09 -> 0.03 for 2 ms of 23 there): the scale
    map's logits are thresholded and ranked, so their rounding moves proposals. Activation ranges
    are the calibration set's true min and max, as the TFLite and OpenVINO INT8 targets take them.
    int8 activations (S8S8) would be as accurate but ran slower than FP32 on AVX2; TensorRT
    wants those (symmetric activations), so this file is not meant for its provider.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from kpnet_edge.artifacts import TARGETS
    from kpnet_edge.converters.pipeline import INTERMEDIATE, fill_batches

    assert job.calibration is not None
    work = job.staging / INTERMEDIATE
    work.mkdir(exist_ok=True)
    # The onnx-fp32 target's file of this batch when it was made (targets run onnx-fp32 first).
    float_file = job.onnx_file() if batch == 1 else job.staging / TARGETS["onnx-fp32"].filename(batch)
    if not float_file.exists():
        float_file = work / f"drnet_b{batch}.onnx"
        export_onnx(job.model, float_file, batch, job.input_size)
    prepared = work / f"drnet_b{batch}_prepared.onnx"
    # Constant folding and shape inference first, as onnxruntime.quantization advises; DRNet's
    # shapes are static, so the symbolic pass is not needed.
    quant_pre_process(str(float_file), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(path),
        _CalibrationBatches(fill_batches(job.calibration.canvases, batch), batch),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=not job.per_tensor,
        reduce_range=True,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=output_layers(prepared),
    )


def output_layers(path: Path) -> list[str]:
    """Names of the nodes that write the model's outputs: for each output, its producer and, back
    through element-wise nodes (DRNet clamps its scale logits), the first convolution."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producers = {name: node for node in graph.node for name in node.output}
    names = []
    for output in graph.output:
        node = producers.get(output.name)
        while node is not None:
            names.append(node.name)
            if node.op_type == "Conv":
                break
            node = producers.get(node.input[0])
    return names


class _CalibrationBatches:
    """onnxruntime.quantization's CalibrationDataReader over letterboxed canvases (N, H, W, 3)
    uint8, a multiple of `batch` of them: NCHW float32 raw pixels, `batch` canvases a feed."""

    def __init__(self, canvases: np.ndarray, batch: int) -> None:
        pixels = canvases.transpose(0, 3, 1, 2).astype(np.float32)
        self._feeds = iter(np.split(pixels, len(canvases) // batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        pixels = next(self._feeds, None)
        return None if pixels is None else {config.INPUT_NAME: np.ascontiguousarray(pixels)}


def export_onnx(model: DRNet, path: Path, batch: int = 1, input_size: int = config.INPUT_SIZE) -> None:
    """DRNet -> one .onnx file (weights inside), input (batch, 3, size, size) float32 named
    config.INPUT_NAME, outputs named config.OUTPUT_NAMES, simplified by onnxslim."""
    import onnx
    import onnxslim
    import torch

    pixels = torch.zeros(batch, 3, input_size, input_size)
    # The exporter logs one warning per torchvision op it cannot register; torchvision is not used.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with torch.no_grad():
        program = torch.onnx.export(
            model.eval(),
            (pixels,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[config.INPUT_NAME],
            output_names=list(config.OUTPUT_NAMES),
            external_data=False,
            verbose=False,
        )
    proto = onnxslim.slim(program.model_proto)
    onnx.checker.check_model(proto, full_check=True)
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([config.INPUT_NAME], list(config.OUTPUT_NAMES)):
        raise RuntimeError(f"ONNX export produced tensors named {names}")
    onnx.save_model(proto, str(path), save_as_external_data=False)


def describe(path: Path) -> dict[str, object]:
    """Input and output tensors as the file declares them."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def info(value: onnx.ValueInfoProto) -> dict[str, object]:
        tensor = value.type.tensor_type
        return {
            "name": value.name,
            "shape": [d.dim_value for d in tensor.shape.dim],
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "layout": "NCHW",
        }

    return {"input": info(graph.input[0]), "outputs": [info(o) for o in graph.output], "extra_files": []}

"""ONNX backend: torch.onnx (dynamo) at a fixed opset, one self-contained simplified file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

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
    export_onnx(job.model, path, batch, job.input_size)
    return path


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

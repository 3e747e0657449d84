"""OpenVINO IR backend: converted from the ONNX file; FP32, FP16-compressed weights, or INT8 by
NNCF post-training quantization (optionally accuracy-controlled)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kpnet_edge import config

if TYPE_CHECKING:
    import openvino as ov

    from kpnet_edge.artifacts import Target
    from kpnet_edge.converters.pipeline import Job

TOOLS = ("onnx", "onnxscript", "onnxslim", "openvino", "nncf")

OUTPUT_LAYOUT = "NHWC"
"""Layout of the IR's outputs (the input stays NCHW float). OpenVINO's CPU plugin computes
DRNet's maps channels-last; NCHW outputs made it reorder the 60-channel scale map after every
inference, which took 39 % of the FP32 model's time and more than all INT8 convolutions together
(benchmarks/results/layer_profile.md). The runtime hands NHWC maps on as views and the
post-processor reads them in place."""


def export(target: Target, job: Job, batch: int) -> Path:
    """Write job.staging/<target file> (.xml + .bin); other batches reshape the batch-1 IR."""
    import openvino as ov

    path = job.staging / target.filename(batch)
    if batch != 1:
        model = ov.Core().read_model(job.staging / target.filename(1))
        model.reshape({config.INPUT_NAME: [batch, 3, job.input_size, job.input_size]})
        ov.save_model(model, path, compress_to_fp16=False)  # FP16 weights stay FP16 as read
        return path
    model = ov.convert_model(job.onnx_file())
    if target.quantized:
        model = quantize(model, job)
    ov.save_model(channels_last_outputs(model), path, compress_to_fp16=target.precision == "fp16")
    return path


def channels_last_outputs(model: ov.Model) -> ov.Model:
    """The model with OUTPUT_LAYOUT outputs: a transpose after each head, which the CPU plugin
    folds into the layout it computes in (see OUTPUT_LAYOUT)."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    steps = PrePostProcessor(model)
    for name in config.OUTPUT_NAMES:
        steps.output(name).tensor().set_layout(ov.Layout(OUTPUT_LAYOUT))
        steps.output(name).model().set_layout(ov.Layout("NCHW"))
    return steps.build()


def quantize(model: ov.Model, job: Job) -> ov.Model:
    """NNCF INT8 over the calibration set; with job.max_drop, layers revert to float until the
    agreement score (quantization/agreement.py) on the held-out images drops by at most max_drop."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from kpnet_edge.quantization.agreement import agreement_score

    assert job.calibration is not None
    calibration = nncf.Dataset(list(job.calibration.canvases), _to_pixels)
    # Activation ranges from the calibration set's true min and max, as TFLite's converter takes
    # them. NNCF's default averages each image's extremes, which clips the strongest activations (the
    # faces' own cells): the scale map at proposals then moved by up to 0.117 in probability on the
    # real-photo DRNet and failed parity; with MINMAX, 0.034.
    advanced = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    if job.per_tensor:
        advanced.weights_quantization_params = QuantizationParameters(per_channel=False)
    size = len(job.calibration)
    if job.max_drop is None:
        return nncf.quantize(model, calibration, subset_size=size, advanced_parameters=advanced)

    def validate(compiled: Any, indices: Any) -> tuple[float, list[float]]:
        scores = []
        for index in indices:
            canvas = job.check[index : index + 1]
            result = compiled(_to_pixels(canvas[0]))
            outputs = (result[compiled.output(name)] for name in config.OUTPUT_NAMES)
            scores.append(agreement_score(job.reference(canvas), tuple(outputs)))
        return float(np.mean(scores)), scores

    return nncf.quantize_with_accuracy_control(
        model,
        calibration,
        nncf.Dataset(list(range(len(job.check)))),
        validate,
        max_drop=job.max_drop,
        subset_size=size,
        advanced_quantization_parameters=advanced,
    )


def _to_pixels(canvas: np.ndarray) -> np.ndarray:
    """One canvas (H, W, 3) uint8 -> the model input (1, 3, H, W) float32."""
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)


def describe(path: Path) -> dict[str, object]:
    """Input and output tensors as the IR declares them; the .bin weights as a side file."""
    import openvino as ov

    model = ov.Core().read_model(str(path))

    def info(port: Any, layout: str) -> dict[str, object]:
        return {
            "name": port.get_any_name(),
            "shape": [int(d) for d in port.get_shape()],
            "dtype": port.get_element_type().to_dtype().name,
            "layout": layout,
        }

    return {
        "input": info(model.input(0), "NCHW"),
        "outputs": [info(port, OUTPUT_LAYOUT) for port in model.outputs],
        "extra_files": [path.with_suffix(".bin").name],
    }

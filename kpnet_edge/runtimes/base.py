"""The interface every runtime adapter implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from kpnet_edge.runtimes.tensors import Outputs


class Runtime(Protocol):
    """Runs DRNet on a batch of letterboxed canvases.

    `run` takes RGB uint8 pixels (N, H, W, 3) and returns (scale_logits (N, S, H/2, W/2),
    landmark_logits (N, K, H/2, W/2)) as float32 in NCHW, whatever the backend's own layouts,
    dtypes and output order. With dequantize=False, an output the model itself quantises (a TFLite
    INT8 file's int8 maps) comes back as QuantizedMaps instead, levels plus quantisation, for the
    post-processor to read without a float32 copy; float outputs are float32 either way.
    The outputs belong to the caller: a later `run` never overwrites them (FaceDetector's
    detect_stream(overlap=True) post-processes one batch while the next one runs).
    """

    name: str
    input_size: int
    """Side of the square canvas `run` takes (a converted model's is fixed: its manifest's)."""

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> Outputs: ...

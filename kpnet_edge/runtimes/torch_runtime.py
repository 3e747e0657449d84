"""PyTorch adapter: the FP32 reference, on CPU or CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kpnet_edge import config
from kpnet_edge.checkpoint import load_drnet
from kpnet_edge.errors import KpnetError
from kpnet_edge.model import DRNet


class TorchRuntime:
    """DRNet in PyTorch. device: "cpu", "cuda" or "cuda:N"."""

    name = "torch"

    def __init__(self, model: DRNet, device: str = "cpu") -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise KpnetError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, weights: str | Path | None = None, device: str = "cpu") -> TorchRuntime:
        """Load `weights` (the shipped checkpoint when None)."""
        return cls(load_drnet(weights), device)

    input_size = config.INPUT_SIZE
    """The canvas the detector letterboxes to; DRNet itself takes any multiple of 8."""

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) uint8 RGB -> float32 NCHW (scale_logits, landmark_logits); PyTorch's
        outputs are float, so dequantize changes nothing."""
        pixels = torch.from_numpy(np.ascontiguousarray(canvases)).to(self.device)
        pixels = pixels.permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            scale_logits, landmark_logits = self.model(pixels)
        return scale_logits.float().cpu().numpy(), landmark_logits.float().cpu().numpy()

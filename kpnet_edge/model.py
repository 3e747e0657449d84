"""DRNet, KPNet's ~1M-parameter backbone (paper, "Backbone architecture" and Fig. 3), in PyTorch.

Eleven conv layers: a 3x3 stride-2 stem and a 2x2 max-pool reduce the input 4x, residual blocks
go down to stride 8 (dilated convs widen the receptive field for large faces at no parameter
cost), two nearest-neighbour x2 upsamplings with sum skips come back to stride 4 and 2, and a
large-span concatenation skip from the stem keeps input detail. Two separate 3x3 heads give the
scale-map logits (S channels) and the landmark logits (K channels).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kpnet_edge import config


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convs with a sum skip (1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in, c_out, stride, dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, 1, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.project = None
        if stride != 1 or c_in != c_out:
            self.project = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.project is None else self.project(x)
        return F.relu(self.conv2(self.conv1(x)) + skip)


class DRNet(nn.Module):
    """DRNet: RGB pixels (N, 3, H, W) in [0, 255] -> (scale logits (N, S, H/2, W/2),
    landmark logits (N, K, H/2, W/2)). H and W must be multiples of 8.

    Normalisation is part of the graph, so exported models take raw pixels (uint8 after INT8).
    """

    def __init__(
        self,
        stem: int = 24,
        mid: int = 64,
        deep: int = 160,
        head: int = 32,
        num_scales: int = config.NUM_SCALES,
        num_landmarks: int = config.NUM_LANDMARKS,
    ) -> None:
        super().__init__()
        self.widths = {"stem": stem, "mid": mid, "deep": deep, "head": head}
        self.stem = _conv_bn_relu(3, stem, stride=2)  # stride 2: source of the large-span skip
        self.block4 = ResidualBlock(stem, mid)  # stride 4, after the max-pool
        self.block8 = ResidualBlock(mid, deep, stride=2)  # stride 8
        self.context8 = ResidualBlock(deep, deep, dilation=2)  # stride 8, wide receptive field
        self.reduce8 = _conv_bn_relu(deep, mid)
        self.fuse4 = _conv_bn_relu(mid, mid)
        self.fuse2 = _conv_bn_relu(mid + stem, head)
        self.scale_head = nn.Conv2d(head, num_scales, 3, padding=1)
        self.landmark_head = nn.Conv2d(head, num_landmarks, 3, padding=1)
        self.register_buffer(
            "pixel_mean", torch.full((1, 3, 1, 1), config.PIXEL_MEAN), persistent=False
        )
        self.register_buffer(
            "pixel_scale", torch.full((1, 3, 1, 1), 1.0 / config.PIXEL_STD), persistent=False
        )
        # Start both maps near "nothing here" (sigmoid 0.01) so early training is not swamped by
        # false positives; a constant shift leaves the landmark soft-argmax (Eq. 5) unchanged.
        nn.init.constant_(self.scale_head.bias, -4.6)
        nn.init.constant_(self.landmark_head.bias, -4.6)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (pixels - self.pixel_mean) * self.pixel_scale
        s2 = self.stem(x)
        s4 = self.block4(F.max_pool2d(s2, 2))
        s8 = self.context8(self.block8(s4))
        up4 = F.interpolate(self.reduce8(s8), scale_factor=2.0, mode="nearest") + s4
        up2 = F.interpolate(self.fuse4(up4), scale_factor=2.0, mode="nearest")
        features = self.fuse2(torch.cat([up2, s2], dim=1))
        scale_logits = self.scale_head(features)
        if not self.training:  # config.SCALE_LOGIT_FLOOR; the loss keeps its gradients
            scale_logits = scale_logits.clamp(min=config.SCALE_LOGIT_FLOOR)
        return scale_logits, self.landmark_head(features)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

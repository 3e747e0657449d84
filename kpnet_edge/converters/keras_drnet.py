"""DRNet rebuilt in Keras (NHWC) from the same widths, with the PyTorch weights copied in.

The TFLite converter starts from this mirror. BatchNorm is folded into the conv before it, and
every padding torch does implicitly is made explicit where TF's "same" would differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kpnet_edge import config

if TYPE_CHECKING:
    import keras
    from torch import nn

    from kpnet_edge.model import DRNet


def build_keras_drnet(model: DRNet, batch_size: int = 1, input_size: int = config.INPUT_SIZE) -> keras.Model:
    """A Keras model computing what `model` computes, on NHWC float pixels in [0, 255].

    Input (batch_size, H, W, 3) named config.INPUT_NAME; outputs (scale logits (N, H/2, W/2, S),
    landmark logits (N, H/2, W/2, K)) named as config.OUTPUT_NAMES.
    """
    import keras
    from keras import layers

    builder = _Builder(layers)
    size = input_size
    pixels = keras.Input((size, size, 3), batch_size=batch_size, name=config.INPUT_NAME)
    scale = 1.0 / config.PIXEL_STD
    x = layers.Rescaling(scale, -config.PIXEL_MEAN * scale, name="normalize")(pixels)
    s2 = builder.conv(x, model.stem, "stem")
    pooled = layers.MaxPooling2D(2, name="pool")(s2)
    s4 = builder.residual(pooled, model.block4, "block4")
    s8 = builder.residual(builder.residual(s4, model.block8, "block8"), model.context8, "context8")
    up4 = layers.Add(name="skip4")([builder.upsample(builder.conv(s8, model.reduce8, "reduce8"), "up4"), s4])
    up2 = builder.upsample(builder.conv(up4, model.fuse4, "fuse4"), "up2")
    features = builder.conv(layers.Concatenate(name="skip2")([up2, s2]), model.fuse2, "fuse2")
    scale_logits = builder.conv(features, model.scale_head, f"{config.OUTPUT_NAMES[0]}_conv")
    floored = layers.Lambda(lambda t: keras.ops.maximum(t, config.SCALE_LOGIT_FLOOR), name="scale_floor")(scale_logits)
    outputs = [
        layers.Identity(name=config.OUTPUT_NAMES[0])(floored),  # as DRNet.forward in eval mode
        layers.Identity(name=config.OUTPUT_NAMES[1])(builder.conv(features, model.landmark_head,
                                                                  f"{config.OUTPUT_NAMES[1]}_conv")),
    ]
    return keras.Model(pixels, outputs, name="drnet")


class _Builder:
    """Creates Keras layers one torch module at a time and sets their weights right away."""

    def __init__(self, layers: Any) -> None:
        self.layers = layers

    def conv(self, x: Any, module: nn.Module, name: str, relu: bool | None = None) -> Any:
        """Conv2d (+ BatchNorm2d folded in) (+ ReLU) from an nn.Sequential or a bare nn.Conv2d."""
        from torch import nn

        parts = list(module) if isinstance(module, nn.Sequential) else [module]
        conv = parts[0]
        batch_norm = next((p for p in parts if isinstance(p, nn.BatchNorm2d)), None)
        if relu is None:
            relu = any(isinstance(p, nn.ReLU) for p in parts)
        kernel, bias = fold_batch_norm(conv, batch_norm)
        stride, dilation, padding = conv.stride[0], conv.dilation[0], conv.padding[0]
        if stride == 1 and 2 * padding == dilation * (conv.kernel_size[0] - 1):
            tf_padding = "same"  # symmetric padding, what "same" does at stride 1 for odd kernels
        else:
            # At stride 2 on an even size, "same" pads bottom/right only; torch pads both sides.
            if padding:
                x = self.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
            tf_padding = "valid"
        layer = self.layers.Conv2D(
            conv.out_channels,
            conv.kernel_size,
            strides=stride,
            dilation_rate=dilation,
            padding=tf_padding,
            activation="relu" if relu else None,
            name=name,
        )
        y = layer(x)
        layer.set_weights([kernel, bias])
        return y

    def residual(self, x: Any, block: nn.Module, name: str) -> Any:
        """model.ResidualBlock: relu(conv2(conv1(x)) + skip)."""
        y = self.conv(self.conv(x, block.conv1, f"{name}_conv1"), block.conv2, f"{name}_conv2", relu=False)
        skip = x if block.project is None else self.conv(x, block.project, f"{name}_project", relu=False)
        return self.layers.ReLU(name=f"{name}_relu")(self.layers.Add(name=f"{name}_add")([y, skip]))

    def upsample(self, x: Any, name: str) -> Any:
        """Nearest-neighbour 2x, as four copies of the channels put in place by depth_to_space:
        the same values as UpSampling2D, in ops XNNPACK runs. UpSampling2D converts to TILE, which
        XNNPACK does not take: the INT8 graph ran in five delegate partitions with reference
        TILE kernels between them."""
        import tensorflow as tf

        copies = self.layers.Concatenate(name=f"{name}_copies")([x] * 4)
        return self.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2), name=name)(copies)


def fold_batch_norm(conv: nn.Conv2d, batch_norm: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Keras kernel (kh, kw, in, out) and bias (out,) of conv followed by eval-mode batch_norm.

    BN(conv(x)) = gamma * (w * x - mean) / sqrt(var + eps) + beta, so w' = w * gamma / sqrt(var + eps)
    and b' = beta + (b - mean) * gamma / sqrt(var + eps). Folded in float64, stored as float32.
    """
    weight = conv.weight.detach().double().numpy()
    bias = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(conv.out_channels)
    if batch_norm is not None:
        gamma = batch_norm.weight.detach().double().numpy()
        beta = batch_norm.bias.detach().double().numpy()
        mean = batch_norm.running_mean.detach().double().numpy()
        var = batch_norm.running_var.detach().double().numpy()
        factor = gamma / np.sqrt(var + batch_norm.eps)
        weight = weight * factor[:, None, None, None]
        bias = beta + (bias - mean) * factor
    return weight.transpose(2, 3, 1, 0).astype(np.float32), bias.astype(np.float32)

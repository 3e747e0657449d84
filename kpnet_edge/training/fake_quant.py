"""Quantisation-aware fine-tuning: DRNet trained under simulated INT8, exported as plain weights.

Why: some DRNets lose accuracy to post-training INT8 that they did not have in float (the
narrow-head variant lost 4 WIDER-dev AP50 points in TFLite INT8, variants/README.md). Training a
while with the rounding in the forward pass (straight-through gradients) lets the weights settle
where INT8 hurts them less. The simulation follows the INT8 files kpnet-edge writes (TFLite, and
ONNX Runtime / OpenVINO alike): weights per output channel, symmetric, levels -127..127, with
BatchNorm folded into the convolution before rounding; activations per tensor, affine int8,
ranges from a moving average of each batch's min and max.

PyTorch's FX quantisation does the work (`prepare_qat_fx` fuses conv + BatchNorm (+ ReLU) and
places the fake quantisers); this module only configures it, freezes BatchNorm statistics (so
the folded weights are the ones a converter will fold) and maps the weights back to a DRNet,
so checkpoints, converters and every runtime see an ordinary model.

Example:
    >>> from kpnet_edge.model import DRNet
    >>> model = DRNet()
    >>> simulated = prepare_quantization_aware(model)
    >>> restored = float_weights(simulated, model.widths)
    >>> sorted(restored.state_dict()) == sorted(model.state_dict())
    True
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from kpnet_edge import config
from kpnet_edge.model import DRNet


def _qconfig_mapping() -> object:
    """The INT8 scheme of kpnet-edge's converters, as a QConfigMapping for every module."""
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        QConfig,
        QConfigMapping,
    )

    class FlooredMinMaxObserver(MovingAverageMinMaxObserver):
        """Ranges of the scale head's output as the files have them: the converters fold the
        scale-map floor into the convolution's output range (TFLite: [-16, 0.9] where the raw
        logits reach -149), and the FX graph would otherwise observe the logits before it."""

        def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
            super().forward(x_orig.detach().clamp(min=config.SCALE_LOGIT_FLOOR))
            return x_orig

    def affine(observer: type) -> object:
        # uint8 with a zero point is the same 256 affine levels as the files' int8; PyTorch's
        # backend configuration places activation quantisers for quint8 only.
        return FakeQuantize.with_args(
            observer=observer, quant_min=0, quant_max=255, dtype=torch.quint8, qscheme=torch.per_tensor_affine
        )

    weight = FakeQuantize.with_args(
        observer=MovingAveragePerChannelMinMaxObserver, quant_min=-127, quant_max=127,
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0,
    )
    return (
        QConfigMapping()
        .set_global(QConfig(activation=affine(MovingAverageMinMaxObserver), weight=weight))
        .set_module_name("scale_head", QConfig(activation=affine(FlooredMinMaxObserver), weight=weight))
    )


def prepare_quantization_aware(model: DRNet, input_size: int = 128) -> torch.fx.GraphModule:
    """A copy of `model` that computes as its INT8 file would (fake quantisation), in train mode.

    The graph is traced from the eval-mode forward, so the scale-map floor (part of every
    exported file, and what bounds the scale map's int8 range) is in it. BatchNorm statistics
    are frozen: the running statistics fold into the weights being rounded, as the converters
    fold them. `model` itself is left unchanged.
    """
    from torch.ao.nn.intrinsic import qat as intrinsic_qat
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    source = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
    example = (torch.zeros(1, 3, input_size, input_size),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        prepared = prepare_qat_fx(source, _qconfig_mapping(), example)
    prepared.apply(intrinsic_qat.freeze_bn_stats)
    return prepared.train()


def drnet_names(simulated: nn.Module) -> dict[str, str]:
    """Parameter and buffer names of a prepared model -> the DRNet names they came from.

    Fusion moves the BatchNorm after a convolution at `P.i` into the fused module as `P.i.bn`,
    so `P.i.bn.X` was `P.(i+1).X`; every other weight keeps its name. Fake quantisers' own
    state, and the normalisation constants (DRNet does not save them; the traced graph does),
    have no DRNet counterpart and are left out.
    """
    names = {}
    for name in simulated.state_dict():
        if "fake_quant" in name or "activation_post_process" in name or name.startswith("pixel_"):
            continue
        prefix, bn, rest = name.partition(".bn.")
        if bn:
            parent, _, index = prefix.rpartition(".")
            names[name] = f"{parent}.{int(index) + 1}.{rest}"
        else:
            names[name] = name
    return names


def float_weights(simulated: nn.Module, widths: dict[str, int]) -> DRNet:
    """The DRNet (of `widths`) whose float weights the prepared model holds: what a checkpoint
    stores and a converter quantises."""
    model = DRNet(**widths)
    state = simulated.state_dict()
    model.load_state_dict({drnet: state[name] for name, drnet in drnet_names(simulated).items()})
    return model


def drnet_ordered_parameters(simulated: nn.Module, model: DRNet) -> list[nn.Parameter]:
    """The prepared model's parameters in the order of `model.parameters()` (the DRNet it was
    prepared from), so an optimiser's state means the same weights in either."""
    own = dict(simulated.named_parameters())
    by_drnet_name = {drnet: own[name] for name, drnet in drnet_names(simulated).items() if name in own}
    return [by_drnet_name[name] for name, _ in model.named_parameters()]

"""Narrowing a trained DRNet's head: the start of a cheaper variant, fine-tuned afterwards.

DRNet's last fused layer (fuse2, 3x3, `head` channels at stride 2) and the 3x3 scale head that
reads it are a third of its 2.0 GMAC (issue 11). A narrower head keeps the `head` fuse2 channels
that matter most and drops the rest, with every other weight unchanged, so fine-tuning starts
from the trained network rather than from scratch (structured channel pruning).

A channel's importance is its BatchNorm scale |gamma| (how strongly it reaches the ReLU) times the
L1 norm of the head weights that read it (how much the outputs depend on it).
"""

from __future__ import annotations

import torch

from kpnet_edge.model import DRNet

HEAD_READERS = ("scale_head.weight", "landmark_head.weight")
"""The convolutions that read fuse2's channels (their input-channel axis is 1)."""


def head_channel_importance(model: DRNet) -> torch.Tensor:
    """Importance (head,) of each fuse2 output channel; see the module docstring."""
    state = model.state_dict()
    reach = state["fuse2.1.weight"].abs()
    use = sum(state[name].abs().sum(dim=(0, 2, 3)) for name in HEAD_READERS)
    return reach * use


def narrow_head(model: DRNet, head: int) -> DRNet:
    """A DRNet with `head` fuse2 channels (fewer than model's): the most important channels'
    weights (fuse2's conv rows and BatchNorm entries, the heads' input columns), all else copied."""
    widths = dict(model.widths)
    if not 0 < head < widths["head"]:
        raise ValueError(f"head must lie in [1, {widths['head'] - 1}] to narrow a head of {widths['head']}, got {head}")
    keep = torch.sort(torch.argsort(head_channel_importance(model), descending=True)[:head]).values
    narrow = DRNet(**{**widths, "head": head})
    state = {}
    for name, value in model.state_dict().items():
        if name.startswith("fuse2.") and value.ndim >= 1:  # conv rows, BN weight/bias/running stats
            value = value[keep]
        elif name in HEAD_READERS:
            value = value[:, keep]
        state[name] = value.clone()
    narrow.load_state_dict(state)
    return narrow

"""Narrowing DRNet's head (training/narrow.py) and starting a narrower model from a wider
checkpoint (the trainer's init_from)."""

from __future__ import annotations

import pytest
import torch

from kpnet_edge.checkpoint import save_checkpoint
from kpnet_edge.errors import KpnetError
from kpnet_edge.model import DRNet
from kpnet_edge.training.narrow import head_channel_importance, narrow_head
from kpnet_edge.training.trainer import _load_initial_weights

from conftest import randomise_batchnorm

WIDTHS = {"stem": 8, "mid": 16, "deep": 32, "head": 8}


def trained_like(seed: int = 0) -> DRNet:
    """A tiny random DRNet with non-trivial BatchNorm statistics (as training leaves them)."""
    torch.manual_seed(seed)
    model = DRNet(**WIDTHS)
    randomise_batchnorm(model)
    return model.eval()


def test_channels_no_head_reads_are_dropped_and_the_outputs_do_not_change():
    model = trained_like()
    unused = [1, 4, 6]
    with torch.no_grad():  # the heads ignore these fuse2 channels: they can go at no cost
        model.scale_head.weight[:, unused] = 0
        model.landmark_head.weight[:, unused] = 0
    assert set(torch.argsort(head_channel_importance(model))[:3].tolist()) == set(unused)
    narrow = narrow_head(model, 5).eval()
    assert narrow.widths["head"] == 5 and narrow.fuse2[0].weight.shape == (5, 8 + 16, 3, 3)
    pixels = torch.randint(0, 256, (2, 3, 64, 64)).float()
    with torch.no_grad():
        for want, got in zip(model(pixels), narrow(pixels)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_only_a_narrower_head_can_be_made():
    with pytest.raises(ValueError, match=r"head must lie in \[1, 7\]"):
        narrow_head(trained_like(), 8)


def test_init_from_a_wider_head_narrows_and_other_widths_are_refused(tmp_path):
    wide = trained_like()
    path = tmp_path / "wide.pt"
    save_checkpoint(wide, path)
    model = DRNet(**{**WIDTHS, "head": 4})
    _load_initial_weights(model, str(path))
    expected = narrow_head(wide, 4).state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)
    with pytest.raises(KpnetError, match=r"wide\.pt: a DRNet of widths .* cannot start one of widths"):
        _load_initial_weights(DRNet(**{**WIDTHS, "mid": 8, "head": 4}), str(path))

"""DRNet: the paper's size and geometry, two separate heads, and safe checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from kpnet_edge import config
from kpnet_edge.checkpoint import load_drnet, save_checkpoint
from kpnet_edge.errors import KpnetError
from kpnet_edge.model import DRNet, count_parameters


def test_parameter_count_is_about_one_million():
    count = count_parameters(DRNet())
    assert 0.9e6 <= count <= 1.1e6, f"DRNet has {count} parameters, the paper's is ~1.0M"


@pytest.mark.parametrize("height,width", [(256, 256), (128, 192), (64, 64)])
def test_outputs_are_two_heads_at_stride_two(height, width):
    model = DRNet(stem=8, mid=16, deep=32, head=8).eval()
    with torch.no_grad():
        scale, landmarks = model(torch.rand(2, 3, height, width) * 255)
    assert scale.shape == (2, config.NUM_SCALES, height // config.STRIDE, width // config.STRIDE)
    assert landmarks.shape == (2, config.NUM_LANDMARKS, height // config.STRIDE, width // config.STRIDE)


def test_normalisation_lives_inside_the_graph():
    model = DRNet(stem=8, mid=16, deep=32, head=8).eval()
    grey = torch.full((1, 3, 32, 32), config.PIXEL_MEAN)
    with torch.no_grad():
        features = model.stem[0](torch.zeros(1, 3, 32, 32))
        normalised = model.stem[0]((grey - model.pixel_mean) * model.pixel_scale)
    torch.testing.assert_close(features, normalised)


def test_checkpoint_round_trip_keeps_widths_and_weights(tmp_path):
    model = DRNet(stem=8, mid=16, deep=32, head=8)
    save_checkpoint(model, tmp_path / "m.pt")
    loaded = load_drnet(tmp_path / "m.pt")
    assert loaded.widths == model.widths
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)


def test_checkpoint_errors_name_the_file(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(KpnetError, match=r"other\.pt: not a DRNet state dict"):
        load_drnet(tmp_path / "other.pt")
    state = DRNet(stem=8, mid=16, deep=32, head=8).state_dict()
    torch.save(state, tmp_path / "bare.pt")  # a bare state dict at default widths: shapes differ
    with pytest.raises(KpnetError, match=r"bare\.pt: shape mismatch"):
        load_drnet(tmp_path / "bare.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(KpnetError, match=r"junk\.pt: not a loadable PyTorch checkpoint"):
        load_drnet(tmp_path / "junk.pt")


def test_scale_logits_are_floored_at_inference_but_not_in_training():
    """config.SCALE_LOGIT_FLOOR: background logits below it only widen an INT8 output's range."""
    model = DRNet(stem=8, mid=8, deep=8, head=8)
    torch.nn.init.constant_(model.scale_head.bias, -50.0)
    torch.nn.init.zeros_(model.scale_head.weight)
    pixels = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        floored, _ = model.eval()(pixels)
        raw, _ = model.train()(pixels)
    assert torch.all(floored == config.SCALE_LOGIT_FLOOR)
    assert torch.allclose(raw, torch.full_like(raw, -50.0))


def test_keras_mirror_floors_the_scale_logits_as_drnet_does():
    pytest.importorskip("tensorflow")
    from kpnet_edge.converters.keras_drnet import build_keras_drnet

    model = DRNet(stem=8, mid=8, deep=8, head=8).eval()
    with torch.no_grad():
        model.scale_head.bias[:30] = -50.0  # half the bins far below the floor, half near zero
    pixels = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        expected = model(pixels)[0].numpy().transpose(0, 2, 3, 1)
    keras_scale = build_keras_drnet(model, 1, 32)(pixels.numpy().transpose(0, 2, 3, 1))[0]
    assert abs(float(keras_scale.numpy().min()) - config.SCALE_LOGIT_FLOOR) < 1e-6
    assert float(abs(keras_scale.numpy() - expected).max()) < 1e-3

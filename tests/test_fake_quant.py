"""Quantisation-aware training: the simulation rounds what the INT8 files round, trains the float
weights underneath, and hands back an ordinary DRNet."""

from __future__ import annotations

import pytest
import torch
from test_training_run import TINY, tiny_config

from kpnet_edge import config
from kpnet_edge.checkpoint import load_drnet, read_checkpoint
from kpnet_edge.model import DRNet
from kpnet_edge.training.fake_quant import (
    drnet_ordered_parameters,
    float_weights,
    prepare_quantization_aware,
)
from kpnet_edge.training.trainer import train


@pytest.fixture
def trained_looking() -> DRNet:
    """A tiny DRNet with non-trivial BatchNorm statistics, as a trained one has."""
    torch.manual_seed(0)
    model = DRNet(**TINY)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def pixels(count: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, size, size), generator=torch.Generator().manual_seed(1)).float()


def test_weights_come_back_unchanged(trained_looking):
    restored = float_weights(prepare_quantization_aware(trained_looking), TINY).state_dict()
    original = trained_looking.state_dict()
    assert sorted(restored) == sorted(original)
    for name, value in original.items():
        assert torch.equal(restored[name], value), name


def test_outputs_are_rounded_to_int8_levels_close_to_float(trained_looking):
    simulated = prepare_quantization_aware(trained_looking, input_size=64).eval()
    batch = pixels()
    with torch.no_grad():
        simulated(batch)  # observers take the ranges of this batch
        scale, landmarks = simulated(batch)
        _, float_landmarks = trained_looking(batch)
    assert landmarks.unique().numel() <= 256 < float_landmarks.unique().numel()
    error = (landmarks - float_landmarks).abs().mean() / float_landmarks.std()
    assert 0 < error < 0.1, f"mean error {error:.3f} of the float output's spread"
    assert scale.unique().numel() <= 256


def test_scale_map_range_stops_at_the_floor(trained_looking):
    """The files' scale-map int8 range ends at the floor, however low the raw logits go."""
    trained_looking.scale_head.bias.data[:30] = -60.0
    simulated = prepare_quantization_aware(trained_looking, input_size=64).eval()
    with torch.no_grad():
        simulated(pixels())
        scale, _ = simulated(pixels())
    step = (scale.unique()[1:] - scale.unique()[:-1]).min()
    assert scale.min() >= config.SCALE_LOGIT_FLOOR - step
    # 256 levels over [-16, max(top, 0)] (a range always holds 0); down to -60 they would be ~4x coarser
    assert step <= (max(float(scale.max()), 0.0) - config.SCALE_LOGIT_FLOOR) / 250


def test_training_moves_weights_not_batchnorm_statistics(trained_looking):
    simulated = prepare_quantization_aware(trained_looking, input_size=64)
    optimizer = torch.optim.SGD(drnet_ordered_parameters(simulated, trained_looking), lr=0.1)
    scale, landmarks = simulated(pixels())
    (scale.mean() + landmarks.mean()).backward()
    optimizer.step()
    after = float_weights(simulated, TINY).state_dict()
    before = trained_looking.state_dict()
    assert not torch.equal(after["fuse2.0.weight"], before["fuse2.0.weight"])
    assert not torch.equal(after["landmark_head.bias"], before["landmark_head.bias"])
    for name in ("fuse2.1.running_mean", "fuse2.1.running_var", "stem.1.running_mean"):
        assert torch.equal(after[name], before[name]), f"{name} moved: BatchNorm must stay frozen"


def test_optimiser_sees_parameters_in_drnet_order(trained_looking):
    simulated = prepare_quantization_aware(trained_looking)
    ordered = drnet_ordered_parameters(simulated, trained_looking)
    assert [p.shape for p in ordered] == [p.shape for p in trained_looking.parameters()]
    own = {id(p) for p in simulated.parameters()}
    assert len({id(p) for p in ordered}) == len(ordered) and all(id(p) in own for p in ordered)


def test_quantization_aware_run_writes_drnet_checkpoints_and_resumes(tmp_path, mtfl_root, backgrounds_dir):
    start = DRNet(**TINY)
    torch.save({"widths": TINY, "state_dict": start.state_dict()}, tmp_path / "start.pt")
    cfg = tiny_config(tmp_path / "qat", mtfl_root, backgrounds_dir, steps=4)
    cfg.quantization_aware, cfg.init_from = True, str(tmp_path / "start.pt")
    train(cfg, progress=False, stop_at=2)
    halfway = read_checkpoint(tmp_path / "qat" / "last.pt")
    assert halfway["step"] == 2
    last = train(cfg, resume=tmp_path / "qat" / "last.pt", progress=False)
    assert read_checkpoint(last)["step"] == 4
    model = load_drnet(last)  # an ordinary DRNet: every converter and runtime takes it
    assert model.widths == TINY
    moved = [n for n, v in start.state_dict().items() if not torch.equal(v, model.state_dict()[n])]
    assert "landmark_head.weight" in moved
    assert not any("running" in n for n in moved), "BatchNorm statistics must stay frozen"

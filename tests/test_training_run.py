"""Training on real MTFL train crops: optimiser steps lower the objective, and resuming is exact."""

from __future__ import annotations

import pytest
import torch

from kpnet_edge.checkpoint import read_checkpoint
from kpnet_edge.errors import KpnetError
from kpnet_edge.model import DRNet
from kpnet_edge.training.dataset import SceneDataset, collate
from kpnet_edge.training.trainer import TrainConfig, _restore_schedule, _train_step, build_generator, train

TINY = {"stem": 8, "mid": 16, "deep": 32, "head": 8}


def tiny_config(out_dir, mtfl_root, backgrounds_dir, steps: int) -> TrainConfig:
    return TrainConfig(
        out_dir=str(out_dir), steps=steps, batch_size=4, crop_size=64, scene_size=128,
        full_scene_every=0, learning_rate=3e-3, log_every=1, checkpoint_every=1000,
        widths=TINY, workers=0, max_faces=200, warmup_fraction=0.1,
        mtfl_list=str(mtfl_root / "new_training.txt"), backgrounds=str(backgrounds_dir),
    )


def test_training_steps_lower_the_loss_on_a_fixed_batch(tmp_path, mtfl_root, backgrounds_dir):
    cfg = tiny_config(tmp_path / "run", mtfl_root, backgrounds_dir, steps=1)
    torch.manual_seed(0)
    model = DRNet(**TINY)
    dataset = SceneDataset(build_generator(cfg), cfg.seed)
    batch = collate([dataset[(i, cfg.crop_size)] for i in range(8)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cpu = torch.device("cpu")
    losses = [_train_step(model, batch, cfg, cpu, False, optimizer)["loss"] for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0], f"loss went from {losses[0]:.3f} to {losses[-1]:.3f}"


def test_resume_reproduces_an_uninterrupted_run(tmp_path, mtfl_root, backgrounds_dir):
    straight = train(tiny_config(tmp_path / "a", mtfl_root, backgrounds_dir, 6), progress=False)
    cfg = tiny_config(tmp_path / "b", mtfl_root, backgrounds_dir, 6)
    train(cfg, progress=False, stop_at=3)
    resumed = train(cfg, resume=tmp_path / "b" / "last.pt", progress=False)
    a, b = read_checkpoint(straight)["state_dict"], read_checkpoint(resumed)["state_dict"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=f"{name} differs after resume")


def test_training_refuses_a_test_split(tmp_path, mtfl_root, backgrounds_dir):
    cfg = tiny_config(tmp_path / "c", mtfl_root, backgrounds_dir, 2)
    cfg.mtfl_list = str(mtfl_root / "new_testing.txt")
    with pytest.raises(KpnetError, match="refusing to train on a test split"):
        train(cfg, progress=False)


def _one_cycle(total: int) -> torch.optim.lr_scheduler.OneCycleLR:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=total, pct_start=0.05)


def test_resuming_into_a_shorter_run_fast_forwards_its_schedule():
    saved = _one_cycle(400)
    for _ in range(30):
        saved.optimizer.step()
        saved.step()
    same_length = _one_cycle(400)
    _restore_schedule(same_length, saved.state_dict(), 30, 400)
    assert same_length.get_last_lr() == saved.get_last_lr()
    shorter = _one_cycle(300)
    _restore_schedule(shorter, saved.state_dict(), 30, 300)
    reference = _one_cycle(300)
    for _ in range(30):
        reference.optimizer.step()
        reference.step()
    assert shorter.get_last_lr() == pytest.approx(reference.get_last_lr())
    assert shorter.total_steps == 300

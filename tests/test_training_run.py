"""A short training run on real MTFL train crops lowers the loss, and resuming is exact."""

from __future__ import annotations

import json

import torch

from kpnet_edge.checkpoint import read_checkpoint
from kpnet_edge.training.trainer import TrainConfig, train

TINY = {"stem": 8, "mid": 16, "deep": 32, "head": 8}


def tiny_config(out_dir, mtfl_root, backgrounds_dir, steps: int) -> TrainConfig:
    return TrainConfig(
        out_dir=str(out_dir), steps=steps, batch_size=4, crop_size=64, scene_size=128,
        full_scene_every=0, learning_rate=3e-3, log_every=1, checkpoint_every=1000,
        widths=TINY, workers=0, max_faces=200, heatmap_weight=1.0, warmup_fraction=0.1,
        mtfl_list=str(mtfl_root / "new_training.txt"), backgrounds=str(backgrounds_dir),
    )


def test_a_few_steps_lower_the_loss(tmp_path, mtfl_root, backgrounds_dir):
    cfg = tiny_config(tmp_path / "run", mtfl_root, backgrounds_dir, steps=40)
    train(cfg, progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"loss went from {first:.3f} to {last:.3f}"


def test_resume_reproduces_an_uninterrupted_run(tmp_path, mtfl_root, backgrounds_dir):
    straight = train(tiny_config(tmp_path / "a", mtfl_root, backgrounds_dir, 6), progress=False)
    cfg = tiny_config(tmp_path / "b", mtfl_root, backgrounds_dir, 6)
    train(cfg, progress=False, stop_at=3)
    resumed = train(cfg, resume=tmp_path / "b" / "last.pt", progress=False)
    a, b = read_checkpoint(straight)["state_dict"], read_checkpoint(resumed)["state_dict"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=f"{name} differs after resume")


def test_training_refuses_a_test_split(tmp_path, mtfl_root, backgrounds_dir):
    import pytest

    from kpnet_edge.errors import KpnetError

    cfg = tiny_config(tmp_path / "c", mtfl_root, backgrounds_dir, 2)
    cfg.mtfl_list = str(mtfl_root / "new_testing.txt")
    with pytest.raises(KpnetError, match="refusing to train on a test split"):
        train(cfg, progress=False)

"""Shared fixtures. Tests that need ../shared/data skip outside CI when it is missing; in CI
(CI=true) a missing data folder is an error, so data-dependent tests never skip silently there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kpnet_edge.datapaths import data_root


def _require(relative: str) -> Path:
    path = data_root() / relative
    if not path.exists():
        message = f"{path} is missing (set KPNET_DATA to the shared data folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data root (../shared/data or $KPNET_DATA)."""
    return _require("")


@pytest.fixture(scope="session")
def wider_dev() -> Path:
    """WIDER-val-200-dev@416: images/ and wider_face_val_bbx_gt.txt."""
    return _require("widerface_val200_dev")


@pytest.fixture(scope="session")
def mtfl_root() -> Path:
    """MTFL 80x80 crops with new_training.txt / new_testing.txt."""
    return _require("mtfl")


@pytest.fixture(scope="session")
def backgrounds_dir() -> Path:
    """Face-free background photos for synthetic scenes."""
    return _require("backgrounds")


@pytest.fixture(scope="session")
def yunet_dir() -> Path:
    """YuNet-n/-s ONNX peer models."""
    return _require("peers/yunet")


def write_images(root: Path, *names: str, size: int = 64) -> Path:
    """Flat grey size x size images at root/name (folders made as needed), for loader tests that
    need the files to exist but not to show anything; returns root."""
    import cv2
    import numpy as np

    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((size, size, 3), 90, dtype=np.uint8))
    return root


def write_text(path: Path, text: str) -> Path:
    """Write text to path and return path, so a label file is made where it is passed."""
    path.write_text(text)
    return path


def randomise_batchnorm(model) -> None:  # noqa: ANN001 (torch stays out of conftest's imports)
    """Give every BatchNorm of `model` non-trivial statistics and affine terms, as training leaves
    them (a fresh model's are identity, which hides folding and channel-selection mistakes)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)


TINY_BATCH = 2
"""Fixed-batch files of the shared conversion are made for this batch too."""


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny DRNet (8/16/32/8 channels) whose maps peak like a trained model's: the heads'
    weights are multiplied by 30 (a random head's scale map is otherwise flat, probabilities
    0.0099-0.0112); with it they reach ~0.3, and the parity images give a few dozen faces."""
    import torch

    from kpnet_edge.checkpoint import save_checkpoint
    from kpnet_edge.model import DRNet

    torch.manual_seed(0)
    model = DRNet(stem=8, mid=16, deep=32, head=8)
    with torch.no_grad():
        model.scale_head.weight.mul_(30.0)
        model.landmark_head.weight.mul_(30.0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(model.eval(), path)
    return path


@pytest.fixture(scope="session")
def tiny_calibration(wider_dev: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 WIDER dev images (every tenth from the sixth): 8 to calibrate on, 2 held out for parity."""
    import shutil

    from kpnet_edge.imageio import list_images

    folder = tmp_path_factory.mktemp("calibration")
    for path in list_images(wider_dev / "images")[5::10][:10]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tiny_weights: Path, tiny_calibration: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """THE one conversion of the test run: every target of the table, batch 1 and TINY_BATCH, of
    the tiny model. Tests that need a converted model read this folder (copy it to change it)."""
    import warnings

    from kpnet_edge.artifacts import TARGETS
    from kpnet_edge.converters import convert

    out = tmp_path_factory.mktemp("tiny_models") / "models"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small calibration set, converters' own deprecations
        convert(tiny_weights, list(TARGETS), out, tiny_calibration, batch=TINY_BATCH, calib_size=8)
    return out

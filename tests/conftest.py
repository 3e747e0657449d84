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

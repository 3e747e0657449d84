"""Where the shared research data lives: ../shared/data beside the checkout, or $KPNET_DATA."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The data folder: $KPNET_DATA if set, else ../shared/data next to the repository."""
    override = os.environ.get("KPNET_DATA")
    if override:
        return Path(override)
    return _REPO_ROOT.parent / "shared" / "data"

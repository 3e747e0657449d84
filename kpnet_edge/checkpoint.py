"""Saving and loading DRNet checkpoints safely (weights_only) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kpnet_edge.atomic import atomic_path
from kpnet_edge.errors import KpnetError
from kpnet_edge.model import DRNet

SHIPPED_WEIGHTS = Path(__file__).parent / "assets" / "drnet.pt"
FORMAT = "kpnet-edge/drnet"


def save_checkpoint(model: DRNet, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write {"format", "widths", "state_dict", **extra} atomically (temp file, then rename)."""
    payload = {"format": FORMAT, "widths": dict(model.widths), "state_dict": model.state_dict()}
    payload.update(extra or {})
    with atomic_path(path) as temp:
        torch.save(payload, temp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file with weights_only=True; a bare state dict is accepted too."""
    path = Path(path)
    if not path.exists():
        raise KpnetError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise KpnetError(f"{path}: is a folder, not a checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise KpnetError(f"{path}: not a loadable PyTorch checkpoint ({reason[:200]})") from None
    if isinstance(payload, dict) and "state_dict" in payload:
        return payload
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {"state_dict": payload}
    raise KpnetError(f"{path}: not a DRNet checkpoint (expected a state dict of tensors)")


def load_drnet(path: str | Path | None = None) -> DRNet:
    """DRNet in eval mode with weights from `path`, or the shipped checkpoint when None."""
    path = Path(path) if path is not None else SHIPPED_WEIGHTS
    if path == SHIPPED_WEIGHTS and not path.exists():
        raise KpnetError(f"{path}: the shipped checkpoint is missing; pass --weights PATH")
    payload = read_checkpoint(path)
    widths = payload.get("widths") or {}
    try:
        model = DRNet(**{k: int(v) for k, v in widths.items()})
    except TypeError as error:
        raise KpnetError(f"{path}: unknown DRNet widths {widths} ({error})") from None
    state = payload["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KpnetError(
            f"{path}: not a DRNet state dict ({len(missing)} missing keys, e.g. "
            f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise KpnetError(
                f"{path}: shape mismatch for {name}: checkpoint has {tuple(tensor.shape)}, "
                f"DRNet expects {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state)
    return model.eval()


def release_checkpoint(source: str | Path, target: str | Path) -> None:
    """Write a weights-only copy of a training checkpoint (no optimiser or schedule state), with
    its training config and step kept as metadata: the form the package ships."""
    payload = read_checkpoint(source)
    model = load_drnet(source)
    extra = {key: payload[key] for key in ("config", "step") if key in payload}
    save_checkpoint(model, target, extra)

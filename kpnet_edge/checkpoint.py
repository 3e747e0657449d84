"""Saving and loading DRNet checkpoints safely (weights_only) with errors that name the file."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from kpnet_edge.atomic import atomic_path
from kpnet_edge.errors import KpnetError
from kpnet_edge.model import DRNet

SHIPPED_WEIGHTS = Path(__file__).parent / "assets" / "drnet.pt"
FORMAT = "kpnet-edge/drnet"
WIDTH_NAMES = ("stem", "mid", "deep", "head")
MAX_WIDTH = 4096
"""Widest layer a checkpoint may ask for: 16x the shipped DRNet's widest, far below a memory blow-up."""


def save_checkpoint(model: DRNet, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write {"format", "widths", "state_dict", **extra} atomically (temp file, then rename)."""
    payload = {"format": FORMAT, "widths": dict(model.widths), "state_dict": model.state_dict()}
    payload.update(extra or {})
    with atomic_path(path) as temp:
        torch.save(payload, temp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file with weights_only=True; a bare state dict is accepted too.

    A file that holds anything but tensors and plain containers (a pickled class or function,
    which could run code) is refused with our own message: torch's advice to retry with
    weights_only=False is the wrong advice for a file from an unknown source.
    """
    path = Path(path)
    if not path.exists():
        raise KpnetError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise KpnetError(f"{path}: is a folder, not a checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise KpnetError(_refusal(path, str(error))) from None
    except Exception as error:  # torch raises many types for corrupt files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise KpnetError(f"{path}: not a loadable PyTorch checkpoint ({reason[:200]})") from None
    if isinstance(payload, dict) and "state_dict" in payload:
        return payload
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {"state_dict": payload}
    raise KpnetError(f"{path}: not a DRNet checkpoint (expected a state dict of tensors)")


def _refusal(path: Path, torch_message: str) -> str:
    """Our one line for a pickle torch's weights-only loader refused, naming what it held."""
    found = re.search(r"GLOBAL ([\w.]+)", torch_message)
    if found is None and "unsupported global" not in torch_message.lower():
        # Torch says "weights only load failed" for plain garbage too ("Unsupported operand"):
        # only a pickled global is an object we refuse; anything else is a broken file.
        return f"{path}: not a loadable PyTorch checkpoint (corrupt pickle data)"
    held = f" (it holds {found.group(1)})" if found else ""
    return (f"{path}: refused: the file holds Python objects other than tensors{held}, which could run "
            "code when loaded; kpnet-edge loads weights only. Save a plain state dict "
            "(kpnet_edge.checkpoint.save_checkpoint or torch.save(model.state_dict(), ...))")


def check_widths(path: Path, widths: object) -> dict[str, int]:
    """The checkpoint's DRNet widths as ints, checked before anything is built: known names only,
    each a whole number in [1, MAX_WIDTH] (a damaged or hostile file could otherwise ask for a
    model of hundreds of gigabytes)."""
    if widths is None:
        return {}
    if not isinstance(widths, dict):
        raise KpnetError(f"{path}: DRNet widths must be a mapping, got {type(widths).__name__}")
    unknown = sorted(set(map(str, widths)) - set(WIDTH_NAMES))
    if unknown:
        raise KpnetError(f"{path}: unknown DRNet widths {unknown} (known: {', '.join(WIDTH_NAMES)})")
    checked = {}
    for name, value in widths.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WIDTH:
            raise KpnetError(f"{path}: DRNet width {name}={value!r} is not a whole number in [1, {MAX_WIDTH}]")
        checked[name] = value
    return checked


def load_drnet(path: str | Path | None = None) -> DRNet:
    """DRNet in eval mode with weights from `path`, or the shipped checkpoint when None.

    Widths, key names and every tensor's shape are checked against a DRNet built on the meta
    device (no memory) before the real one is built, and the weights must be finite.
    """
    path = Path(path) if path is not None else SHIPPED_WEIGHTS
    if path == SHIPPED_WEIGHTS and not path.exists():
        raise KpnetError(f"{path}: the shipped checkpoint is missing; pass --weights PATH")
    payload = read_checkpoint(path)
    widths = check_widths(path, payload.get("widths"))
    state = payload["state_dict"]
    with torch.device("meta"):
        expected = DRNet(**widths).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KpnetError(
            f"{path}: not a DRNet state dict ({len(missing)} missing keys, e.g. "
            f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise KpnetError(f"{path}: {name} is a {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise KpnetError(
                f"{path}: shape mismatch for {name}: checkpoint has {tuple(tensor.shape)}, "
                f"DRNet expects {tuple(expected[name].shape)}"
            )
    broken = [name for name, tensor in state.items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise KpnetError(f"{path}: the weights hold NaN or infinite values (in {', '.join(broken[:3])}"
                         f"{', ...' if len(broken) > 3 else ''}): a damaged file or a diverged training run")
    model = DRNet(**widths)
    model.load_state_dict(state)
    return model.eval()


def release_checkpoint(source: str | Path, target: str | Path) -> None:
    """Write a weights-only copy of a training checkpoint (no optimiser or schedule state), with
    its training config and step kept as metadata: the form the package ships."""
    payload = read_checkpoint(source)
    model = load_drnet(source)
    extra = {key: payload[key] for key in ("config", "step") if key in payload}
    save_checkpoint(model, target, extra)

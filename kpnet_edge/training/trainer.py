"""The training loop: AdamW with one-cycle LR, bf16 autocast and channels-last on CPUs that have
it, CUDA when present, a metrics log, checkpoints that resume exactly."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from kpnet_edge.checkpoint import read_checkpoint, save_checkpoint
from kpnet_edge.data.mtfl import load_mtfl
from kpnet_edge.datapaths import data_root
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import list_images
from kpnet_edge.model import DRNet
from kpnet_edge.training.dataset import Batch, MixedSizeBatches, SceneDataset, collate
from kpnet_edge.training.losses import keypoint_loss, scale_bce_loss, scale_focal_loss, soft_argmax_in_windows
from kpnet_edge.training.synth import SceneGenerator


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in every checkpoint. Paths default to the shared data."""

    out_dir: str = "runs/drnet"
    steps: int = 4000
    batch_size: int = 32
    crop_size: int = 128
    scene_size: int = 256
    full_scene_every: int = 4
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    keypoint_weight: float = 50.0
    heatmap_weight: float = 0.0  # auxiliary focal loss on landmark heatmaps (0: Eq. 7 alone)
    scale_loss: str = "focal"  # "focal" or "bce" (Eq. 4 as printed)
    seed: int = 0
    workers: int = 1
    log_every: int = 20
    checkpoint_every: int = 250
    device: str = "auto"
    bf16: bool = True
    widths: dict[str, int] = field(default_factory=dict)
    mtfl_list: str = ""
    backgrounds: str = ""
    max_faces: int = 0  # use only the first N MTFL faces (0: all); for smoke tests
    init_from: str = ""  # start from these weights with a fresh optimiser (fine-tuning)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a JSON or YAML config; keys must be TrainConfig fields."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise KpnetError(f"{path}: cannot read config ({error.strerror})") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
        except Exception as error:
            raise KpnetError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({error})") from None
        if not isinstance(values, dict):
            raise KpnetError(f"{path}: expected a mapping of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KpnetError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_generator(cfg: TrainConfig) -> SceneGenerator:
    """Scenes from MTFL *train* crops on the background photos (procedural ones if none)."""
    mtfl_list = Path(cfg.mtfl_list) if cfg.mtfl_list else data_root() / "mtfl" / "new_training.txt"
    if "testing" in mtfl_list.name:
        raise KpnetError(f"{mtfl_list}: refusing to train on a test split")
    faces = load_mtfl(mtfl_list)
    if cfg.max_faces:
        faces = faces[: cfg.max_faces]
    backgrounds_dir = Path(cfg.backgrounds) if cfg.backgrounds else data_root() / "backgrounds"
    backgrounds = list_images(backgrounds_dir) if backgrounds_dir.exists() else None
    return SceneGenerator(faces, backgrounds, size=cfg.scene_size, seed=cfg.seed)


def train(cfg: TrainConfig, resume: str | Path | None = None, progress: bool = True,
          stop_at: int | None = None) -> Path:
    """Train DRNet; returns the path of the latest checkpoint (out_dir/last.pt).

    Metrics go to out_dir/metrics.jsonl, one JSON line per log step. `stop_at` ends the run early
    after that step, with a checkpoint to resume from (the schedule still spans cfg.steps).
    """
    _seed_everything(cfg.seed)
    device = _device(cfg.device)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = DRNet(**cfg.widths).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.learning_rate, total_steps=cfg.steps, pct_start=cfg.warmup_fraction
    )
    start = 0
    if cfg.init_from:
        model.load_state_dict(read_checkpoint(cfg.init_from)["state_dict"])
    if resume:
        state = read_checkpoint(resume)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start = int(state["step"])
    dataset = SceneDataset(build_generator(cfg), cfg.seed)
    end = min(cfg.steps, stop_at or cfg.steps)
    batches = MixedSizeBatches(cfg.batch_size, cfg.crop_size, cfg.scene_size, cfg.full_scene_every, end, start)
    loader = DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate, num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers > 0 else None,
    )
    autocast = cfg.bf16 and (device.type == "cuda" or _cpu_has_bf16())
    log_path = out_dir / "metrics.jsonl"
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, file=sys.stderr, unit="step")
    started, seen = time.perf_counter(), 0
    model.train()
    with log_path.open("a") as log:
        for step, batch in enumerate(loader, start=start):
            losses = _train_step(model, batch, cfg, device, autocast, optimizer)
            schedule.step()
            seen += len(batch.pixels)
            bar.update(1)
            bar.set_postfix(scale=f"{losses['scale']:.3f}", kp=f"{losses['keypoint']:.4f}")
            done = step + 1
            if done % cfg.log_every == 0 or done == end:
                elapsed = time.perf_counter() - started
                record = {"step": done, "lr": schedule.get_last_lr()[0], **losses,
                          "samples_per_s": round(seen / elapsed, 2), "elapsed_s": round(elapsed, 1)}
                log.write(json.dumps(record) + "\n")
                log.flush()
            if done % cfg.checkpoint_every == 0 or done == end:
                _save(model, optimizer, schedule, cfg, done, out_dir / "last.pt")
    bar.close()
    return out_dir / "last.pt"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def compute_losses(model: DRNet, batch: Batch, cfg: TrainConfig, device: torch.device,
                   autocast: bool = False) -> dict[str, torch.Tensor]:
    """The training objective on one batch: scale-map loss, Eq. 7, the optional heatmap loss, and
    their weighted sum "loss"."""
    pixels = batch.pixels.to(device).float()
    if device.type == "cpu":
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        scale_logits, landmark_logits = model(pixels)
    target = batch.scale_target.to(device).float() / 255.0
    if cfg.scale_loss == "focal":
        scale = scale_focal_loss(scale_logits, target)
    else:
        scale = scale_bce_loss(scale_logits, target)
    face_heatmaps = landmark_logits[batch.face_image.to(device)]
    keypoints = soft_argmax_in_windows(face_heatmaps, batch.windows.to(device))
    keypoint = keypoint_loss(keypoints, batch.landmarks.to(device), batch.window_sides.to(device))
    loss = scale + cfg.keypoint_weight * keypoint
    heatmap = torch.zeros((), device=device)
    if cfg.heatmap_weight:
        heatmap = scale_focal_loss(landmark_logits, batch.landmark_target.to(device).float() / 255.0)
        loss = loss + cfg.heatmap_weight * heatmap
    return {"loss": loss, "scale": scale, "keypoint": keypoint, "heatmap": heatmap}


def _train_step(model: DRNet, batch: Batch, cfg: TrainConfig, device: torch.device, autocast: bool,
                optimizer: torch.optim.Optimizer) -> dict[str, float]:
    losses = compute_losses(model, batch, cfg, device, autocast)
    loss = losses["loss"]
    if not math.isfinite(loss.item()):
        raise KpnetError(f"training diverged (loss {loss.item()}); lower learning_rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    optimizer.step()
    return {name: value.item() for name, value in losses.items()}


def _save(model: DRNet, optimizer: torch.optim.Optimizer, schedule: Any, cfg: TrainConfig, step: int, path: Path) -> None:
    save_checkpoint(
        model,
        path,
        {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "step": step,
         "config": dataclasses.asdict(cfg)},
    )

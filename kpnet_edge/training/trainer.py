"""The training loop: AdamW with one-cycle LR, bf16 autocast and channels-last on CPUs that have
it, CUDA when present, a metrics log, checkpoints that resume exactly."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from kpnet_edge.checkpoint import load_drnet, read_checkpoint, save_checkpoint
from kpnet_edge.data.mtfl import load_mtfl
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.data.retinaface import load_retinaface_labels
from kpnet_edge.data.splits import check_split, split_records, write_split
from kpnet_edge.datapaths import data_root
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import list_images
from kpnet_edge.model import DRNet
from kpnet_edge.training.dataset import (
    Batch,
    MixedSizeBatches,
    MixtureDataset,
    PhotoDataset,
    SceneDataset,
    collate,
)
from kpnet_edge.training.fake_quant import (
    drnet_ordered_parameters,
    float_weights,
    prepare_quantization_aware,
)
from kpnet_edge.training.losses import (
    keypoint_loss,
    scale_bce_loss,
    scale_focal_loss,
    soft_argmax_in_windows,
)
from kpnet_edge.training.narrow import narrow_head
from kpnet_edge.training.photos import PhotoSampler, load_photos
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
    init_from: str = ""  # start from these weights with a fresh optimiser (fine-tuning); a wider head is narrowed
    synthetic_weight: float = 1.0  # mixture weight of synthetic MTFL scenes (0: none)
    # Real labelled photos: [{name, labels (RetinaFace label.txt), images, weight, min_quality,
    # val_fraction}]; each source's validation split is held out and recorded in splits_dir.
    photo_sources: list[dict] = field(default_factory=list)
    splits_dir: str = "configs/splits"
    eval_every: int = 0  # steps between dev-set evaluations (0: never); best.pt keeps the best
    dev_sets: list[str] = field(default_factory=lambda: ["wider", "face_mask", "caltech"])
    dev_limit: int = 0  # images per dev set (0: all)
    # Train under simulated INT8 (training/fake_quant.py): fine-tuning for a model that must
    # survive quantisation. Runs in float32; checkpoints hold plain DRNet weights, and dev evals
    # score the simulated INT8 model.
    quantization_aware: bool = False

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


def _load_initial_weights(model: DRNet, path: str) -> None:
    """init_from's weights into `model`. A checkpoint whose widths differ only by a wider head is
    narrowed to model's head first (training.narrow), so a cheaper variant starts trained."""
    source = load_drnet(path)
    if source.widths != model.widths:
        same_body = {k: v for k, v in source.widths.items() if k != "head"} == {
            k: v for k, v in model.widths.items() if k != "head"}
        if not (same_body and model.widths["head"] < source.widths["head"]):
            raise KpnetError(f"{path}: a DRNet of widths {source.widths} cannot start one of widths "
                             f"{model.widths} (only a narrower head can be derived from it)")
        source = narrow_head(source, model.widths["head"])
    model.load_state_dict(source.state_dict())


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


def build_dataset(cfg: TrainConfig) -> MixtureDataset:
    """The weighted mixture of synthetic scenes and each photo source's training split."""
    parts: list[tuple[Any, float]] = []
    if cfg.synthetic_weight > 0:
        parts.append((SceneDataset(build_generator(cfg), cfg.seed), cfg.synthetic_weight))
    for number, source in enumerate(cfg.photo_sources):
        records = training_records(source, Path(cfg.splits_dir))
        sampler = PhotoSampler(load_photos(records), cfg.seed + 1 + number)
        parts.append((PhotoDataset(sampler, cfg.scene_size), float(source.get("weight", 1.0))))
    if not parts:
        raise KpnetError("nothing to train on: synthetic_weight is 0 and there are no photo_sources")
    return MixtureDataset(parts, cfg.seed)


def training_records(source: dict, splits_dir: Path) -> list[AnnotatedImage]:
    """A photo source's records minus its validation split, which is recorded on first use and
    checked on every later one (so a changed split never leaks held-out images into training)."""
    try:
        name, labels, images = source["name"], Path(source["labels"]), Path(source["images"])
    except KeyError as error:
        raise KpnetError(f"photo source {source}: missing {error}") from None
    if not images.is_absolute() and not images.exists():
        images = data_root() / images
    records = load_retinaface_labels(labels, images, source.get("min_quality"))
    fraction = float(source.get("val_fraction", 0.1))
    split_file = splits_dir / f"{name}_val.txt"
    if split_file.exists():
        check_split(records, images, fraction, split_file)
    else:
        write_split(split_records(records, images, fraction)[1], images, split_file)
    return split_records(records, images, fraction)[0]


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
    model = DRNet(**cfg.widths)
    if cfg.init_from:
        _load_initial_weights(model, cfg.init_from)
    state = read_checkpoint(resume) if resume else None
    if state is not None:
        model.load_state_dict(state["state_dict"])
    # With quantization_aware the network trained is the fake-quantised copy of `model`; its
    # parameters are handed to the optimiser in DRNet's order, so optimiser state saved by
    # either kind of run resumes in the other.
    network = prepare_quantization_aware(model) if cfg.quantization_aware else model
    network = network.to(device)
    if device.type == "cpu":
        network = network.to(memory_format=torch.channels_last)
    parameters = drnet_ordered_parameters(network, model) if cfg.quantization_aware else network.parameters()
    optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.learning_rate, total_steps=cfg.steps, pct_start=cfg.warmup_fraction
    )
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        _restore_schedule(schedule, state["schedule"], start, cfg.steps)
    dataset = build_dataset(cfg)
    end = min(cfg.steps, stop_at or cfg.steps)
    batches = MixedSizeBatches(cfg.batch_size, cfg.crop_size, cfg.scene_size, cfg.full_scene_every, end, start)
    loader = DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate, num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers > 0 else None,
    )
    autocast = cfg.bf16 and not cfg.quantization_aware and (device.type == "cuda" or _cpu_has_bf16())
    log_path = out_dir / "metrics.jsonl"
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, file=sys.stderr, unit="step")
    started, seen = time.perf_counter(), 0
    best = _best_so_far(out_dir / "dev.jsonl")
    evaluator = DevEvaluator(cfg) if cfg.eval_every else None
    network.train()
    with log_path.open("a") as log:
        for step, batch in enumerate(loader, start=start):
            losses = _train_step(network, batch, cfg, device, autocast, optimizer)
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
                _save(network, optimizer, schedule, cfg, done, out_dir / "last.pt")
            if evaluator and (done % cfg.eval_every == 0 or done == end):
                best = _evaluate_and_keep_best(evaluator, network, optimizer, schedule, cfg, done, best)
    bar.close()
    return out_dir / "last.pt"


def _restore_schedule(schedule: Any, saved: dict, start: int, steps: int) -> None:
    """Load the LR schedule; when the run's length changed (`steps` differs from the saved one),
    rebuild it for the new length and fast-forward it to `start` instead, and say so."""
    if saved.get("total_steps") == steps:
        schedule.load_state_dict(saved)
        return
    print(f"resuming into a schedule of {steps} steps (saved: {saved.get('total_steps')}); "
          f"learning rate fast-forwarded to step {start}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stepping the schedule without the optimiser
        for _ in range(start):
            schedule.step()


def seen_total(cfg: TrainConfig, step: int) -> int:
    """Training images seen after `step` steps (whole-scene batches hold a quarter as many)."""
    batches = MixedSizeBatches(cfg.batch_size, cfg.crop_size, cfg.scene_size, cfg.full_scene_every, step)
    return sum(len(batch) for batch in batches)


def dev_score(results: dict) -> float:
    """The number best.pt is chosen by: mean AP50 >= 24 px over the box dev sets evaluated."""
    values = [r["ap50_24"] for r in results.values() if r.get("ap50_24") is not None]
    return float(np.mean(values)) if values else float("nan")


def _best_so_far(dev_log: Path) -> float:
    if not dev_log.exists():
        return -1.0
    records = [json.loads(line) for line in dev_log.read_text().splitlines() if line.strip()]
    scores = [record["score"] for record in records if "score" in record]
    return max(scores, default=-1.0)


class DevEvaluator:
    """Scores the model being trained on the dev sets. Everything it needs is imported and loaded
    when it is built, at the start of the run, so a long run never depends on later edits."""

    def __init__(self, cfg: TrainConfig) -> None:
        from kpnet_edge.detector import FaceDetector
        from kpnet_edge.evaluation.devsets import evaluate_on_dev_sets, load_dev_set
        from kpnet_edge.postprocess import DEFAULT_SCORE_THRESHOLD, PostprocessParams
        from kpnet_edge.runtimes.torch_runtime import TorchRuntime

        self._detector, self._runtime, self._evaluate = FaceDetector, TorchRuntime, evaluate_on_dev_sets
        self._operating_score = DEFAULT_SCORE_THRESHOLD  # Caltech recall's, as benchmarks/peers.py
        self._params = PostprocessParams(proposal_threshold=0.05, score_threshold=0.02)
        self.dev_sets = [load_dev_set(name, data_root(), cfg.dev_limit or None, Path(cfg.splits_dir))
                         for name in cfg.dev_sets]

    def __call__(self, model: torch.nn.Module) -> dict:
        detector = self._detector(self._runtime(model), self._params)
        return self._evaluate(lambda image: [f.to_dict() for f in detector.detect(image)], self.dev_sets,
                              self._operating_score)


def _evaluate_and_keep_best(evaluator: DevEvaluator, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                            schedule: Any, cfg: TrainConfig, step: int, best: float) -> float:
    """Score the model on the dev sets, log a line to dev.jsonl, save best.pt when it improves.
    A failing evaluation is logged, not fatal: the run matters more than one of its checks."""
    out_dir = Path(cfg.out_dir)
    network.eval()
    started = time.perf_counter()
    record: dict[str, Any] = {"step": step, "samples_seen": seen_total(cfg, step)}
    try:
        results = evaluator(network)
    except Exception as error:  # noqa: BLE001 - logged, and training goes on
        record["error"] = f"{type(error).__name__}: {error}"
        results = None
    finally:
        network.train()
    if results is not None:
        record.update(score=dev_score(results), eval_s=round(time.perf_counter() - started, 1), **results)
    with (out_dir / "dev.jsonl").open("a") as log:
        log.write(json.dumps(record) + "\n")
    if results is not None and record["score"] > best:
        _save(network, optimizer, schedule, cfg, step, out_dir / "best.pt")
        return record["score"]
    return best


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
    ignore = batch.ignore.to(device)
    if cfg.scale_loss == "focal":
        scale = scale_focal_loss(scale_logits, target, ignore=ignore)
    else:
        scale = scale_bce_loss(scale_logits, target, ignore=ignore)
    face_heatmaps = landmark_logits[batch.face_image.to(device)]
    keypoints = soft_argmax_in_windows(face_heatmaps, batch.windows.to(device))
    keypoint = keypoint_loss(keypoints, batch.landmarks.to(device), batch.window_sides.to(device),
                             batch.landmark_mask.to(device))
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


def _save(network: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Any, cfg: TrainConfig, step: int,
          path: Path) -> None:
    """A checkpoint of plain DRNet weights (a fake-quantised network's float weights)."""
    save_checkpoint(
        float_weights(network, cfg.widths) if cfg.quantization_aware else network,
        path,
        {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "step": step,
         "config": dataclasses.asdict(cfg)},
    )

"""Training samples: synthetic scenes (or crops of them) with their scale-map and keypoint targets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from kpnet_edge import config
from kpnet_edge.training.photos import PhotoSampler
from kpnet_edge.training.synth import SceneGenerator, random_crop
from kpnet_edge.training.targets import face_targets, landmark_heatmap_target, scale_map_target


@dataclass
class Sample:
    """One training image: pixels (3, h, w) uint8, scale target (S, h/2, w/2) uint8 (255 = 1:
    a quarter of float32's bytes through the loader's shared memory), the auxiliary landmark
    heatmap target (K, h/2, w/2) uint8 likewise, the ignore mask (h/2, w/2) uint8 (1: the scale
    loss does not call it background), and per face windows (F, 4), landmarks (F, K, 2) in cells,
    window sides (F,) in cells, landmark_mask (F, K) bool (the points Eq. 7 may use)."""

    pixels: torch.Tensor
    scale_target: torch.Tensor
    landmark_target: torch.Tensor
    windows: torch.Tensor
    landmarks: torch.Tensor
    window_sides: torch.Tensor
    landmark_mask: torch.Tensor
    ignore: torch.Tensor


class SceneDataset(Dataset):
    """Deterministic samples: item (index, crop_size) is scene `index` cut to crop_size (the full
    scene when crop_size equals its size)."""

    def __init__(self, generator: SceneGenerator, seed: int) -> None:
        self.generator = generator
        self.seed = seed

    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, item: tuple[int, int]) -> Sample:
        index, crop_size = item
        scene = self.generator.generate(index)
        if crop_size < scene.image.shape[0]:
            rng = np.random.default_rng((self.seed, index, crop_size))
            scene = random_crop(scene, crop_size, rng)
        return make_sample(scene.image, scene.boxes, scene.landmarks, scene.visible, self.generator.size)


def make_sample(image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, visible: np.ndarray,
                image_max_edge: int, ignore_boxes: np.ndarray | None = None) -> Sample:
    """Targets for one RGB uint8 image (h, w, 3) with face boxes (N, 4), landmarks (N, K, 2) in
    its pixels and their visibility (N, K); image_max_edge is Eq. 1's I_max of the scene the image
    was cut from. Each landmark that is visible and inside the map teaches Eq. 7 (a missing or
    guessed point costs nothing); ignore_boxes (M, 4) are regions the scale loss must not call
    background."""
    height, width = image.shape[:2]
    map_shape = (height // config.STRIDE, width // config.STRIDE)
    targets = face_targets(boxes, map_shape, image_max_edge)
    scale_target = scale_map_target(targets, map_shape)
    landmark_cells = config.pixel_to_cell(np.asarray(landmarks, dtype=np.float64).reshape(-1, config.NUM_LANDMARKS, 2))
    # Eq. 7 needs a landmark inside the map: the soft-argmax cannot reach beyond it.
    inside = np.all(
        (landmark_cells >= 0) & (landmark_cells <= np.array([map_shape[1] - 1, map_shape[0] - 1])), axis=2
    )
    visible = np.asarray(visible, dtype=bool).reshape(-1, config.NUM_LANDMARKS)
    point_mask = visible & inside
    keep = targets.valid & point_mask.any(axis=1)
    window_sides = targets.sizes / config.STRIDE
    landmark_target = landmark_heatmap_target(landmark_cells, point_mask, window_sides, map_shape)
    landmark_cells = np.where(point_mask[..., None], landmark_cells, 0.0)
    return Sample(
        pixels=torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        scale_target=torch.from_numpy(np.round(scale_target * 255).astype(np.uint8)),
        landmark_target=torch.from_numpy(np.round(landmark_target * 255).astype(np.uint8)),
        windows=torch.from_numpy(targets.windows[keep]),
        landmarks=torch.from_numpy(landmark_cells[keep].astype(np.float32)),
        window_sides=torch.from_numpy(window_sides[keep].astype(np.float32)),
        landmark_mask=torch.from_numpy(point_mask[keep]),
        ignore=torch.from_numpy(ignore_cells(ignore_boxes, map_shape)),
    )


def ignore_cells(boxes: np.ndarray | None, map_shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8, 1 at output cells whose centre pixel lies inside any box (N, 4) in pixels."""
    mask = np.zeros(map_shape, dtype=np.uint8)
    if boxes is None or len(boxes) == 0:
        return mask
    low = np.ceil(config.pixel_to_cell(np.asarray(boxes)[:, :2])).astype(int)
    high = np.floor(config.pixel_to_cell(np.asarray(boxes)[:, 2:])).astype(int)
    for (x1, y1), (x2, y2) in zip(np.maximum(low, 0), high):
        mask[y1:y2 + 1, x1:x2 + 1] = 1
    return mask


@dataclass
class Batch:
    """Stacked samples; faces of all images concatenated, `face_image` says whose they are."""

    pixels: torch.Tensor
    scale_target: torch.Tensor
    landmark_target: torch.Tensor
    windows: torch.Tensor
    landmarks: torch.Tensor
    window_sides: torch.Tensor
    landmark_mask: torch.Tensor
    ignore: torch.Tensor
    face_image: torch.Tensor


def collate(samples: list[Sample]) -> Batch:
    """Stack images and targets; concatenate the variable number of faces."""
    return Batch(
        pixels=torch.stack([s.pixels for s in samples]),
        scale_target=torch.stack([s.scale_target for s in samples]),
        landmark_target=torch.stack([s.landmark_target for s in samples]),
        windows=torch.cat([s.windows for s in samples]),
        landmarks=torch.cat([s.landmarks for s in samples]),
        window_sides=torch.cat([s.window_sides for s in samples]),
        landmark_mask=torch.cat([s.landmark_mask for s in samples]),
        ignore=torch.stack([s.ignore for s in samples]),
        face_image=torch.cat([torch.full((len(s.windows),), i) for i, s in enumerate(samples)]),
    )


class MixedSizeBatches(Sampler):
    """Batches of (scene index, crop size): mostly small crops (cheap), every `full_every`-th
    batch whole scenes at a quarter of the batch size (same cost), so large faces are seen whole.
    Starts at batch `start` for resuming."""

    def __init__(self, batch_size: int, crop_size: int, scene_size: int, full_every: int,
                 num_batches: int, start: int = 0) -> None:
        self.batch_size, self.crop_size, self.scene_size = batch_size, crop_size, scene_size
        self.full_every, self.num_batches, self.start = full_every, num_batches, start

    def __len__(self) -> int:
        return self.num_batches - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.num_batches):
            full = self.full_every > 0 and step % self.full_every == self.full_every - 1
            size = self.scene_size if full else self.crop_size
            count = max(1, self.batch_size * (self.crop_size**2) // (size**2)) if full else self.batch_size
            first = step * self.batch_size
            yield [(first + i, size) for i in range(count)]


class PhotoDataset(Dataset):
    """Samples cut from real labelled photos: item (index, size) is a letterbox of a whole photo
    when size is the scene size, else a zoom or mosaic crop (training/photos.py)."""

    def __init__(self, sampler: PhotoSampler, scene_size: int) -> None:
        self.sampler = sampler
        self.scene_size = scene_size

    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, item: tuple[int, int]) -> Sample:
        index, size = item
        cut = self.sampler.cut(index, size, full_scene=size >= self.scene_size)
        return make_sample(cut.image, cut.boxes, cut.landmarks, cut.visible, config.INPUT_SIZE, cut.ignore_boxes)


class MixtureDataset(Dataset):
    """Item (index, size) drawn from one of several datasets with the given weights; the choice is
    a pure function of (seed, index), so a run replays exactly."""

    def __init__(self, parts: Sequence[tuple[Dataset, float]], seed: int) -> None:
        weights = np.array([weight for _, weight in parts], dtype=np.float64)
        if len(parts) == 0 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {weights.tolist()}")
        self.datasets = [dataset for dataset, _ in parts]
        self.probabilities = weights / weights.sum()
        self.seed = seed

    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, item: tuple[int, int]) -> Sample:
        rng = np.random.default_rng((self.seed, item[0], 1))
        return self.datasets[int(rng.choice(len(self.datasets), p=self.probabilities))][item]

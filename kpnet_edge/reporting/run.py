"""Run every model over the evaluation images with the one post-processor: detect-JSON records for
the metrics and, against the reference, the stage-by-stage figures."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from kpnet_edge import config
from kpnet_edge.data.mtfl import read_mtfl_landmarks
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.data.wider import load_wider
from kpnet_edge.detector import faces_from_detections
from kpnet_edge.imageio import read_image
from kpnet_edge.postprocess import Detections, PostprocessParams, postprocess
from kpnet_edge.preprocess import letterbox
from kpnet_edge.reporting.models import ReportModel
from kpnet_edge.reporting.stages import StageAccumulator
from kpnet_edge.runtimes.base import Runtime

WIDER_DIR = "widerface_val200_dev"
WIDER_NAME = "WIDER-val-200-dev@416"
"""How the box results are quoted: 416 px stretched WIDER val images, not a WIDER FACE score."""
MTFL_DIR = "mtfl"
MTFL_SIZE = 160
"""MTFL's 80x80 crops are upscaled to this before detection, as benchmarks/peers.py does."""

CHUNK = 8
"""Images per model call during evaluation."""


@dataclass(frozen=True)
class EvalSets:
    """The evaluation images: WIDER-val-200-dev@416 boxes and MTFL test landmarks (N, 5, 2)."""

    wider: list[AnnotatedImage]
    mtfl_paths: list[Path]
    mtfl_points: np.ndarray

    @classmethod
    def load(cls, data: Path, limit: int | None = None) -> EvalSets:
        """From the shared data folder's usual layout; limit keeps the first N images of each set."""
        wider_dir = data / WIDER_DIR
        wider = load_wider(wider_dir / "wider_face_val_bbx_gt.txt", wider_dir / "images")[:limit]
        paths, points = read_mtfl_landmarks(data / MTFL_DIR / "new_testing.txt")
        return cls(wider, paths[:limit], points[:limit])

    def sample(self, wider: int | None, mtfl: int | None, seed: int = 0) -> EvalSets:
        """A seeded random subset of at most `wider` / `mtfl` images (None: all of that set), kept
        in file order: the default report's quick look at the same images every run."""
        rng = np.random.default_rng(seed)

        def pick(total: int, wanted: int | None) -> np.ndarray:
            if wanted is None or wanted >= total:
                return np.arange(total)
            return np.sort(rng.choice(total, size=wanted, replace=False))

        keep_wider, keep_mtfl = pick(len(self.wider), wider), pick(len(self.mtfl_paths), mtfl)
        return EvalSets([self.wider[i] for i in keep_wider], [self.mtfl_paths[i] for i in keep_mtfl],
                        self.mtfl_points[keep_mtfl])


@dataclass
class ModelRun:
    """One model's output on the evaluation sets; stages is None for the reference."""

    wider_records: list[dict] = field(default_factory=list)
    mtfl_records: list[dict] = field(default_factory=list)
    stages: StageAccumulator | None = None


def collect(
    models: Sequence[ReportModel],
    sets: EvalSets,
    params: PostprocessParams,
    reference: ReportModel | None = None,
    operating_score: float = PostprocessParams.score_threshold,
    moved_px: float = 2.0,
    progress: bool = False,
    runtimes: Mapping[str, Runtime] | None = None,
    canvas_size: int = config.INPUT_SIZE,
) -> dict[str, ModelRun]:
    """Records of every model (batch-1 files, or `runtimes` already opened) on both sets, all on
    canvas_size letterbox canvases; with a reference, each other model's maps and faces on the
    WIDER images are compared with the reference's and the ground truth (StageAccumulator)."""
    runtimes = dict(runtimes) if runtimes is not None else {m.key: m.open(1) for m in models}
    runs = {
        m.key: ModelRun(stages=None if reference is None or m.key == reference.key
                        else StageAccumulator(params, operating_score, moved_px))
        for m in models
    }
    bar = tqdm(total=len(sets.wider) + len(sets.mtfl_paths), unit="img", disable=not progress,
               file=sys.stderr, desc="accuracy")
    done = 0
    for paths, canvases, scales, sizes in _chunks([r.path for r in sets.wider], None, canvas_size):
        maps = {key: runtime.run(canvases) for key, runtime in runtimes.items()}
        for i, (path, scale, size) in enumerate(zip(paths, scales, sizes)):
            truth = sets.wider[done + i]
            faces = {key: _detect(outputs, i, params).scaled(1.0 / scale) for key, outputs in maps.items()}
            for key, run in runs.items():
                run.wider_records.append(_record(path, size, faces[key]))
                if run.stages is not None:
                    reference_maps = (maps[reference.key][0][i], maps[reference.key][1][i])
                    run.stages.add(str(path), scale, reference_maps, (maps[key][0][i], maps[key][1][i]),
                                   faces[reference.key], faces[key], truth)
        done += len(paths)
        bar.update(len(paths))
    for paths, canvases, scales, sizes in _chunks(sets.mtfl_paths, MTFL_SIZE, canvas_size):
        for key, runtime in runtimes.items():
            outputs = runtime.run(canvases)
            for i, (path, scale, size) in enumerate(zip(paths, scales, sizes)):
                # Canvas -> the 160 px upscale -> the crop (pixel k has its centre at k).
                faces = _detect(outputs, i, params).scaled(1.0 / scale)
                runs[key].mtfl_records.append(_record(path, size, _from_upscaled(faces, size)))
        bar.update(len(paths))
    bar.close()
    return runs


def probe_seconds(runtimes: Mapping[str, Runtime], sets: EvalSets, params: PostprocessParams,
                  canvas_size: int = config.INPUT_SIZE) -> dict[str, float]:
    """Seconds per image of each runtime (model call and post-processing, after one untimed call)
    on the first WIDER chunk: what the accuracy pass's estimate is made from."""
    paths = [record.path for record in sets.wider[:CHUNK]] or list(sets.mtfl_paths[:CHUNK])
    if not paths:
        return dict.fromkeys(runtimes, 0.0)
    _, canvases, _, _ = next(_chunks(paths, None, canvas_size))
    seconds = {}
    for key, runtime in runtimes.items():
        runtime.run(canvases)
        start = time.perf_counter()
        outputs = runtime.run(canvases)
        for i in range(len(canvases)):
            _detect(outputs, i, params)
        seconds[key] = (time.perf_counter() - start) / len(canvases)
    return seconds


Chunk = tuple[list[Path], np.ndarray, list[float], list[tuple[int, int]]]


def _chunks(paths: Sequence[Path], upscale: int | None, canvas_size: int = config.INPUT_SIZE) -> Iterator[Chunk]:
    """(paths, canvases (n, H, W, 3), letterbox scales, (width, height) of the images) per CHUNK
    images; with upscale the image is first resized to upscale x upscale (square crops)."""
    for start in range(0, len(paths), CHUNK):
        chunk = list(paths[start : start + CHUNK])
        canvases, scales, sizes = [], [], []
        for path in chunk:
            image = read_image(path)
            sizes.append((image.shape[1], image.shape[0]))
            if upscale is not None:
                image = cv2.resize(image, (upscale, upscale), interpolation=cv2.INTER_LINEAR)
            canvas, box = letterbox(image, size=canvas_size)
            canvases.append(canvas)
            scales.append(box.scale)
        yield chunk, np.stack(canvases), scales, sizes


def _from_upscaled(faces: Detections, size: tuple[int, int]) -> Detections:
    """Faces found on the MTFL_SIZE upscale, in the (width, height) crop's pixels; pixel k has its
    centre at k at both resolutions, so x = (x_up + 0.5) * width / MTFL_SIZE - 0.5."""
    factor = np.asarray(size, dtype=np.float64) / MTFL_SIZE
    box_factor = np.tile(factor, 2)
    return Detections(
        boxes=(faces.boxes + 0.5) * box_factor - 0.5,
        scores=faces.scores,
        landmarks=(faces.landmarks + 0.5) * factor - 0.5,
        proposals=(faces.proposals + 0.5) * box_factor - 0.5,
        proposal_scores=faces.proposal_scores,
    )


def _detect(outputs: tuple[np.ndarray, np.ndarray], index: int, params: PostprocessParams) -> Detections:
    return postprocess(outputs[0][index], outputs[1][index], params)


def _record(path: Path, size: tuple[int, int], detections: Detections) -> dict:
    faces = faces_from_detections(detections)
    return {"image": str(path), "width": size[0], "height": size[1], "faces": [f.to_dict() for f in faces]}


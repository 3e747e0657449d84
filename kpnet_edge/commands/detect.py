"""`kpnet-edge detect`: faces in an image, a folder of images or a video, as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from kpnet_edge.atomic import atomic_path, atomic_write_text
from kpnet_edge.converters.targets import PRECISIONS
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import count_frames, is_video, list_images, read_image, read_video_frames
from kpnet_edge.postprocess import PostprocessParams
from kpnet_edge.runtimes.registry import BACKENDS

if TYPE_CHECKING:
    from kpnet_edge.detector import FaceDetector

STREAM_BATCH = 8
"""Default images per model call for folders and videos (throughput); a single image runs alone."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add detect's arguments."""
    parser.add_argument("source", type=Path, help="an image, a folder of images, or a video file")
    parser.add_argument("--weights", type=Path,
                        help="DRNet checkpoint for --backend torch (default: the shipped model)")
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="a `kpnet-edge convert` output folder, run by --backend onnx, openvino or tflite")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="runtime (default: onnx with --model, else torch)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="which of --model's files to run (default: %(default)s)")
    parser.add_argument("--device", default="cpu",
                        help="torch: cpu, cuda[:N]; onnx: cpu, cuda[:N], tensorrt; openvino: CPU, GPU, NPU, AUTO; "
                             "tflite: cpu (default: cpu)")
    parser.add_argument("--threads", type=int, help="CPU threads of the runtime (default: the runtime's)")
    parser.add_argument("--json", type=Path, help="write the records here instead of stdout")
    parser.add_argument("--draw", type=Path, metavar="DIR", help="save annotated images here")
    parser.add_argument("--threshold", type=float, default=PostprocessParams.score_threshold,
                        help="minimum face score in [0, 1] (default: %(default)s)")
    parser.add_argument("--proposal-threshold", type=float,
                        default=PostprocessParams.proposal_threshold,
                        help="minimum scale-map probability of a proposal (default: %(default)s)")
    parser.add_argument("--batch", type=int,
                        help=f"images per model call (default: {STREAM_BATCH} for folders and videos, else 1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Detect faces in args.source; returns 0, or 1 when some inputs of a folder were unreadable."""
    from kpnet_edge.detector import detection_record

    inputs, total = _inputs(args.source)
    for value, name in ((args.threshold, "--threshold"), (args.proposal_threshold, "--proposal-threshold")):
        if not 0.0 <= value <= 1.0:
            raise KpnetError(f"{name} must lie in [0, 1], got {value}")
    params = PostprocessParams(score_threshold=args.threshold, proposal_threshold=args.proposal_threshold)
    stream = args.source.is_dir() or is_video(args.source)
    batch = args.batch if args.batch is not None else (STREAM_BATCH if stream else 1)
    if batch < 1:
        raise KpnetError(f"--batch must be at least 1, got {batch}")
    detector = _detector(args, params, batch, stream)
    records, failures = [], []
    progress = tqdm(total=total, unit="img", disable=total is not None and total <= 1, file=sys.stderr)
    pending: deque[tuple[str, np.ndarray]] = deque()

    def readable() -> Iterator[np.ndarray]:
        for name, image in inputs:
            if isinstance(image, KpnetError):
                failures.append(str(image))
                tqdm.write(f"kpnet-edge detect: skipped {image}", file=sys.stderr)
                progress.update(1)
            else:
                pending.append((name, image))
                yield image

    for faces in detector.detect_stream(readable()):
        name, image = pending.popleft()
        records.append(detection_record(name, image, faces))
        if args.draw:
            _save_drawing(args.draw, name, image, faces)
        progress.update(1)
    progress.close()
    text = json.dumps(records, indent=1)
    if args.json:
        atomic_write_text(args.json, text + "\n")
        faces_total = sum(len(r["faces"]) for r in records)
        print(f"{faces_total} faces in {len(records)} images -> {args.json}", file=sys.stderr)
    else:
        print(text)
    if failures:
        print(f"kpnet-edge detect: {len(failures)} input(s) could not be read", file=sys.stderr)
        return 1
    return 0


def _detector(args: argparse.Namespace, params: PostprocessParams, batch: int, stream: bool) -> FaceDetector:
    """The PyTorch checkpoint's detector, or --model's file on --backend; folders and videos ask
    OpenVINO for throughput (parallel requests) rather than latency."""
    from kpnet_edge.detector import FaceDetector

    backend = args.backend or ("onnx" if args.model else "torch")
    if backend == "torch":
        if args.model:
            raise KpnetError("--model is for --backend onnx, openvino or tflite; torch runs --weights")
        return FaceDetector.from_artifacts(None, "torch", args.precision, args.device, batch, params,
                                           args.threads, weights=args.weights)
    if args.weights:
        raise KpnetError(f"--weights is for --backend torch; {backend} runs --model's files")
    if not args.model:
        raise KpnetError(f"--backend {backend} needs --model DIR (a `kpnet-edge convert` output folder)")
    options = {"hint": "THROUGHPUT", "async_inference": True} if backend == "openvino" and stream else {}
    return FaceDetector.from_artifacts(args.model, backend, args.precision, args.device, batch, params,
                                       args.threads, **options)


def _inputs(source: Path) -> tuple[Iterator[tuple[str, np.ndarray | KpnetError]], int | None]:
    """(name, image or the error reading it) pairs for an image, a folder or a video."""
    if not source.exists():
        raise KpnetError(f"{source}: no such file or folder")
    if source.is_dir():
        paths = list_images(source)
        return (( str(p), _try_read(p)) for p in paths), len(paths)
    if is_video(source):
        frames = read_video_frames(source)
        return ((f"{source}#frame={i}", f) for i, f in enumerate(frames)), count_frames(source)
    return iter([(str(source), read_image(source))]), 1


def _try_read(path: Path) -> np.ndarray | KpnetError:
    try:
        return read_image(path)
    except KpnetError as error:
        return error


def _save_drawing(folder: Path, name: str, image: np.ndarray, faces: list) -> None:
    from kpnet_edge.drawing import draw_faces

    stem = Path(name.replace("#frame=", "_frame")).stem
    target = folder / f"{stem}.jpg"
    with atomic_path(target) as temp:
        ok, data = cv2.imencode(".jpg", draw_faces(image, faces))
        if not ok:
            raise KpnetError(f"{target}: could not encode the annotated image")
        temp.write_bytes(data.tobytes())

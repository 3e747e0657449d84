"""`kpnet-edge detect`: faces in an image, a folder of images or a video, as JSON."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from kpnet_edge.atomic import atomic_path, atomic_write_text
from kpnet_edge.artifacts.targets import PRECISIONS
from kpnet_edge.commands.output_paths import check_output_file, check_output_folder
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import (DamagedImageWarning, count_frames, is_video, list_images, read_image,
                                read_video_frames)
from kpnet_edge.postprocess import PostprocessParams
from kpnet_edge.read_ahead import read_ahead
from kpnet_edge.runtimes.registry import RUNTIME_NAMES, SHIPPED_MODELS

if TYPE_CHECKING:
    from kpnet_edge.detector import FaceDetector

STREAM_BATCH = 8
"""Default images per model call for folders and videos (throughput); a single image runs alone."""

DRAWING_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})
"""Input formats a drawing keeps (OpenCV writes 3-channel images in them)."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add detect's arguments."""
    parser.add_argument("source", type=Path, help="an image, a folder of images, or a video file")
    parser.add_argument("--weights", type=Path,
                        help="DRNet checkpoint for --backend torch (default: the shipped model)")
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="a `kpnet-edge convert` output folder, run by --backend onnx, openvino or tflite")
    parser.add_argument("--backend", choices=RUNTIME_NAMES,
                        help="runtime (default: with --model, the first installed backend that has a file "
                             "there; else torch, or without torch the shipped converted models)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="which of --model's files to run (default: fp32 where there is one)")
    parser.add_argument("--device", default="cpu",
                        help="torch: cpu, cuda[:N]; onnx: cpu, cuda[:N], tensorrt; openvino: CPU, GPU, NPU, AUTO; "
                             "tflite: cpu (default: cpu)")
    parser.add_argument("--threads", type=int, help="CPU threads of the runtime (default: the runtime's)")
    parser.add_argument("--json", type=Path, help="write the records here instead of stdout")
    parser.add_argument("--draw", type=Path, metavar="DIR",
                        help="save annotated images here (a folder's sub-folders are kept; video frames "
                             "are numbered, clip_frame000012.jpg)")
    parser.add_argument("--threshold", type=float, default=PostprocessParams.score_threshold,
                        help="minimum face score in [0, 1] (default: %(default)s)")
    parser.add_argument("--proposal-threshold", type=float,
                        default=PostprocessParams.proposal_threshold,
                        help="minimum scale-map probability of a proposal (default: the lowest whose face "
                             "can still reach --threshold, so --threshold alone decides)")
    parser.add_argument("--input-size", type=int, metavar="N",
                        help="letterbox canvas side, a multiple of 8 (default: 256, or a converted model's own); "
                             "a larger canvas finds smaller faces for (N / 256)^2 the model's work")
    parser.add_argument("--batch", type=int,
                        help=f"images per model call (default: {STREAM_BATCH} for folders and videos, else 1)")
    parser.add_argument("--read-ahead", type=int, metavar="N",
                        help="images decoded ahead in a background thread while the model runs (default: "
                             f"2 batches for folders and videos, so {2 * STREAM_BATCH}; 0: decode in turn)")
    parser.add_argument("--overlap", action="store_true",
                        help="post-process each batch in a background thread while the model runs the next; "
                             "pays when --threads leaves a core free (2 cores, 1 thread: +12 %% images/s)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="ray: spread a folder or a .txt list of images over Ray actors "
                             "(needs kpnet-edge[scale]; see README, 'Many images on a Ray cluster')")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="--engine ray: join this cluster (default: $RAY_ADDRESS, else a local instance)")
    parser.add_argument("--workers", type=int, help="--engine ray: detector actors (default: one per CPU, "
                                                    "or per GPU with --device cuda)")
    parser.add_argument("--shards", type=Path, metavar="DIR", default=Path("detections"),
                        help="--engine ray: folder for the JSON Lines shards (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Detect faces in args.source; returns 0, 1 when some inputs were unreadable or damaged (or a
    video ended early), 130 / 143 when interrupted by SIGINT / SIGTERM (the records so far are
    written)."""
    from kpnet_edge.detector import detection_record

    inputs, total = _inputs(args.source)
    for value, name in ((args.threshold, "--threshold"), (args.proposal_threshold, "--proposal-threshold")):
        if value is not None and not 0.0 <= value <= 1.0:  # None: derived from --threshold
            raise KpnetError(f"{name} must lie in [0, 1], got {value}")
    if args.input_size is not None and (args.input_size < 8 or args.input_size % 8):
        raise KpnetError(f"--input-size must be a positive multiple of 8 (256, 320, 416, ...), got {args.input_size}")
    params = PostprocessParams(score_threshold=args.threshold, proposal_threshold=args.proposal_threshold)
    stream = args.source.is_dir() or is_video(args.source)
    batch = args.batch if args.batch is not None else (STREAM_BATCH if stream else 1)
    if batch < 1:
        raise KpnetError(f"--batch must be at least 1, got {batch}")
    depth = args.read_ahead if args.read_ahead is not None else (2 * batch if stream else 0)
    if depth < 0:
        raise KpnetError(f"--read-ahead must be 0 or more, got {depth}")
    _check_outputs(args)
    if args.engine == "ray":
        from kpnet_edge.scale.detect_command import run_on_ray  # Ray is imported only here

        return run_on_ray(args, params)
    detector = _detector(args, params, batch, stream)
    records: list[dict] = []
    problems: list[str] = []
    progress = tqdm(total=total, unit="img", disable=total is not None and total <= 1, file=sys.stderr)
    pending: deque[tuple[Item, np.ndarray]] = deque()

    def readable() -> Iterator[np.ndarray]:
        for item, (image, warned, error) in read_ahead(inputs, lambda item: _try_read(item.read), depth):
            if error is not None and not stream:
                raise error  # the only input: nothing to go on with
            for message in warned + ([f"skipped {error}"] if error is not None else []):
                problems.append(message)
                tqdm.write(f"kpnet-edge detect: warning: {message}", file=sys.stderr)
            if image is None:
                progress.update(1)
                continue
            pending.append((item, image))
            yield image

    try:
        with _signals_interrupt():
            for faces in detector.detect_stream(readable(), overlap=args.overlap):
                item, image = pending.popleft()
                records.append(detection_record(item.name, image, faces))
                if args.draw:
                    _save_drawing(args.draw / item.drawing, image, faces)
                progress.update(1)
    except Interrupted as stop:
        progress.close()
        where = _write_records(records, args.json)
        of_total = f" of {total}" if total is not None else ""
        print(f"kpnet-edge detect: interrupted by {stop.name}: {len(records)}{of_total} images in {where} "
              "(partial results; the rest were not processed)", file=sys.stderr)
        return stop.exit_code
    progress.close()
    if is_video(args.source) and total is not None and len(records) + len(problems) < total:
        message = (f"{args.source}: the video ended after {len(records)} of the {total} frames its header "
                   "states (a truncated or damaged file)")
        problems.append(message)
        print(f"kpnet-edge detect: warning: {message}", file=sys.stderr)
    where = _write_records(records, args.json)
    if args.json:
        faces_total = sum(len(r["faces"]) for r in records)
        print(f"{faces_total} faces in {len(records)} images -> {where}", file=sys.stderr)
    if problems:
        print(f"kpnet-edge detect: {len(problems)} input(s) unreadable, damaged or incomplete (see above)",
              file=sys.stderr)
        return 1
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """--json and --draw are writable, and drawings would not land on the inputs themselves."""
    if args.json:
        check_output_file(args.json, "--json")
    if not args.draw:
        return
    check_output_folder(args.draw, "--draw")
    draw, source = args.draw.resolve(), args.source.resolve()
    if args.source.is_dir() and (draw == source or source in draw.parents):
        raise KpnetError(f"--draw {args.draw}: is inside the source folder {args.source}; the drawings would "
                         "mix with (or overwrite) the images; choose a folder outside it")
    single_image = not args.source.is_dir() and not is_video(args.source)
    if single_image and draw / _drawing_name(Path(args.source.name)) == source:
        raise KpnetError(f"--draw {args.draw}: the drawing would overwrite {args.source}; choose another folder")


def _write_records(records: list[dict], path: Path | None) -> str:
    """The records as JSON to `path` (atomically) or stdout; says where they went."""
    text = json.dumps(records, indent=1)
    if path is None:
        print(text, flush=True)
        return "stdout"
    atomic_write_text(path, text + "\n")
    return str(path)


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the records so far are still written."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted while the block runs (main thread only; elsewhere
    Python cannot install handlers and the defaults stay)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _detector(args: argparse.Namespace, params: PostprocessParams, batch: int, stream: bool) -> FaceDetector:
    """The PyTorch checkpoint's detector, or --model's file on --backend; folders and videos ask
    OpenVINO for throughput (parallel requests) rather than latency."""
    from kpnet_edge.detector import FaceDetector

    backend = args.backend or ("torch" if args.model is None and not args.precision and _torch_installed() else None)
    if backend == "torch":
        if args.model:
            raise KpnetError("--model is for --backend onnx, openvino or tflite; torch runs --weights")
        return FaceDetector.from_artifacts(None, "torch", args.precision, args.device, batch, params,
                                           args.threads, input_size=args.input_size, weights=args.weights)
    if args.weights:
        raise KpnetError(f"--weights is for --backend torch; {backend} runs --model's files")
    if not args.model and backend is not None:
        raise KpnetError(f"--backend {backend} needs --model DIR (a `kpnet-edge convert` output folder)")
    model = args.model or SHIPPED_MODELS
    if backend is None or args.precision is None:
        from kpnet_edge.runtimes.registry import choose_model

        entry = choose_model(model, backend, args.precision, batch)
        backend, args.precision = entry.format, entry.precision
        print(f"kpnet-edge detect: running {backend} {entry.precision} ({entry.file}) from {model}",
              file=sys.stderr)
    options = {"hint": "THROUGHPUT", "async_inference": True} if backend == "openvino" and stream else {}
    return FaceDetector.from_artifacts(model, backend, args.precision, args.device, batch, params,
                                       args.threads, input_size=args.input_size, **options)


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


@dataclass(frozen=True)
class Item:
    """One input: its name in the records, how to read it, and its drawing's path under --draw."""

    name: str
    read: Callable[[], np.ndarray]
    drawing: Path


def _inputs(source: Path) -> tuple[Iterator[Item], int | None]:
    """The items of an image, a folder (drawings keep the sub-folder layout, so same-named images
    in different sub-folders stay apart) or a video (drawings numbered by frame)."""
    if not source.exists():
        raise KpnetError(f"{source}: no such file or folder")
    if source.is_dir():
        paths = list_images(source)
        items = (Item(str(p), partial(read_image, p), _drawing_name(p.relative_to(source))) for p in paths)
        return items, len(paths)
    if is_video(source):
        frames = read_video_frames(source)
        items = (Item(f"{source}#frame={i}", partial(_decoded, frame), Path(f"{source.stem}_frame{i:06d}.jpg"))
                 for i, frame in enumerate(frames))
        return items, count_frames(source)
    return iter([Item(str(source), partial(read_image, source), _drawing_name(Path(source.name)))]), 1


def _decoded(frame: np.ndarray) -> np.ndarray:
    """A video frame is decoded as the video is read; its item's read() just hands it over."""
    return frame


def _drawing_name(relative: Path) -> Path:
    """The drawing's path: the input's own relative path and format where OpenCV writes colour in
    it, else PNG added to the name (x.pgm -> x.pgm.png, never clashing with an x.png)."""
    return relative if relative.suffix.lower() in DRAWING_SUFFIXES else relative.with_name(relative.name + ".png")


def _try_read(read: Callable[[], np.ndarray]) -> tuple[np.ndarray | None, list[str], KpnetError | None]:
    """(the image or None, damage warnings, the error when it could not be read)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedImageWarning)
        try:
            image = read()
        except KpnetError as error:
            return None, [], error
    return image, [str(w.message) for w in caught if issubclass(w.category, DamagedImageWarning)], None


def _save_drawing(target: Path, image: np.ndarray, faces: list) -> None:
    from kpnet_edge.drawing import draw_faces

    with atomic_path(target) as temp:
        ok, data = cv2.imencode(target.suffix, draw_faces(image, faces))
        if not ok:
            raise KpnetError(f"{target}: could not encode the annotated image")
        temp.write_bytes(data.tobytes())

"""End-to-end latency of KPNet on every backend and precision available, beside YuNet-n@320 and
YuNet-s@640, in one run: already-decoded photos in, faces in image pixels out, one image per call.

    python benchmarks/latency.py [--model DIR] [--variant NAME=DIR ...] [--files tflite:int8,...]
                                 [--threads 2] [--frames 200] [--rounds 5]

Per KPNet row: letterbox (pre), model, post-process (post) and end to end, p50 and p99 in ms, and
frames per second at the end-to-end median; every row also has the process's CPU time per frame
(all threads), which a loaded machine inflates far less than wall time. YuNet runs through OpenCV's FaceDetectorYN as the
project's teacher does (resize so the longer edge fills the input, pad, detect, map back); its
pre/model/post are not separable there, so it has end-to-end times only. Pipelines take turns in
`--rounds` rounds, so a change in the machine's load (the dev machine is shared with training)
hits every row alike: compare rows of one run, not runs. `--variant NAME=DIR` adds another convert
folder's files (e.g. a cheaper DRNet) as rows named kpnet-NAME, in the same turns. Writes
benchmarks/results/latency.json and latency.md (the table in the README).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kpnet_edge import config
from kpnet_edge.datapaths import data_root
from kpnet_edge.detector import FaceDetector
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import list_images, read_image
from kpnet_edge.reporting import environment

KPNET_FILES = (("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "fp16"),
               ("openvino", "int8"), ("tflite", "fp32"), ("tflite", "int8"))
"""(backend, precision) pairs looked for in --model; the ones the folder lacks are listed as such."""

YUNET = (("n", 320), ("s", 640))
"""The YuNet peers of issue 11: (variant, input size)."""

YUNET_MIN_SCORE = 0.3
"""The project's YuNet teacher threshold (kpnet_edge.teacher.YuNetTeacher)."""

Pipeline = Callable[[np.ndarray], tuple[float, float, float] | None]
"""One image -> (pre, model, post) seconds, or None where the stages are not separable."""


def kpnet_pipeline(detector: FaceDetector) -> Pipeline:
    def run(image: np.ndarray) -> tuple[float, float, float]:
        _, times = detector.detect_batch_timed([image])
        return times.pre, times.model, times.post

    return run


def yunet_pipeline(path: Path, size: int) -> Pipeline:
    from kpnet_edge.teacher import YuNetTeacher

    teacher = YuNetTeacher(path, size, min_score=YUNET_MIN_SCORE)

    def run(image: np.ndarray) -> None:
        teacher.detect(image)

    return run


def open_pipelines(args: argparse.Namespace, threads: int) -> tuple[dict[str, Pipeline], dict[str, str]]:
    """Every pipeline of the run at `threads` threads, and the ones that could not be opened (why)."""
    pipelines: dict[str, Pipeline] = {}
    missing: dict[str, str] = {}
    size = args.input_size
    if not args.no_torch:
        try:
            detector = FaceDetector.from_artifacts(None, "torch", "fp32", threads=threads, input_size=size,
                                                   weights=args.weights)
            pipelines[f"kpnet torch fp32 @{size}"] = kpnet_pipeline(detector)
        except (KpnetError, ImportError) as error:
            missing[f"kpnet torch fp32 @{size}"] = str(error)
    folders = ([("kpnet", args.model)] if args.model else []) + [(f"kpnet-{n}", d) for n, d in args.variant]
    for label, folder in folders:
        for backend, precision in args.files:
            name = f"{label} {backend} {precision} @{size}"
            try:
                detector = FaceDetector.from_artifacts(folder, backend, precision, threads=threads)
            except (KpnetError, ImportError) as error:
                missing[name] = str(error)
                continue
            if detector.input_size != size:
                missing[name] = f"the folder's model takes {detector.input_size}, not {size}"
                continue
            pipelines[name] = kpnet_pipeline(detector)
    for variant, yunet_size in YUNET:
        name = f"yunet-{variant} opencv fp32 @{yunet_size}"
        path = args.yunet / f"yunet_{variant}_{yunet_size}_{yunet_size}.onnx"
        try:
            pipelines[name] = yunet_pipeline(path, yunet_size)
        except KpnetError as error:
            missing[name] = str(error)
    return pipelines, missing


def measure(pipelines: dict[str, Pipeline], images: list[np.ndarray], frames: int, rounds: int,
            warmup: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per stage and end to end for `frames` images per pipeline, taken in turns."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in pipelines}
    for pipeline in pipelines.values():
        for image in images[:warmup]:
            pipeline(image)
    per_round = max(1, frames // rounds)
    for round_index in range(rounds):
        names = list(pipelines)
        names = names[round_index % len(names):] + names[: round_index % len(names)]  # rotate the order
        for name in names:
            for frame in range(per_round):
                image = images[(round_index * per_round + frame) % len(images)]
                start, cpu = time.perf_counter(), time.process_time()
                stages = pipelines[name](image)
                total = time.perf_counter() - start
                samples[name].setdefault("end_to_end", []).append(total)
                samples[name].setdefault("cpu", []).append(time.process_time() - cpu)
                if stages is not None:
                    for stage, seconds in zip(("pre", "model", "post"), stages):
                        samples[name].setdefault(stage, []).append(seconds)
    return samples


def summarise(samples: dict[str, list[float]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for stage, values in samples.items():
        p50, p99 = np.percentile(np.array(values) * 1e3, [50, 99])
        row[stage] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}
    row["fps"] = round(1e3 / row["end_to_end"]["p50"], 1)
    row["frames"] = len(samples["end_to_end"])
    return row


def markdown(result: dict[str, Any]) -> str:
    lines = ["| pipeline | threads | pre p50 / p99 | model p50 / p99 | post p50 / p99 | end to end p50 / p99 | fps "
             "| CPU p50 / p99 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    cell = lambda row, stage: f"{row[stage]['p50']:.2f} / {row[stage]['p99']:.2f}" if stage in row else "-"
    for run in result["runs"]:
        for name, row in run["rows"].items():
            lines.append(f"| {name} | {run['threads']} | {cell(row, 'pre')} | {cell(row, 'model')} | "
                         f"{cell(row, 'post')} | {cell(row, 'end_to_end')} | {row['fps']:.0f} | {cell(row, 'cpu')} |")
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    versions = {"opencv": cv2.__version__}
    for name in ("numpy", "onnxruntime", "openvino", "ai-edge-litert", "torch"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _variant(text: str) -> tuple[str, Path]:
    name, separator, folder = text.partition("=")
    if not separator or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, Path(folder)


def _files(text: str) -> list[tuple[str, str]]:
    files = [tuple(item.split(":", 1)) for item in text.split(",") if item]
    unknown = [":".join(f) for f in files if f not in KPNET_FILES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; known: "
                                         f"{', '.join(b + ':' + p for b, p in KPNET_FILES)}")
    return files  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a `kpnet-edge convert` output folder (default: torch only)")
    parser.add_argument("--variant", type=_variant, action="append", default=[], metavar="NAME=DIR",
                        help="another convert folder timed in the same run, rows named kpnet-NAME (repeatable)")
    parser.add_argument("--files", type=_files, default=list(KPNET_FILES), metavar="BACKEND:PRECISION,...",
                        help="which files of each folder to time (default: every one it has)")
    parser.add_argument("--weights", type=Path, help="checkpoint of the torch row (default: the shipped one)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch row")
    parser.add_argument("--images", type=Path, help="photos (default: WIDER-val-200-dev's images)")
    parser.add_argument("--count", type=int, default=50, help="photos to cycle through (default: %(default)s)")
    parser.add_argument("--input-size", type=int, default=config.INPUT_SIZE, help="KPNet canvas (default: %(default)s)")
    parser.add_argument("--threads", default="2", help="comma-separated thread counts, one run each (default: 2)")
    parser.add_argument("--frames", type=int, default=200, help="timed frames per pipeline (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="turns the pipelines take (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--yunet", type=Path, default=None, help="folder of YuNet ONNX files (default: peers/yunet)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency.json")
    args = parser.parse_args()
    args.yunet = args.yunet or data_root() / "peers" / "yunet"

    folder = args.images or data_root() / "widerface_val200_dev" / "images"
    images = [read_image(path) for path in list_images(folder)[: args.count]]
    runs, load_before = [], os.getloadavg()
    for threads in [int(t) for t in args.threads.split(",")]:
        cv2.setNumThreads(threads)  # OpenCV's resize and DNN (YuNet)
        pipelines, missing = open_pipelines(args, threads)
        samples = measure(pipelines, images, args.frames, args.rounds, args.warmup)
        runs.append({"threads": threads, "rows": {name: summarise(s) for name, s in samples.items()},
                     "not_run": missing})
    result = {
        "what": "one already-decoded photo per call -> faces in its pixels; ms; p50 / p99 over frames "
                "taken in turns by every pipeline (rounds), so rows of one run share the machine's state",
        "images": f"{len(images)} from {folder} (max edge {max(max(i.shape[:2]) for i in images)} px)",
        "frames": args.frames, "rounds": args.rounds,
        "machine": f"{environment.summary()} after, {load_before[0]:.1f} before",
        "tools": _versions(),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    for run in runs:
        for name, why in run["not_run"].items():
            print(f"not run ({run['threads']} threads): {name}: {why}")
    print(f"-> {args.out}, {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

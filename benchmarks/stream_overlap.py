"""Frames a second of a decoded stream, with and without post-processing overlapped with the
model (FaceDetector.detect_stream(overlap=True)), beside YuNet-n@320, in one run.

    python benchmarks/stream_overlap.py [--model DIR] [--backend tflite] [--precision int8]
                                        [--threads 1,2] [--count 100] [--rounds 5]

A video-like stream: WIDER-val-200-dev photos decoded beforehand, one frame per model call. For
each runtime thread count, the settings take turns over `--rounds` passes, so all see the same
machine state; YuNet-n@320 (OpenCV, same thread count) runs in the same turns as the peer.
Overlap pays only where the runtime's threads leave a core free. Writes
benchmarks/results/stream_overlap.json: frames per second per setting (median over rounds).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from kpnet_edge.datapaths import data_root
from kpnet_edge.detector import FaceDetector
from kpnet_edge.imageio import list_images, read_image
from kpnet_edge.reporting import environment
from kpnet_edge.runtimes.registry import SHIPPED_MODELS
from kpnet_edge.teacher import YuNetTeacher

YUNET_N = ("yunet_n_320_320.onnx", 320)
"""The peer of issue 11 (file in ../shared/data/peers/yunet, input size)."""


def frames_per_second(run: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def settings(detector: FaceDetector, yunet: YuNetTeacher, frames: list[np.ndarray]) -> dict[str, Callable[[], object]]:
    return {
        "kpnet, in turn": lambda: sum(1 for _ in detector.detect_stream(frames)),
        "kpnet, overlapped": lambda: sum(1 for _ in detector.detect_stream(frames, overlap=True)),
        "yunet-n@320": lambda: [yunet.detect(frame) for frame in frames],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODELS, help="convert folder (default: shipped)")
    parser.add_argument("--backend", default="tflite")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--threads", default="1,2", help="runtime thread counts (default: %(default)s)")
    parser.add_argument("--count", type=int, default=100, help="frames per pass (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stream_overlap.json")
    args = parser.parse_args()

    frames = [read_image(path) for path in list_images(data_root() / "widerface_val200_dev" / "images")[: args.count]]
    yunet_path = data_root() / "peers" / "yunet" / YUNET_N[0]
    runs = {}
    for threads in (int(text) for text in args.threads.split(",")):
        cv2.setNumThreads(threads)
        detector = FaceDetector.from_artifacts(args.model, args.backend, args.precision, threads=threads)
        timed = settings(detector, YuNetTeacher(yunet_path, YUNET_N[1], min_score=0.3), frames)
        for run in timed.values():
            run()  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in timed}
        for round_index in range(args.rounds):
            order = list(timed) if round_index % 2 == 0 else list(reversed(timed))
            for name in order:
                rates[name].append(frames_per_second(timed[name], len(frames)))
        medians = {name: round(float(np.median(values)), 1) for name, values in rates.items()}
        runs[f"{threads} threads"] = {
            "fps": medians,
            "overlap speed-up": round(medians["kpnet, overlapped"] / medians["kpnet, in turn"], 3),
            "fps per round": {name: [round(v, 1) for v in values] for name, values in rates.items()},
        }
        print(f"{threads} threads: " + ", ".join(f"{name} {fps:.0f} fps" for name, fps in medians.items()))
    result = {
        "pipeline": f"{args.backend} {args.precision}, one frame per model call, {len(frames)} decoded WIDER photos",
        "rounds": args.rounds,
        "runs": runs,
        "machine": environment.summary(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()

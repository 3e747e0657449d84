"""Photos from disk to faces, with and without read-ahead (kpnet_edge/read_ahead.py), in one run.

    python benchmarks/read_ahead.py [--model DIR] [--backend tflite] [--precision int8] [--threads 2]

What `kpnet-edge detect FOLDER` does per photo: read and decode the file, letterbox, model,
post-process. With read-ahead a background thread decodes the next photos while the model runs.
The two settings take turns over `--rounds` passes of the same photos (WIDER-val-200-dev and
Caltech WebFaces JPEGs, already in the page cache after the warm-up pass), so both see the same
machine state. Writes benchmarks/results/read_ahead.json: photos per second per setting (median
over rounds) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kpnet_edge.datapaths import data_root
from kpnet_edge.detector import FaceDetector
from kpnet_edge.imageio import list_images, read_image
from kpnet_edge.read_ahead import read_ahead
from kpnet_edge.reporting import environment
from kpnet_edge.runtimes.registry import SHIPPED_MODELS


def photos(count: int) -> list[Path]:
    """Half WIDER dev, half Caltech photos (different sizes: 416 px and up to ~600 px)."""
    wider = list_images(data_root() / "widerface_val200_dev" / "images")
    caltech = list_images(data_root() / "caltech_webfaces" / "images")
    return wider[: count // 2] + caltech[: count - count // 2]


def one_pass(detector: FaceDetector, paths: list[Path], depth: int) -> float:
    """Seconds to find the faces of every photo, decoding `depth` photos ahead (0: in turn)."""
    start = time.perf_counter()
    images = (image for _, image in read_ahead(paths, read_image, depth))
    for _ in detector.detect_stream(images):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODELS, help="convert folder (default: shipped)")
    parser.add_argument("--backend", default="tflite")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--threads", type=int, default=2, help="runtime threads (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=8, help="images per model call, as detect's default")
    parser.add_argument("--count", type=int, default=100, help="photos per pass (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "read_ahead.json")
    args = parser.parse_args()

    detector = FaceDetector.from_artifacts(args.model, args.backend, args.precision, threads=args.threads,
                                           batch_size=args.batch)
    paths = photos(args.count)
    depths = {"in turn (--read-ahead 0)": 0, f"read ahead {2 * args.batch} (default)": 2 * args.batch}
    one_pass(detector, paths, 0)  # warm-up: page cache, runtime allocations
    seconds: dict[str, list[float]] = {name: [] for name in depths}
    for round_index in range(args.rounds):
        order = list(depths) if round_index % 2 == 0 else list(reversed(depths))
        for name in order:
            seconds[name].append(one_pass(detector, paths, depths[name]))
    rates = {name: round(len(paths) / float(np.median(values)), 1) for name, values in seconds.items()}
    names = list(depths)
    result = {
        "pipeline": f"{args.backend} {args.precision}, {args.threads} threads, batch {args.batch}",
        "photos": len(paths),
        "rounds": args.rounds,
        "photos_per_s": rates,
        "speed-up": round(rates[names[1]] / rates[names[0]], 3),
        "seconds": {name: [round(v, 3) for v in values] for name, values in seconds.items()},
        "machine": environment.summary(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, rate in rates.items():
        print(f"{name:<28} {rate:7.1f} photos/s")
    print(f"speed-up {result['speed-up']:.2f}x -> {args.out}")


if __name__ == "__main__":
    main()

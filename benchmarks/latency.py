"""Latency of every backend x precision of a convert folder, side by side in one run: model time and
end-to-end time (letterbox + model + post-process), median and p90, at batch 1 and batch N.
Prints a table and writes benchmarks/results/latency.json.

    python benchmarks/latency.py --model DIR [--weights PT] [--images DIR] [--batch 8] [--threads 2]

Batch-N rows run the folder's batch-N file when it has one, else its batch-1 file N times;
OpenVINO runs them with the throughput hint and parallel requests, as `kpnet-edge detect` does for
folders. The torch row (FP32 reference) needs --weights.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kpnet_edge.converters.manifest import load_manifest
from kpnet_edge.detector import FaceDetector
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import list_images, read_image
from kpnet_edge.preprocess import letterbox
from kpnet_edge.runtimes.registry import open_runtime

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def percentiles_ms(function: Callable[[], Any], repeats: int, warmup: int = 3) -> tuple[float, float]:
    """(median, p90) wall time of function() in milliseconds, after warm-up calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    median, p90 = np.percentile(times, [50, 90]) * 1e3
    return round(float(median), 3), round(float(p90), 3)


def measure(model_dir: Path, weights: Path | None, backend: str, precision: str, batch: int, threads: int,
            images: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """One table row: times per call of `batch` images."""
    options: dict[str, Any] = {"weights": weights} if backend == "torch" else {}
    if backend == "openvino" and batch > 1:
        options.update(hint="THROUGHPUT", async_inference=True)
    row: dict[str, Any] = {"backend": backend, "precision": precision, "batch": batch, "threads": threads}
    try:
        runtime = open_runtime(model_dir, backend, precision, batch=batch, threads=threads, **options)
    except KpnetError as error:
        return {**row, "error": str(error)}
    entry = getattr(runtime, "entry", None)
    row["file"] = entry.file if entry is not None else str(weights)
    row["options"] = {k: v for k, v in options.items() if k != "weights"}
    chunk = [images[i % len(images)] for i in range(batch)]
    canvases = np.stack([letterbox(image)[0] for image in chunk])
    detector = FaceDetector(runtime, batch_size=batch)
    row["model_ms"] = percentiles_ms(lambda: runtime.run(canvases), repeats)
    row["end_to_end_ms"] = percentiles_ms(lambda: detector.detect_batch(chunk), repeats)
    row["end_to_end_ms_per_image"] = round(row["end_to_end_ms"][0] / batch, 3)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'backend':<9}{'prec':<6}{'batch':>5}{'thr':>4}  {'model med/p90 ms':>18}  "
              f"{'e2e med/p90 ms':>18}  {'e2e ms/img':>10}  file")
    print(header)
    print("-" * len(header))
    for row in rows:
        lead = f"{row['backend']:<9}{row['precision']:<6}{row['batch']:>5}{row['threads']:>4}  "
        if "error" in row:
            print(lead + f"error: {row['error']}")
            continue
        model = "{:.2f} / {:.2f}".format(*row["model_ms"])
        e2e = "{:.2f} / {:.2f}".format(*row["end_to_end_ms"])
        print(lead + f"{model:>18}  {e2e:>18}  {row['end_to_end_ms_per_image']:>10.2f}  {row['file']}")


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("numpy", "onnxruntime", "openvino", "ai-edge-litert", "torch"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a `kpnet-edge convert` output folder")
    parser.add_argument("--weights", type=Path, help="the checkpoint the folder was converted from (torch row)")
    parser.add_argument("--images", type=Path, default=EXAMPLES, help="input frames (default: examples/)")
    parser.add_argument("--batch", type=int, default=8, help="the batch-N rows' N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency.json")
    args = parser.parse_args()

    manifest = load_manifest(args.model)
    images = [read_image(path) for path in list_images(args.images)[: max(args.batch, 1)]]
    pairs = list(dict.fromkeys((m.format, m.precision) for m in manifest.models))
    if args.weights is not None:
        pairs.insert(0, ("torch", "fp32"))
    rows = [
        measure(args.model, args.weights, backend, precision, batch, args.threads, images, args.repeats)
        for backend, precision in pairs
        for batch in dict.fromkeys((1, args.batch))
    ]
    result = {
        "model_dir": str(args.model),
        "images": f"{len(images)} from {args.images}",
        "repeats": args.repeats,
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "tools": _versions(),
        "times": "per call of `batch` images: model = runtime.run on letterboxed canvases; "
                 "end_to_end = FaceDetector.detect_batch (letterbox + model + post-process)",
        "rows": rows,
    }
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()

"""Median time of the numpy post-processor for one image: S=60 + K=5 maps at 128x128 with 200
proposals (issue goal: <= 1 ms on the 2-core dev machine). Writes benchmarks/results/postprocess.json.

    python benchmarks/postprocess.py [--repeats 300] [--proposals 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from kpnet_edge import config
from kpnet_edge.postprocess import (
    PostprocessParams,
    find_proposals,
    nms,
    postprocess,
    proposal_windows,
    scale_adaptive_soft_argmax,
)


def synthetic_maps(proposals: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Background logits with `proposals` isolated peaks at random cells and scales, smooth
    random heatmaps: every peak survives thresholding, so the full pipeline runs on all of them."""
    rng = np.random.default_rng(seed)
    size = config.OUTPUT_SIZE
    scale = rng.normal(-8.0, 1.0, (config.NUM_SCALES, size, size)).astype(np.float32)
    cells = rng.choice(size * size, proposals, replace=False)
    scale[rng.integers(0, config.NUM_SCALES, proposals), cells // size, cells % size] = 4.0
    heat = rng.normal(0.0, 2.0, (config.NUM_LANDMARKS, size, size)).astype(np.float32)
    return scale, heat


def median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--proposals", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "postprocess.json")
    args = parser.parse_args()

    scale, heat = synthetic_maps(args.proposals)
    # No score threshold and no suppression: all proposals go through every stage.
    params = PostprocessParams(score_threshold=0.0, max_proposals=args.proposals)
    found = postprocess(scale, heat, params)
    cells, bins, _ = find_proposals(scale, params)
    sizes = config.bin_to_scale(bins + 0.5) * config.INPUT_SIZE
    windows = proposal_windows(cells, sizes, scale.shape[1:])
    boxes = found.boxes
    stages = {
        "total": lambda: postprocess(scale, heat, params),
        "proposals": lambda: find_proposals(scale, params),
        "soft_argmax+peaks": lambda: scale_adaptive_soft_argmax(heat, windows, config.SCORE_LANDMARKS),
        "nms": lambda: nms(boxes, found.scores, 0.6),
    }
    for function in stages.values():  # warm-up
        function()
    result = {
        "proposals": int(len(cells)),
        "faces_out": int(len(found)),
        "median_ms": {name: round(median_ms(f, args.repeats), 3) for name, f in stages.items()},
        "repeats": args.repeats,
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "numpy": np.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, value in result["median_ms"].items():
        print(f"{name:>18}: {value:7.3f} ms")
    print(f"({result['proposals']} proposals, {result['faces_out']} faces) -> {args.out}")


if __name__ == "__main__":
    main()

"""Resident-memory growth of one detector streaming frames, measured in a process of its own.

Run by test_runtime_threads.py as `python memory_probe.py FOLDER BACKEND FRAMES WINDOWS`: it
streams FRAMES frames as warm-up, then WINDOWS windows of FRAMES frames, and prints the resident
memory each window added, in bytes, as a JSON list. A fresh interpreter measures the detector
alone: inside the test process the heap carries every earlier test's allocations and threads,
and a full-suite run once saw 8 and 6 MiB grow in two windows that measure 0 here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from kpnet_edge.detector import FaceDetector


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def window_growths(folder: str, backend: str, frames: int, windows: int) -> list[int]:
    """Bytes of resident memory each of `windows` streams of `frames` frames added after a warm-up
    stream of the same length: pre-processing, the runtime and the post-processor's fast path."""
    detector = FaceDetector.from_artifacts(folder, backend, batch_size=8, threads=1)
    frame = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for _ in detector.detect_stream(frame for _ in range(frames)):
        pass
    growths = []
    for _ in range(windows):
        before = resident_bytes()
        count = sum(1 for _ in detector.detect_stream(frame for _ in range(frames)))
        growths.append(resident_bytes() - before)
        if count != frames:
            raise SystemExit(f"{backend}: {count} results for {frames} frames")
    return growths


if __name__ == "__main__":
    folder, backend, frames, windows = sys.argv[1:5]
    print(json.dumps(window_growths(folder, backend, int(frames), int(windows))))

"""One detector shared by several threads gives serial use's results, on every on-device backend;
memory stays flat over a thousand frames per backend."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from kpnet_edge.detector import Face, FaceDetector
from kpnet_edge.postprocess import PostprocessParams

BACKENDS = ("onnx", "openvino", "tflite")
PARAMS = PostprocessParams(proposal_threshold=0.15, score_threshold=0.0)
"""Low thresholds so the tiny random model leaves a handful of faces per frame to compare."""

THREADS = 4
MEMORY_FRAMES = 1000
"""Frames per window, and of the warm-up before the first: in a full-suite run OpenVINO's first
thousand frames after a 100-frame warm-up grew 4.9 MiB (lazy allocations), later windows 0 KiB."""
MEMORY_WINDOWS = 2
RSS_GROWTH_LIMIT = 4 << 20
"""Resident memory may grow by this much over MEMORY_FRAMES after warm-up in at least one of
MEMORY_WINDOWS consecutive windows: a leak grows in every window, a late lazy allocation (once,
4.4 MiB, seen after the full warm-up in one full-suite run) in one. Under 4 KiB a frame passes as
allocator noise; one leaked canvas a frame would be 190 MiB, one output pair 3.7 GiB."""


@pytest.fixture(scope="module")
def artifacts(tiny_models) -> Path:
    """The test run's one conversion of the tiny model (each backend's FP32 file is used)."""
    return tiny_models


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(12)]


def assert_same_faces(got: list[Face], want: list[Face], where: str) -> None:
    assert len(got) == len(want), f"{where}: {len(got)} faces, serially {len(want)}"
    for a, b in zip(got, want):
        assert np.allclose(a.box, b.box, atol=1e-4) and abs(a.score - b.score) < 1e-6, where
        assert np.allclose(a.landmarks, b.landmarks, atol=1e-4), where


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_sharing_a_detector_get_serial_results(backend, artifacts, frames):
    detector = FaceDetector.from_artifacts(artifacts, backend, params=PARAMS)
    serial = [detector.detect(frame) for frame in frames]
    assert sum(map(len, serial)) > 0, "no faces to compare"
    work = [i for _ in range(3) for i in range(len(frames))]
    with ThreadPoolExecutor(THREADS) as pool:
        threaded = list(pool.map(lambda i: detector.detect(frames[i]), work))
    for i, faces in zip(work, threaded):
        assert_same_faces(faces, serial[i], f"{backend} frame {i}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 5])
def test_overlapped_stream_gives_the_serial_faces_in_order(backend, batch_size, artifacts, frames):
    """detect_stream(overlap=True) post-processes a batch while the next one runs: same faces,
    same order, the last partial batch included (12 frames in batches of 5)."""
    detector = FaceDetector.from_artifacts(artifacts, backend, params=PARAMS, batch_size=batch_size)
    serial = [detector.detect(frame) for frame in frames]
    assert sum(map(len, serial)) > 0, "no faces to compare"
    overlapped = list(detector.detect_stream(iter(frames), overlap=True))
    assert len(overlapped) == len(frames)
    for i, (faces, want) in enumerate(zip(overlapped, serial)):
        assert_same_faces(faces, want, f"{backend} frame {i}")


def test_overlapped_stream_raises_a_failing_source_after_the_faces_before_it(artifacts, frames):
    detector = FaceDetector.from_artifacts(artifacts, "onnx", params=PARAMS)

    def source():
        yield from frames[:3]
        raise OSError("camera unplugged")

    stream = detector.detect_stream(source(), overlap=True)
    found = []
    with pytest.raises(OSError, match="camera unplugged"):
        for faces in stream:
            found.append(faces)
    assert len(found) == 3


def test_leaving_an_overlapped_stream_early_stops_it(artifacts, frames):
    detector = FaceDetector.from_artifacts(artifacts, "onnx", params=PARAMS)
    stream = detector.detect_stream(iter(frames), overlap=True)
    next(stream)
    stream.close()  # no "generator ignored GeneratorExit"; the worker thread is joined
    assert [t.name for t in threading.enumerate() if t.name.startswith("kpnet-post")] == []


def test_openvino_async_requests_from_threads_get_serial_results(artifacts, frames):
    serial = FaceDetector.from_artifacts(artifacts, "openvino", params=PARAMS).detect_batch(frames)
    detector = FaceDetector.from_artifacts(artifacts, "openvino", params=PARAMS, batch_size=4,
                                           hint="THROUGHPUT", async_inference=True)
    groups = [frames[i : i + 4] for i in range(0, len(frames), 4)]
    with ThreadPoolExecutor(THREADS) as pool:
        threaded = [faces for result in pool.map(detector.detect_batch, groups * 2) for faces in result]
    for i, faces in enumerate(threaded):
        assert_same_faces(faces, serial[i % len(frames)], f"async frame {i % len(frames)}")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc for resident memory")
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_stays_flat_over_a_thousand_frames(backend, artifacts):
    """Pre-processing, the runtime and the post-processor's fast path (default thresholds) in a
    steady stream, in a fresh process (memory_probe.py): resident memory after warm-up stays put
    in at least one window (see RSS_GROWTH_LIMIT)."""
    probe = [sys.executable, str(Path(__file__).with_name("memory_probe.py")), str(artifacts), backend,
             str(MEMORY_FRAMES), str(MEMORY_WINDOWS)]
    run = subprocess.run(probe, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, f"{backend}: the memory probe failed: {run.stderr[-2000:]}"
    growths = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(growths) == MEMORY_WINDOWS
    assert min(growths) <= RSS_GROWTH_LIMIT, (
        f"{backend}: resident memory grew {[g >> 10 for g in growths]} KiB in each window"
    )

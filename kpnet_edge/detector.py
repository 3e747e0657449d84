"""FaceDetector: the Python API. Pre-process, run a backend, post-process, map back to pixels."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kpnet_edge import config
from kpnet_edge.postprocess import Detections, PostprocessParams, postprocess
from kpnet_edge.preprocess import Letterbox, check_input_size, letterbox_into
from kpnet_edge.runtimes.base import Runtime
from kpnet_edge.runtimes.tensors import Outputs


@dataclass(frozen=True)
class Face:
    """One face in original image pixels: box [x1, y1, x2, y2], score in [0, 1], landmarks (K, 2)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The detect-JSON form: {"box": [4], "score": float, "landmarks": [[x, y] x K]}."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


def faces_from_detections(detections: Detections) -> list[Face]:
    """Split batched arrays into Face records."""
    return [
        Face(box=box, score=float(score), landmarks=points)
        for box, score, points in zip(detections.boxes, detections.scores, detections.landmarks)
    ]


@dataclass(frozen=True)
class StageTimes:
    """Wall seconds of one detect_batch call, per stage: letterbox, model, post-process."""

    pre: float
    model: float
    post: float


class FaceDetector:
    """KPNet face detector over any runtime adapter.

    input_size: the letterbox canvas side (default: the runtime's fixed input size when it has
    one, else config.INPUT_SIZE = 256). One checkpoint runs at any multiple of 8: scale bins keep
    meaning the same face size in network pixels (Eq. 1 with I_max = 256), so a larger canvas
    finds smaller faces of the original image, at (N / 256)^2 times the model's work.

    >>> detector = FaceDetector.from_checkpoint(input_size=416)  # doctest: +SKIP
    >>> faces = detector.detect(cv2.imread("group.jpg"))   # doctest: +SKIP
    """

    def __init__(
        self,
        runtime: Runtime,
        params: PostprocessParams | None = None,
        batch_size: int = 1,
        input_size: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.params = params or PostprocessParams()
        self.batch_size = max(1, int(batch_size))
        self.input_size = check_input_size(input_size or _fixed_input_size(runtime) or config.INPUT_SIZE)
        self._buffers = threading.local()  # each thread letterboxes into its own reused canvases

    @classmethod
    def from_checkpoint(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        params: PostprocessParams | None = None,
        batch_size: int = 1,
        input_size: int | None = None,
    ) -> FaceDetector:
        """A detector running the PyTorch model (the shipped checkpoint when `weights` is None)."""
        from kpnet_edge.runtimes.torch_runtime import TorchRuntime  # torch only when asked for

        return cls(TorchRuntime.from_checkpoint(weights, device), params, batch_size, input_size)

    @classmethod
    def from_artifacts(
        cls,
        model_dir: str | Path | None,
        backend: str = "onnx",
        precision: str = "fp32",
        device: str = "cpu",
        batch_size: int = 1,
        params: PostprocessParams | None = None,
        threads: int | None = None,
        input_size: int | None = None,
        **options: Any,
    ) -> FaceDetector:
        """A detector running a `kpnet-edge convert` output folder's model on `backend`.

        The folder's batch-`batch_size` file is used when it has one, else its batch-1 file;
        options go to the backend (see runtimes.registry.open_runtime). input_size: see the class;
        converted files take the size they were converted at.

        >>> detector = FaceDetector.from_artifacts("models/", "tflite", "int8")  # doctest: +SKIP
        """
        from kpnet_edge.runtimes.registry import open_runtime

        runtime = open_runtime(model_dir, backend, precision, device, batch_size, threads, **options)
        return cls(runtime, params, batch_size, input_size)

    def detect(self, image: np.ndarray, color_order: str = "bgr") -> list[Face]:
        """Faces in one image (BGR by default; RGB, grayscale and 4-channel also accepted)."""
        return self.detect_batch([image], color_order)[0]

    def detect_batch(self, images: list[np.ndarray], color_order: str = "bgr") -> list[list[Face]]:
        """Faces in each of several images, run through the model as one batch."""
        return self.detect_batch_timed(images, color_order)[0]

    def detect_batch_timed(
        self, images: list[np.ndarray], color_order: str = "bgr"
    ) -> tuple[list[list[Face]], StageTimes]:
        """detect_batch, and how long each stage took (benchmarks/latency.py reports them)."""
        start = time.perf_counter()
        canvases = self._canvases(len(images))
        boxes = [letterbox_into(image, canvas, color_order) for image, canvas in zip(images, canvases)]
        loaded = time.perf_counter()
        outputs = self._run_model(canvases)
        ran = time.perf_counter()
        results = self._faces(boxes, outputs)
        return results, StageTimes(pre=loaded - start, model=ran - loaded, post=time.perf_counter() - ran)

    def _run_model(self, canvases: np.ndarray) -> Outputs:
        # Quantised outputs stay quantised: the post-processor reads int8 levels in place of a
        # float32 copy 4x their size (TFLite INT8: 0.5 ms a frame on 2 cores), same faces.
        return self.runtime.run(canvases, dequantize=False)

    def _faces(self, boxes: list[Letterbox], outputs: Outputs) -> list[list[Face]]:
        """Post-processed faces of each canvas, in original image pixels."""
        results = []
        for box, scale_map, heatmaps in zip(boxes, *outputs):
            detections = postprocess(scale_map, heatmaps, self.params)
            results.append(faces_from_detections(detections.scaled(1.0 / box.scale)))
        return results

    def _canvases(self, count: int) -> np.ndarray:
        """(count, N, N, 3) uint8 canvases from this thread's buffer, reused across calls."""
        buffer = getattr(self._buffers, "canvases", None)
        if buffer is None or len(buffer) < count:
            buffer = np.empty((count, self.input_size, self.input_size, 3), dtype=np.uint8)
            self._buffers.canvases = buffer
        return buffer[:count]

    def detect_stream(
        self, images: Iterable[np.ndarray], color_order: str = "bgr", overlap: bool = False
    ) -> Iterator[list[Face]]:
        """Faces of each image of a stream (e.g. video frames), batched by `batch_size`.

        overlap: post-process each batch on a worker thread while the model runs on the next one
        (faces still come in order). It pays where the runtime's threads leave a core free: on 2
        cores, a 1-thread TFLite INT8 model went from 140 to 157 frames a second, and with 2
        threads from 226 down to 208 (benchmarks/stream_overlap.py). A failing source or model
        still hands on the faces of the frames before it, then raises.
        """
        if not overlap:
            for batch in _batches(images, self.batch_size):
                yield from self.detect_batch(batch, color_order)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kpnet-post") as pool:
            pending: Future[list[list[Face]]] | None = None
            failure: Exception | None = None
            try:
                for batch in _batches(images, self.batch_size):
                    canvases = self._canvases(len(batch))
                    boxes = [letterbox_into(image, canvas, color_order) for image, canvas in zip(batch, canvases)]
                    job = pool.submit(self._faces, boxes, self._run_model(canvases))
                    if pending is not None:
                        yield from pending.result()
                    pending = job
            except Exception as error:  # the source or the model failed: first hand on what was found
                failure = error
            if pending is not None:
                yield from pending.result()
            if failure is not None:
                raise failure


def _batches(images: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Lists of `size` images (the last one shorter) from a stream."""
    batch: list[np.ndarray] = []
    for image in images:
        batch.append(image)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fixed_input_size(runtime: Runtime) -> int | None:
    """The canvas side a converted model was built for (its manifest's input shape), if any."""
    tensor = getattr(getattr(runtime, "entry", None), "input", None)
    if tensor is None:
        return None
    shape, layout = list(tensor.shape), getattr(tensor, "layout", "NHWC")
    return int(shape[1] if layout == "NHWC" else shape[2])


def detection_record(name: str, image: np.ndarray, faces: list[Face]) -> dict[str, Any]:
    """One detect-JSON record: {"image", "width", "height", "faces": [...]}."""
    height, width = image.shape[:2]
    return {"image": name, "width": int(width), "height": int(height), "faces": [f.to_dict() for f in faces]}

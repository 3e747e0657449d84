"""Faces in many images on a Ray cluster: image paths as a Ray Dataset, `map_batches` over an actor
pool holding one FaceDetector per actor, and the records streamed back to this process, which
writes them as JSON Lines shards (shards.py).

Workers read the images themselves (paths travel, not pixels), with the same reader and detector
code as the single-process `detect`, so the faces are the same; on a cluster every node must see
the paths (a shared file system)."""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kpnet_edge.detector import FaceDetector, detection_record
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import DamagedImageWarning, read_image
from kpnet_edge.scale.cluster import Cluster
from kpnet_edge.scale.shards import RECORDS_PER_SHARD, ShardWriter

CALLS_PER_TASK = 8
"""Model calls (of `batch` images) per Ray batch: few enough Ray calls that their overhead is small."""
BLOCKS_PER_WORKER = 4
"""Blocks per actor at least, so a small job still spreads over every actor."""
MAX_BLOCK_ROWS = 1024
"""Paths per block at most: a block is the unit Ray retries and balances."""


@dataclass(frozen=True)
class ActorPlan:
    """How many detector actors, what each reserves, and what its runtime is told."""

    workers: int
    num_cpus: float
    num_gpus: float
    device: str
    threads: int

    def describe(self) -> str:
        """E.g. "2 actors x 1 CPU" or "8 actors x (1 CPU, 1 GPU)"."""
        gpu = f", {self.num_gpus:g} GPU" if self.num_gpus else ""
        return f"{self.workers} actor{'s' if self.workers != 1 else ''} x ({self.num_cpus:g} CPU{gpu})"


def needs_gpu(device: str) -> bool:
    """True for devices that run on an NVIDIA GPU, which Ray schedules as its "GPU" resource."""
    return device.startswith("cuda") or device == "tensorrt"


def plan_actors(cluster: Cluster, device: str = "cpu", workers: int | None = None,
                threads: int | None = None) -> ActorPlan:
    """Actors sized to the cluster: by default one per GPU for a CUDA device, else one per
    `threads` CPUs (default 1). Requests are scaled down to fit (fractional CPUs or GPUs), since
    actors asking for more than the cluster has would wait forever."""
    if workers is not None and workers < 1:
        raise KpnetError(f"--workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise KpnetError(f"--threads must be at least 1, got {threads}")
    if cluster.cpus <= 0:
        raise KpnetError(f"the {cluster.describe()} offers no CPUs to run actors on")
    wanted_cpus = float(threads or 1)
    gpu = needs_gpu(device)
    if gpu and cluster.gpus <= 0:
        raise KpnetError(f"--device {device} needs GPU actors, but the {cluster.describe()} has no GPUs")
    if workers is None:
        workers = max(1, int(cluster.gpus) if gpu else int(cluster.cpus // wanted_cpus))
    num_cpus = min(wanted_cpus, cluster.cpus / workers)
    num_gpus = min(1.0, cluster.gpus / workers) if gpu else 0.0
    # Ray gives each GPU actor its own CUDA_VISIBLE_DEVICES, so inside it the GPU is cuda:0.
    actor_device = "cuda" if device.startswith("cuda") else device
    return ActorPlan(workers, num_cpus, num_gpus, actor_device, threads or max(1, int(num_cpus)))


class DetectWorker:
    """The actor: builds one FaceDetector, then turns batches of paths into rows of
    (index, image, record as a JSON line, error, warning, faces). A damaged image that still
    decodes (DamagedImageWarning) is detected and its warning kept, as the single-process path does."""

    def __init__(self, make_detector: Callable[[], FaceDetector]) -> None:
        self.detector = make_detector()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names, paths = batch["image"], batch["path"]
        lines, errors, damage = [""] * len(names), [""] * len(names), [""] * len(names)
        counts = [0] * len(names)
        readable: list[tuple[int, np.ndarray]] = []
        for row, path in enumerate(paths):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DamagedImageWarning)
                try:
                    readable.append((row, read_image(path)))
                except KpnetError as error:
                    errors[row] = str(error)
                    lines[row] = json.dumps({"image": str(names[row]), "error": str(error)})
            damage[row] = "; ".join(str(w.message) for w in caught
                                    if issubclass(w.category, DamagedImageWarning))
        faces_per_image = self.detector.detect_stream(image for _, image in readable)
        for (row, image), faces in zip(readable, faces_per_image):
            lines[row] = json.dumps(detection_record(str(names[row]), image, faces))
            counts[row] = len(faces)
        return {
            "index": batch["index"],
            "image": names,
            "record": np.array(lines, dtype=object),
            "error": np.array(errors, dtype=object),
            "warning": np.array(damage, dtype=object),
            "faces": np.array(counts, dtype=np.int64),
        }


@dataclass
class DetectSummary:
    """What a run produced: counts, the shard files, the messages of unreadable inputs (failures)
    and of damaged ones that were still read (damaged), and, when asked for, every readable
    image's record in input order."""

    images: int = 0
    faces: int = 0
    shards: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    records: list[dict] | None = None

    def to_dict(self) -> dict:
        """The JSON form written beside the shards (summary.json)."""
        return {"images": self.images, "readable": self.images - len(self.failures),
                "unreadable": len(self.failures), "damaged": len(self.damaged), "faces": self.faces,
                "shards": [p.name for p in self.shards], "errors": self.failures, "warnings": self.damaged}


def detect_on_ray(
    names: Sequence[str],
    make_detector: Callable[[], FaceDetector],
    plan: ActorPlan,
    shards: Path,
    batch: int = 8,
    keep_records: bool = False,
    records_per_shard: int = RECORDS_PER_SHARD,
    progress: bool = False,
) -> DetectSummary:
    """Detect faces in the images `names` (paths) with `plan.workers` actors, each holding
    make_detector()'s detector (any backend and precision), running `batch` images per model call.

    Every image gets one JSON line in the shards in `shards`: today's detect record (with a
    "warning" when the image is damaged but decodes), or {"image", "error"} when it cannot be read
    (never fatal). keep_records also returns the readable images' records in input order (the
    single-process `detect --json` list).
    Needs a connected Ray (cluster.connect).
    """
    import ray.data

    if not names:
        raise KpnetError("no images to detect faces in")
    writer = ShardWriter(shards, records_per_shard)
    block_rows = max(batch, min(MAX_BLOCK_ROWS, math.ceil(len(names) / (BLOCKS_PER_WORKER * plan.workers))))
    items = [{"index": i, "image": str(name), "path": str(Path(name).resolve())} for i, name in enumerate(names)]
    dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / block_rows))
    results = dataset.map_batches(
        DetectWorker,
        fn_constructor_args=(make_detector,),
        batch_size=batch * CALLS_PER_TASK,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.workers),
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
    )
    summary = DetectSummary()
    kept: dict[int, dict] = {}
    bar = tqdm(total=len(names), unit="img", disable=not progress, file=sys.stderr)
    try:
        for rows in results.iter_batches(batch_size=None, batch_format="numpy"):
            for index, line, error, damage, count in zip(rows["index"], rows["record"], rows["error"],
                                                         rows["warning"], rows["faces"]):
                summary.images += 1
                for message in ([f"skipped {error}"] if error else []) + ([damage] if damage else []):
                    tqdm.write(f"kpnet-edge detect: warning: {message}", file=sys.stderr)
                if error:
                    summary.failures.append(error)
                else:
                    summary.faces += int(count)
                    if keep_records:
                        kept[int(index)] = json.loads(line)
                if damage:
                    summary.damaged.append(damage)
                    line = json.dumps({**json.loads(line), "warning": damage})
                writer.add(line)
            bar.update(len(rows["index"]))
    except ray.exceptions.RayError as error:
        raise _user_error(error) from None
    except KeyboardInterrupt:
        writer.close()  # keep what was done: the records so far as a last, complete shard
        raise
    finally:
        bar.close()
    writer.close()
    summary.shards = writer.written
    if keep_records:
        summary.records = [kept[i] for i in sorted(kept)]
    return summary


def _user_error(error: Exception) -> Exception:
    """A KpnetError raised inside an actor (a missing model file, say) as itself; anything else
    as a one-line KpnetError."""
    cause: BaseException | None = error
    for _ in range(8):  # RayTaskError.cause, or the chain of `raise ... from`
        if cause is None or isinstance(cause, KpnetError):
            break
        cause = getattr(cause, "cause", None) or cause.__cause__
    if isinstance(cause, KpnetError):
        return KpnetError(str(cause))
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return KpnetError(f"the Ray job failed: {first_line}")

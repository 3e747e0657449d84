"""Peer detectors (YuNet-n, YuNet-s, OpenCV's Haar cascade) measured by kpnet_edge's own evaluation.

Scores WIDER-val-200-dev@416 (AP50 for faces >= 16 and >= 24 px, recall at 1 false positive per
image), MTFL test (miss rate and inter-ocular NME of the best-matching face) and median CPU
milliseconds per image, so a KPNet row added to PEERS is compared on exactly the same footing.

    python benchmarks/peers.py [--limit N] [--out benchmarks/results/peers.json]

With --dev it scores the real-photo dev sets instead (kpnet_edge/evaluation/devsets.py):
WIDER-val-200-dev@416, the face-mask validation split (AP50 >= 24 px) and the Caltech Web Faces
validation split (recall at the operating score, 4-point NME, mouth centre = mean of the
corners), with YuNet-n/-s at 320 and 640 and KPNet at each input size:

    python benchmarks/peers.py --dev [--kpnet-sizes 256 320 416] [--weights CKPT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kpnet_edge.data.mtfl import read_mtfl_landmarks
from kpnet_edge.data.wider import load_wider
from kpnet_edge.datapaths import data_root
from kpnet_edge.errors import KpnetError
from kpnet_edge.evaluation.detection import evaluate_detections, thin_curves
from kpnet_edge.evaluation.devsets import DEV_SET_NAMES, evaluate_on_dev_sets, load_dev_set, run_detector
from kpnet_edge.evaluation.landmarks import evaluate_landmarks
from kpnet_edge.evaluation.table import format_table, percent
from kpnet_edge.postprocess import DEFAULT_SCORE_THRESHOLD
from kpnet_edge.teacher import TeacherFaces, YuNetTeacher

Detector = Callable[[np.ndarray], list[dict]]
"""BGR uint8 image (H, W, 3) -> faces [{"box": [x1, y1, x2, y2], "score", "landmarks"?}]."""

Builder = Callable[[Path], Detector]
"""Shared data folder -> Detector."""

YUNET_SCORE_THRESHOLD = 0.01
"""Low, so that AP sees the whole precision-recall curve."""

YUNET_SIZES = (320, 640)
"""The fixed input sizes the YuNet ONNX files were exported with."""

DEFAULT_OUT = Path(__file__).parent / "results" / "peers.json"
YUNET_OPERATING_SCORE = 0.5
"""OpenCV's FaceDetectorYN default: the score a YuNet face needs to count as found on Caltech."""
KPNET_OPERATING_SCORE = DEFAULT_SCORE_THRESHOLD
"""The detector's default score threshold: a KPNet face needs it to count as found on Caltech."""

MIN_SIZES = (16, 24)
MTFL_SIZE = 160
"""MTFL's 80x80 crops are upscaled to this size before detection: at 80 px the face is ~40 px."""


@dataclass(frozen=True)
class Peer:
    """A registered detector: build(data_root) -> Detector, and its operating score for MTFL.

    mtfl_min_score is the score a face needs to count as found on MTFL crops: a usable operating
    point, where WIDER's AP uses every detection.
    """

    name: str
    build: Builder
    mtfl_min_score: float


PEERS: dict[str, Peer] = {}


def register(name: str, mtfl_min_score: float) -> Callable[[Builder], Builder]:
    """Decorator adding a detector builder to PEERS under name."""

    def add(build: Builder) -> Builder:
        PEERS[name] = Peer(name, build, mtfl_min_score)
        return build

    return add


@register("yunet-n", mtfl_min_score=0.5)
def yunet_n(data: Path) -> Detector:
    """YuNet-n (libfacedetection.train), run by cv2.FaceDetectorYN."""
    return yunet(data / "peers" / "yunet", "n")


@register("yunet-s", mtfl_min_score=0.5)
def yunet_s(data: Path) -> Detector:
    """YuNet-s (libfacedetection.train), run by cv2.FaceDetectorYN."""
    return yunet(data / "peers" / "yunet", "s")


@register("haar", mtfl_min_score=-np.inf)
def haar(data: Path) -> Detector:  # noqa: ARG001 - the cascade ships with OpenCV
    """OpenCV's frontal-face Haar cascade; scores are the last stage's weights.

    OpenCV's own defaults (scale step 1.1, 3 neighbours, 24 px window) and histogram
    equalisation, as in OpenCV's face-detection sample; every output is a detection at its
    operating point, so MTFL uses no extra score threshold.
    """
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise KpnetError(f"{path}: cannot load the Haar cascade (OpenCV 4.x needed)")

    def detect(image: np.ndarray) -> list[dict]:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        rects, _, weights = cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=3, outputRejectLevels=True
        )
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        return [
            {"box": box.tolist(), "score": float(score)}
            for box, score in zip(boxes, np.ravel(weights))
        ]

    return detect


def yunet(folder: Path, variant: str) -> Detector:
    """YuNet with the smallest fixed-size model the image fits in, padded bottom-right with black.

    Images larger than the largest model are shrunk to fit (never enlarged), through
    kpnet_edge.teacher.YuNetTeacher. The outputs are mapped back with _rescale's pixel-centre
    convention, not the teacher's plain scaling, as this benchmark always has.
    """
    teachers = {size: yunet_teacher(folder, variant, size) for size in YUNET_SIZES}

    def detect(image: np.ndarray) -> list[dict]:
        height, width = image.shape[:2]
        size = next((s for s in YUNET_SIZES if max(height, width) <= s), YUNET_SIZES[-1])
        faces, (resized_width, resized_height) = teachers[size].detect_resized(image)
        return _rescale(face_dicts(faces), width / resized_width, height / resized_height)

    return detect


def yunet_teacher(folder: Path, variant: str, size: int) -> YuNetTeacher:
    """YuNet-<variant> of fixed input size x size at YUNET_SCORE_THRESHOLD, never enlarging images."""
    path = folder / f"yunet_{variant}_{size}_{size}.onnx"
    return YuNetTeacher(path, size, YUNET_SCORE_THRESHOLD, enlarge=False)


def face_dicts(faces: TeacherFaces) -> list[dict]:
    """A teacher's faces as detect-JSON faces (box, score, landmarks)."""
    return [{"box": box.tolist(), "score": float(score), "landmarks": points.tolist()}
            for box, points, score in zip(faces.boxes, faces.landmarks, faces.scores)]


KPNET_PARAMS = {"proposal_threshold": 0.05, "score_threshold": 0.02}
"""Low thresholds for the KPNet rows, so AP sees the whole curve (YuNet's 0.01 in spirit)."""


def kpnet(weights: Path | None) -> Detector:
    """KPNet + DRNet through the toolkit's own FaceDetector (PyTorch, FP32)."""
    from kpnet_edge.detector import FaceDetector
    from kpnet_edge.postprocess import PostprocessParams

    detector = FaceDetector.from_checkpoint(weights, params=PostprocessParams(**KPNET_PARAMS))

    def detect(image: np.ndarray) -> list[dict]:
        return [face.to_dict() for face in detector.detect(image)]

    return detect


# MTFL counts a face found at the detector's default operating score, as YuNet's 0.5.
register("kpnet", mtfl_min_score=KPNET_OPERATING_SCORE)(lambda data: kpnet(None))


def upscaled(detect: Detector, size: int) -> Detector:
    """detect run on the image resized to size x size, outputs mapped back to the input's pixels."""

    def run(image: np.ndarray) -> list[dict]:
        height, width = image.shape[:2]
        faces = detect(cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR))
        return _rescale(faces, width / size, height / size)

    return run


def benchmark(peer: Peer, data: Path, limit: int | None) -> dict:
    """WIDER-val-200-dev@416 and MTFL test results of one peer."""
    wider_dir = data / "widerface_val200_dev"
    wider = load_wider(wider_dir / "wider_face_val_bbx_gt.txt", wider_dir / "images")[:limit]
    mtfl_paths, mtfl_points = read_mtfl_landmarks(data / "mtfl" / "new_testing.txt")
    mtfl_paths, mtfl_points = mtfl_paths[:limit], mtfl_points[:limit]
    detect = peer.build(data)
    wider_records, wider_ms = run_detector(detect, [record.path for record in wider])
    mtfl_records, mtfl_ms = run_detector(upscaled(detect, MTFL_SIZE), mtfl_paths)
    return {
        "wider_val200_dev_416": thin_curves(evaluate_detections(wider_records, wider, MIN_SIZES)),
        "mtfl_test": {
            "upscaled_to": MTFL_SIZE,
            "min_score": peer.mtfl_min_score if np.isfinite(peer.mtfl_min_score) else None,
            **evaluate_landmarks(
                mtfl_records, mtfl_paths, mtfl_points, "inter_ocular", peer.mtfl_min_score
            ),
        },
        "median_ms": {
            "wider_416": statistics.median(wider_ms),
            f"mtfl_{MTFL_SIZE}": statistics.median(mtfl_ms),
        },
    }


def summary_table(results: dict[str, dict]) -> str:
    """One row per peer: AP50 and R@1FPPI by min size, MTFL miss rate and NME, median ms."""
    headers = [
        "detector",
        *(f"AP50>={m} (%)" for m in MIN_SIZES),
        *(f"R@1FPPI>={m} (%)" for m in MIN_SIZES),
        "MTFL miss (%)",
        "MTFL NME-io (%)",
        "ms@416",
        f"ms@{MTFL_SIZE}",
    ]
    rows = []
    for name, result in results.items():
        subsets = result["wider_val200_dev_416"]["by_min_size"]
        rows.append([
            name,
            *(percent(subsets[f"{m:g}"]["ap"]) for m in MIN_SIZES),
            *(percent(subsets[f"{m:g}"]["recall_at_fppi"]["1"]) for m in MIN_SIZES),
            percent(result["mtfl_test"]["miss_rate"]),
            percent(result["mtfl_test"]["nme"], digits=2),
            f"{result['median_ms']['wider_416']:.1f}",
            f"{result['median_ms'][f'mtfl_{MTFL_SIZE}']:.1f}",
        ])
    return format_table(headers, rows)


@dataclass(frozen=True)
class DevPeer:
    """A --dev row: its name, a builder and the score a face needs to count as found on Caltech."""

    name: str
    build: Callable[[], Detector]
    operating_score: float


def yunet_fixed(data: Path, variant: str, size: int) -> Detector:
    """YuNet-<variant> with its fixed size x size input: images larger than it are shrunk to fit,
    smaller ones padded (never enlarged, as an application would run it)."""
    teacher = yunet_teacher(data / "peers" / "yunet", variant, size)
    return lambda image: face_dicts(teacher.detect(image))


def kpnet_sized(weights: Path | None, input_size: int) -> Detector:
    """KPNet + DRNet through the toolkit's own FaceDetector (PyTorch, FP32) at input_size."""
    from kpnet_edge.detector import FaceDetector
    from kpnet_edge.postprocess import PostprocessParams

    detector = FaceDetector.from_checkpoint(weights, params=PostprocessParams(**KPNET_PARAMS),
                                            input_size=input_size)

    def detect(image: np.ndarray) -> list[dict]:
        return [face.to_dict() for face in detector.detect(image)]

    return detect


def dev_peers(data: Path, weights: Path | None, kpnet_sizes: list[int]) -> list[DevPeer]:
    """YuNet-n/-s at 320 and 640, then KPNet at each size."""
    rows = [DevPeer(f"yunet-{variant}@{size}", lambda v=variant, s=size: yunet_fixed(data, v, s), YUNET_OPERATING_SCORE)
            for variant in ("n", "s") for size in (320, 640)]
    rows += [DevPeer(f"kpnet@{size}", lambda s=size: kpnet_sized(weights, s), KPNET_OPERATING_SCORE) for size in kpnet_sizes]
    return rows


def dev_table(results: dict[str, dict]) -> str:
    """One row per detector: the figures of each dev set present, then median ms on WIDER."""
    headers, cells = ["detector"], []
    first = next(iter(results.values()))
    if "wider" in first:
        headers += ["WIDER AP50>=16 (%)", "WIDER AP50>=24 (%)", "WIDER R@1FPPI>=24 (%)"]
        cells.append(lambda r: [percent(r["wider"]["ap50_16"]), percent(r["wider"]["ap50_24"]),
                                percent(r["wider"]["recall_1fppi_24"])])
    if "face_mask" in first:
        headers += ["mask AP50>=24 (%)"]
        cells.append(lambda r: [percent(r["face_mask"]["ap50_24"])])
    if "caltech" in first:
        headers += ["Caltech recall (%)", "Caltech NME-4pt (%)"]
        cells.append(lambda r: [percent(r["caltech"]["recall"]), percent(r["caltech"]["nme_4pt"], digits=2)])
    timed = next(name for name in DEV_SET_NAMES if name in first)
    headers.append(f"ms/image ({timed})")
    rows = []
    for name, result in results.items():
        row = [name]
        for cell in cells:
            row += cell(result)
        rows.append(row + [f"{result[timed]['median_ms']:.1f}"])
    return format_table(headers, rows)


def dev_main(args: argparse.Namespace) -> int:
    """--dev: every YuNet size and KPNet input size on the dev sets; table and JSON."""
    data = args.data or data_root()
    try:
        dev_sets = [load_dev_set(name, data, args.limit) for name in args.sets]
        results = {}
        for peer in dev_peers(data, args.weights, args.kpnet_sizes):
            if args.only and peer.name not in args.only:
                continue
            print(f"running {peer.name} ...", file=sys.stderr)
            results[peer.name] = evaluate_on_dev_sets(peer.build(), dev_sets, peer.operating_score)
    except KpnetError as error:
        print(f"peers: error: {error}", file=sys.stderr)
        return 2
    settings = {
        "sets": {dev.name: f"{dev.description}, {len(dev.records)} images" for dev in dev_sets},
        "weights": str(args.weights) if args.weights else "shipped",
        **run_settings(args, threads_key="threads"),
        "operating_scores": {"yunet": YUNET_OPERATING_SCORE, "kpnet": KPNET_OPERATING_SCORE},
    }
    out = args.out if args.out != DEFAULT_OUT else DEFAULT_OUT.with_name("peers_dev.json")
    return publish(dev_table(results), settings, results, out)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen peers, print the table, write the JSON. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="shared data folder (default: data_root())")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--limit", type=int, metavar="N", help="first N images of each set only")
    parser.add_argument("--peers", nargs="+", choices=sorted(PEERS), default=list(PEERS))
    parser.add_argument(
        "--threads", type=int, default=1, help="OpenCV threads (default: 1, steadier timings)"
    )
    parser.add_argument("--weights", type=Path, help="DRNet checkpoint for the kpnet row (default: shipped)")
    dev = parser.add_argument_group("--dev: the dev sets (WIDER, face-mask val, Caltech val), YuNet at 320 and 640")
    dev.add_argument("--dev", action="store_true", help="run the dev-set table instead (peers_dev.json)")
    dev.add_argument("--sets", nargs="+", choices=DEV_SET_NAMES, default=list(DEV_SET_NAMES))
    dev.add_argument("--only", nargs="+", metavar="NAME", help="run only these rows (e.g. kpnet@256)")
    dev.add_argument("--kpnet-sizes", nargs="+", type=int, default=[256, 320, 416], metavar="PX")
    args = parser.parse_args(argv)
    if args.dev:
        cv2.setNumThreads(args.threads)
        return dev_main(args)
    if args.weights:
        PEERS["kpnet"] = Peer("kpnet", lambda data: kpnet(args.weights), PEERS["kpnet"].mtfl_min_score)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    data = args.data or data_root()
    cv2.setNumThreads(args.threads)
    try:
        results = {}
        for name in args.peers:
            print(f"running {name} ...", file=sys.stderr)
            results[name] = benchmark(PEERS[name], data, args.limit)
    except KpnetError as error:
        print(f"peers: error: {error}", file=sys.stderr)
        return 2
    settings = {
        "wider": "WIDER-val-200-dev@416 (not a WIDER FACE score)",
        **run_settings(args, threads_key="opencv_threads"),
        "mtfl_upscaled_to": MTFL_SIZE,
    }
    return publish(summary_table(results), settings, results, args.out)


def run_settings(args: argparse.Namespace, threads_key: str) -> dict:
    """The settings both tables record: --limit, OpenCV's version and threads, YuNet's threshold.

    threads_key names the threads as each results file always has ("opencv_threads" in
    peers.json, "threads" in peers_dev.json), so stored files and new ones read alike.
    """
    return {"limit": args.limit, "opencv": cv2.__version__, threads_key: args.threads,
            "yunet_score_threshold": YUNET_SCORE_THRESHOLD}


def publish(table: str, settings: dict, results: dict, out: Path) -> int:
    """Print the table, write {"settings", "table", "results"} to out as JSON and say where.

    Returns the exit code, 0.
    """
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": settings, "table": table, "results": results}, indent=1))
    print(f"results written to {out}")
    return 0


def _rescale(faces: list[dict], scale_x: float, scale_y: float) -> list[dict]:
    # Pixel k has its centre at k (config.cell_to_pixel's convention), so between two
    # resolutions x_in = (x_out + 0.5) * scale - 0.5.
    if scale_x == scale_y == 1.0:
        return faces
    factor = np.array([scale_x, scale_y])
    for face in faces:
        face["box"] = ((np.reshape(face["box"], (2, 2)) + 0.5) * factor - 0.5).ravel().tolist()
        if face.get("landmarks") is not None:
            face["landmarks"] = ((np.asarray(face["landmarks"]) + 0.5) * factor - 0.5).tolist()
    return faces


if __name__ == "__main__":
    sys.exit(main())

"""`kpnet-edge eval`: score a detect-JSON file against WIDER FACE boxes and/or MTFL-style landmarks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kpnet_edge.atomic import atomic_write_text
from kpnet_edge.commands.output_paths import check_output_file
from kpnet_edge.data.mtfl import read_mtfl_landmarks
from kpnet_edge.data.wider import load_wider
from kpnet_edge.errors import KpnetError
from kpnet_edge.evaluation.detection import evaluate_detections, thin_curves
from kpnet_edge.evaluation.landmarks import NORMALISATIONS, evaluate_landmarks
from kpnet_edge.evaluation.predictions import align_predictions, read_predictions
from kpnet_edge.evaluation.table import detection_table, landmark_table


def register(parser: argparse.ArgumentParser) -> None:
    """Add the eval arguments to parser and make run its action."""
    parser.add_argument(
        "predictions", type=Path, help="JSON list of detect records (`kpnet-edge detect` output)"
    )
    boxes = parser.add_argument_group("detection (WIDER FACE layout)")
    boxes.add_argument(
        "--wider-gt", type=Path, metavar="FILE", help="wider_face_*_bbx_gt.txt ground truth"
    )
    boxes.add_argument(
        "--images", type=Path, metavar="DIR",
        help="folder the ground-truth image paths are relative to (default: images/ beside FILE)",
    )
    boxes.add_argument(
        "--min-sizes", type=float, nargs="+", default=[16, 24], metavar="PX",
        help="count faces with sqrt(w*h) >= PX; smaller ones are ignore regions (default: 16 24)",
    )
    boxes.add_argument("--iou", type=float, default=0.5, help="IoU for a hit (default: 0.5)")
    points = parser.add_argument_group("landmarks (one face per image, MTFL list layout)")
    points.add_argument(
        "--landmarks-gt", type=Path, metavar="FILE", help="list of `<path> x1..x5 y1..y5` lines"
    )
    points.add_argument(
        "--landmarks-root", type=Path, metavar="DIR",
        help="folder the list's image paths are relative to (default: the list's folder)",
    )
    points.add_argument(
        "--normalisation", choices=NORMALISATIONS, default="inter_ocular",
        help="NME divisor: eye distance or sqrt(w*h) of the landmarks' box (default: inter_ocular)",
    )
    points.add_argument(
        "--min-score", type=float, default=0.0,
        help="faces below this score cannot be the match of a ground-truth face (default: 0)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="OUT",
        help="also write the results here, PR curves included (at most 1000 points each)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the tables, optionally write JSON. Returns the exit code."""
    if args.wider_gt is None and args.landmarks_gt is None:
        raise KpnetError("nothing to compare with: give --wider-gt FILE and/or --landmarks-gt FILE")
    if not 0 < args.iou <= 1:
        raise KpnetError(f"--iou must be in (0, 1], got {args.iou}")
    if args.json is not None:
        check_output_file(args.json, "--json")
    predictions = read_predictions(args.predictions)
    results: dict = {"predictions": str(args.predictions)}
    if args.wider_gt is not None:
        image_root = args.images if args.images is not None else args.wider_gt.parent / "images"
        ground_truth = load_wider(args.wider_gt, image_root)
        with _blame(args.predictions):
            _check_overlap(predictions, [record.path for record in ground_truth], args.wider_gt)
            detection = evaluate_detections(predictions, ground_truth, args.min_sizes, args.iou)
        results["detection"] = {"ground_truth": str(args.wider_gt), **thin_curves(detection)}
        print(detection_table(detection))
    if args.landmarks_gt is not None:
        paths, points = read_mtfl_landmarks(args.landmarks_gt, args.landmarks_root)
        with _blame(args.landmarks_gt, ValueError), _blame(args.predictions):
            _check_overlap(predictions, paths, args.landmarks_gt)
            landmarks = evaluate_landmarks(
                predictions, paths, points, args.normalisation, args.min_score
            )
        results["landmarks"] = {"ground_truth": str(args.landmarks_gt), **landmarks}
        print(landmark_table(landmarks))
    if args.json is not None:
        try:
            atomic_write_text(args.json, json.dumps(results, indent=1))
        except OSError as error:
            raise KpnetError(f"{args.json}: cannot write results ({error})") from None
        print(f"results written to {args.json}")
    return 0


def _check_overlap(predictions: list[dict], image_paths: list[Path], ground_truth: Path) -> None:
    # Zero matches means the wrong pair of files, not a detector that found nothing: `detect`
    # writes a record for every image, faces or not.
    matched = sum(faces is not None for faces in align_predictions(predictions, image_paths))
    if matched == 0:
        raise KpnetError(f"no record's image path matches an image listed in {ground_truth}")
    if matched < len(image_paths):
        print(
            f"warning: {len(image_paths) - matched} of {len(image_paths)} images in {ground_truth} "
            f"have no prediction record; they count as images without detections",
            file=sys.stderr,
        )


@contextmanager
def _blame(path: Path, kind: type[Exception] = KpnetError) -> Iterator[None]:
    # Evaluators report a bad record or point without knowing its file; prefix the file's name.
    try:
        yield
    except kind as error:
        raise KpnetError(f"{path}: {error}") from None

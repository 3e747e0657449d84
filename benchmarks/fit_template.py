"""Fit the template box to the WIDER FACE convention from YuNet boxes on MTFL *train* crops.

Each YuNet box goes back into the template frame through the inverse of the similarity template
landmarks -> YuNet landmarks (the exact inverse of geometry.boxes_from_landmarks); the median over
faces is the fitted box. Usage: python benchmarks/fit_template.py [--count 3000] [--write]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from kpnet_edge.data.mtfl import read_mtfl_landmarks
from kpnet_edge.datapaths import data_root
from kpnet_edge.geometry import DEFAULT_TEMPLATE, FaceTemplate, boxes_from_landmarks, fit_similarity

YUNET_SIZE = 320
MAX_ROLL_DEG = 20.0  # the hull inversion below is well conditioned only for small roll


def detect_yunet(paths: list[Path], model: str, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Every YuNet face above min_score in the crops (upscaled to 320x320), in crop pixels.

    Returns rows (M, 6) [x1, y1, x2, y2, score, crop index] and landmarks (M, 5, 2).
    """
    detector = cv2.FaceDetectorYN.create(model, "", (YUNET_SIZE, YUNET_SIZE), min_score, 0.3, 20)
    rows, points = [], []
    for index, path in enumerate(paths):
        crop = cv2.imread(str(path))
        scale = YUNET_SIZE / crop.shape[1]
        _, faces = detector.detect(cv2.resize(crop, (YUNET_SIZE, YUNET_SIZE)))
        if faces is None:
            continue
        # cv2.resize maps crop pixel u to (u + 0.5) * scale - 0.5 in the resized image.
        xy = (faces[:, :14].reshape(-1, 7, 2) + 0.5) / scale - 0.5
        corner, size = xy[:, 0], faces[:, 2:4] / scale
        index_column = np.full(len(faces), index)
        rows.append(np.column_stack([corner, corner + size, faces[:, 14], index_column]))
        points.append(xy[:, 2:])
    return np.concatenate(rows), np.concatenate(points)


def boxes_in_template_frame(
    boxes: np.ndarray, landmarks: np.ndarray, template: FaceTemplate
) -> tuple[np.ndarray, np.ndarray]:
    """Template-frame boxes (N, 4) that boxes_from_landmarks maps onto `boxes`; roll (N,) degrees.

    boxes_from_landmarks returns the hull of the mapped template box: centre A(c) and size
    s * [[|cos|, |sin|], [|sin|, |cos|]] @ [w, h]. Both are inverted here, per face.
    """
    matrices = fit_similarity(template.landmarks, landmarks)
    a, b = matrices[:, 0, 0], matrices[:, 1, 0]  # s cos, s sin
    scale = np.hypot(a, b)
    cos, sin = np.abs(a / scale), np.abs(b / scale)
    shifted = (boxes[:, :2] + boxes[:, 2:]) / 2 - matrices[:, :, 2]
    # Inverse similarity: R^T (y - t) / s.
    x, y = shifted.T
    centre = np.column_stack([a * x + b * y, a * y - b * x]) / (scale**2)[:, None]
    width, height = ((boxes[:, 2:] - boxes[:, :2]) / scale[:, None]).T
    det = cos**2 - sin**2
    size = np.column_stack([cos * width - sin * height, cos * height - sin * width]) / det[:, None]
    half = size / 2
    roll = np.degrees(np.arctan2(b, a))
    return np.concatenate([centre - half, centre + half], axis=1), roll


def row_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) with boxes (N, 4), row by row."""
    overlap = np.minimum(first[:, 2:], second[:, 2:]) - np.maximum(first[:, :2], second[:, :2])
    inter = np.prod(np.maximum(overlap, 0), axis=1)
    areas = [np.prod(box[:, 2:] - box[:, :2], axis=1) for box in (first, second)]
    return inter / (areas[0] + areas[1] - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="MTFL train crops to run YuNet on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-score", type=float, default=0.9, help="YuNet confidence to keep")
    parser.add_argument("--max-nme", type=float, default=0.15,
                        help="max mean YuNet-MTFL landmark distance / inter-ocular distance")
    parser.add_argument("--write", action="store_true", help=f"update {DEFAULT_TEMPLATE.name}")
    args = parser.parse_args()

    paths, mtfl_points = read_mtfl_landmarks(data_root() / "mtfl" / "new_training.txt")
    chosen = np.sort(np.random.default_rng(args.seed).permutation(len(paths))[: args.count])
    model = str(data_root() / "peers" / "yunet" / "yunet_s_320_320.onnx")
    detections, yunet_points = detect_yunet([paths[i] for i in chosen], model, args.min_score)

    # Per crop, the detection whose landmarks agree best with MTFL's; kept if they agree enough.
    crop_index = detections[:, 5].astype(int)
    reference = mtfl_points[chosen][crop_index]
    ocular = np.linalg.norm(reference[:, 1] - reference[:, 0], axis=1)
    nme = np.linalg.norm(yunet_points - reference, axis=2).mean(axis=1) / ocular
    order = np.lexsort((nme, crop_index))
    best = order[np.unique(crop_index[order], return_index=True)[1]]
    keep = best[nme[best] <= args.max_nme]
    boxes, yunet_points, reference = detections[keep, :4], yunet_points[keep], reference[keep]

    template = FaceTemplate.load()
    fitted, roll = boxes_in_template_frame(boxes, yunet_points, template)
    fitted_mtfl, _ = boxes_in_template_frame(boxes, reference, template)
    # Fit on the even-numbered faces, check IoU on the odd ones (all from the train list).
    even = np.arange(len(boxes)) % 2 == 0
    fit_rows = even & (np.abs(roll) <= MAX_ROLL_DEG)
    box = np.median(fitted[fit_rows], axis=0)
    box_mtfl = np.median(fitted_mtfl[fit_rows], axis=0)
    spread = np.subtract(*np.percentile(fitted[fit_rows], [75, 25], axis=0))

    print(f"crops {len(chosen)}; YuNet faces >= {args.min_score}: {len(detections)} in {len(best)} "
          f"crops; landmarks agree (NME <= {args.max_nme}): {len(keep)} (median NME "
          f"{np.median(nme[keep]):.3f}); fitted on {fit_rows.sum()} "
          f"(|roll| <= {MAX_ROLL_DEG:g} deg), checked on {(~even).sum()}")
    print(f"current box                  {np.round(template.box, 2).tolist()}")
    print(f"fitted box (YuNet landmarks) {np.round(box, 2).tolist()}  "
          f"w {box[2] - box[0]:.2f} h {box[3] - box[1]:.2f}")
    print(f"  IQR of [x1, y1, x2, y2]:   {np.round(spread, 2).tolist()}")
    print(f"fitted box (MTFL landmarks)  {np.round(box_mtfl, 2).tolist()}")
    for name, candidate, points in (
        ("current box, MTFL landmarks", template.box, reference),
        ("fitted, YuNet landmarks", box, yunet_points),
        ("fitted, MTFL landmarks", box, reference),
    ):
        trial = FaceTemplate(template.landmarks, candidate, "trial")
        overlap = row_iou(boxes_from_landmarks(points[~even], trial), boxes[~even])
        print(f"IoU with YuNet boxes, check half, {name:27s}: median {np.median(overlap):.3f}  "
              f"p10 {np.percentile(overlap, 10):.3f}  mean {overlap.mean():.3f}")

    if args.write:
        data = json.loads(DEFAULT_TEMPLATE.read_text())
        data["box"] = np.round(box, 2).tolist()
        data["fitted"] = (
            f"box: median over {fit_rows.sum()} YuNet-s (WIDER-trained) boxes on MTFL train crops "
            f"(seed {args.seed}, score >= {args.min_score}, landmark NME <= {args.max_nme}, "
            f"|roll| <= {MAX_ROLL_DEG:g}), each mapped into this frame by the inverse similarity "
            "template -> YuNet landmarks; IQR per coordinate "
            f"{np.round(spread, 1).tolist()}; benchmarks/fit_template.py"
        )
        lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in data.items()]
        DEFAULT_TEMPLATE.write_text("{\n" + ",\n".join(lines) + "\n}\n")
        print(f"wrote {DEFAULT_TEMPLATE}")


if __name__ == "__main__":
    main()

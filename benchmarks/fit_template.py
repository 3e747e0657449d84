"""Fit the template box to the WIDER FACE box convention from YuNet detections on MTFL train crops.

Each YuNet box is mapped back into the template frame through the inverse of the similarity
transform template landmarks -> landmarks (the exact inverse of geometry.boxes_from_landmarks), and
the median over faces is the fitted box. Training crops only. Usage:
    python benchmarks/fit_template.py [--count 3000] [--write]
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np

from kpnet_edge.data.mtfl import read_mtfl_landmarks
from kpnet_edge.datapaths import data_root
from kpnet_edge.geometry import DEFAULT_TEMPLATE, FaceTemplate, boxes_from_landmarks, fit_similarity

YUNET_SIZE = 320
MAX_ROLL_DEG = 20.0  # the hull inverse below is well conditioned only for small roll


def detect_yunet(paths: list, model: str, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Every YuNet face above min_score over all crops, in crop pixels.

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
        wh = faces[:, 2:4] / scale
        rows.append(np.column_stack([xy[:, 0], xy[:, 0] + wh, faces[:, 14], np.full(len(faces), index)]))
        points.append(xy[:, 2:])
    return np.concatenate(rows), np.concatenate(points)


def boxes_in_template_frame(boxes: np.ndarray, landmarks: np.ndarray, template: FaceTemplate) -> tuple[np.ndarray, np.ndarray]:
    """Template-frame boxes (N, 4) whose boxes_from_landmarks image is `boxes`, and roll in degrees.

    boxes_from_landmarks returns the hull of the rotated template box: centre A(c), size
    s * [[|cos|, |sin|], [|sin|, |cos|]] @ [w, h]; this inverts both for each face.
    """
    matrices = fit_similarity(template.landmarks, landmarks)
    a, b = matrices[:, 0, 0], matrices[:, 1, 0]
    scale = np.hypot(a, b)
    cos, sin = np.abs(a / scale), np.abs(b / scale)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - matrices[:, :, 2]
    # Inverse similarity: R^T (y - t) / s.
    centre_t = np.column_stack([a * centre[:, 0] + b * centre[:, 1], -b * centre[:, 0] + a * centre[:, 1]])
    centre_t /= (scale**2)[:, None]
    size = (boxes[:, 2:] - boxes[:, :2]) / scale[:, None]
    det = cos**2 - sin**2
    width = (cos * size[:, 0] - sin * size[:, 1]) / det
    height = (cos * size[:, 1] - sin * size[:, 0]) / det
    half = np.column_stack([width, height]) / 2
    roll = np.degrees(np.arctan2(b, a))
    return np.concatenate([centre_t - half, centre_t + half], axis=1), roll


def iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (N, 4) box arrays."""
    low = np.maximum(first[:, :2], second[:, :2])
    high = np.minimum(first[:, 2:], second[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = lambda box: np.prod(box[:, 2:] - box[:, :2], axis=1)  # noqa: E731
    return inter / (area(first) + area(second) - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="MTFL train crops to run YuNet on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-score", type=float, default=0.9, help="YuNet confidence to keep")
    parser.add_argument("--max-nme", type=float, default=0.15,
                        help="max mean landmark distance YuNet vs MTFL, over the inter-ocular distance")
    parser.add_argument("--write", action="store_true", help=f"update {DEFAULT_TEMPLATE.name}")
    args = parser.parse_args()

    mtfl = data_root() / "mtfl"
    paths, mtfl_points = read_mtfl_landmarks(mtfl / "new_training.txt")
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
    template = FaceTemplate.load()
    boxes = detections[keep, :4]
    fitted, roll = boxes_in_template_frame(boxes, yunet_points[keep], template)
    fitted_mtfl, _ = boxes_in_template_frame(boxes, reference[keep], template)
    small_roll = np.abs(roll) <= MAX_ROLL_DEG
    # Fit on even-numbered faces, check IoU on the odd ones (all from the train list).
    fit_half = small_roll & (np.arange(len(boxes)) % 2 == 0)
    check_half = np.arange(len(boxes)) % 2 == 1
    box = np.median(fitted[fit_half], axis=0)
    box_mtfl = np.median(fitted_mtfl[fit_half], axis=0)
    q25, q75 = np.percentile(fitted[fit_half], [25, 75], axis=0)

    print(f"crops {len(chosen)}, detections >= {args.min_score}: {len(detections)}, "
          f"crops with a face: {len(best)}, landmarks agree (NME <= {args.max_nme}): {len(keep)} "
          f"(median NME {np.median(nme[keep]):.3f}), "
          f"fitted on {fit_half.sum()} (|roll| <= {MAX_ROLL_DEG:g} deg), checked on {check_half.sum()}")
    print(f"old box            {np.round(template.box, 2).tolist()}")
    print(f"fitted box (YuNet landmarks)  {np.round(box, 2).tolist()}  w {box[2] - box[0]:.2f} h {box[3] - box[1]:.2f}")
    print(f"  IQR per coordinate [x1, y1, x2, y2]: {np.round(q75 - q25, 2).tolist()}")
    print(f"fitted box (MTFL landmarks)   {np.round(box_mtfl, 2).tolist()}")
    for name, candidate, points in (
        ("old box, MTFL landmarks", template.box, reference),
        ("fitted, YuNet landmarks", box, yunet_points),
        ("fitted, MTFL landmarks", box, reference),
        ("MTFL-fitted, MTFL landmarks", box_mtfl, reference),
    ):
        trial = FaceTemplate(template.landmarks, candidate, "trial")
        overlap = iou(boxes_from_landmarks(points[keep][check_half], trial), boxes[check_half])
        print(f"IoU with YuNet on check half, {name:28s}: median {np.median(overlap):.3f}  "
              f"p10 {np.percentile(overlap, 10):.3f}  mean {overlap.mean():.3f}")

    if args.write:
        data = json.loads(DEFAULT_TEMPLATE.read_text())
        data["box"] = np.round(box, 2).tolist()
        data["fitted"] = (
            f"Box = median over {fit_half.sum()} YuNet-s (WIDER-trained) boxes on MTFL train crops "
            f"(seed {args.seed}, score >= {args.min_score}, landmark NME <= {args.max_nme}, "
            f"|roll| <= {MAX_ROLL_DEG:g}), each mapped into this frame by the inverse similarity "
            "template -> YuNet landmarks; benchmarks/fit_template.py."
        )
        lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in data.items())
        DEFAULT_TEMPLATE.write_text("{\n" + lines + "\n}\n")
        print(f"wrote {DEFAULT_TEMPLATE}")


if __name__ == "__main__":
    main()

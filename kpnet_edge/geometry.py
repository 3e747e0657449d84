"""Face boxes from 5 landmarks: a similarity transform fitted from a canonical template.

The template (5 canonical points and a box in the same frame) is data, a JSON file, so one model
can emit boxes in different conventions (WIDER rectangles, FDDB ellipses' boxes, ...).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kpnet_edge import config

DEFAULT_TEMPLATE = Path(__file__).parent / "assets" / "template_wider.json"


@dataclass(frozen=True)
class FaceTemplate:
    """Canonical landmarks (K, 2) and the box [x1, y1, x2, y2] they sit in, in one frame."""

    landmarks: np.ndarray
    box: np.ndarray
    name: str = "custom"

    @classmethod
    def load(cls, path: str | Path = DEFAULT_TEMPLATE) -> FaceTemplate:
        """Read a template JSON: {"name", "landmarks": [[x, y] x K], "box": [x1, y1, x2, y2]}."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            landmarks = np.asarray(data["landmarks"], dtype=np.float64)
            box = np.asarray(data["box"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a face template ({error})") from None
        if landmarks.shape != (config.NUM_LANDMARKS, 2) or box.shape != (4,):
            raise ValueError(
                f"{path}: expected {config.NUM_LANDMARKS} landmarks [x, y] and a box of 4 numbers, "
                f"got shapes {landmarks.shape} and {box.shape}"
            )
        if not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"{path}: box {box.tolist()} is empty")
        return cls(landmarks=landmarks, box=box, name=str(data.get("name", path.stem)))


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, translation; Umeyama 1991) source -> target.

    source: (K, 2); target: (N, K, 2). Returns (N, 2, 3) matrices A with target ~ A @ [x, y, 1].
    """
    src_mean = source.mean(axis=0)
    src = source - src_mean
    tgt_mean = target.mean(axis=1, keepdims=True)
    tgt = target - tgt_mean
    src_var = float((src**2).sum())
    # With complex numbers z = x + iy, the best similarity is z' = c z with
    # c = sum(conj(src) * tgt) / sum(|src|^2): a closed form, vectorised over N.
    src_c = src[:, 0] + 1j * src[:, 1]
    tgt_c = tgt[..., 0] + 1j * tgt[..., 1]
    coeff = (np.conj(src_c)[None, :] * tgt_c).sum(axis=1) / src_var
    a, b = coeff.real, coeff.imag
    matrices = np.empty((target.shape[0], 2, 3), dtype=np.float64)
    matrices[:, 0, 0], matrices[:, 0, 1] = a, -b
    matrices[:, 1, 0], matrices[:, 1, 1] = b, a
    shift = tgt_mean[:, 0, :] - np.einsum("nij,j->ni", matrices[:, :, :2], src_mean)
    matrices[:, :, 2] = shift
    return matrices


def boxes_from_landmarks(landmarks: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """Boxes (N, 4) [x1, y1, x2, y2] inferred from landmarks (N, K, 2).

    The template box is mapped through each face's similarity transform (template_box_hulls), so
    rotated faces get boxes that contain them. The fit and the mapping are linear in the
    landmarks, so both run as one matrix product (_corner_map): 200 faces in ~20 us, not ~150.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (config.NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be (N, {config.NUM_LANDMARKS}, 2), got {landmarks.shape}")
    if landmarks.shape[0] == 0:
        return np.zeros((0, 4), dtype=np.float64)
    corners = (landmarks.reshape(len(landmarks), -1) @ _corner_map(template)).reshape(-1, 4, 2)
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)


def _corner_map(template: FaceTemplate) -> np.ndarray:
    """(2K, 8) matrix taking flattened landmarks (x1, y1, ..., xK, yK) to the template box's four
    corners [x, y] under their least-squares similarity (fit_similarity, then template_box_hulls'
    corners). Linear because the similarity's coefficients and shift are linear in the targets.
    Cached per template content."""
    return _cached_corner_map(template.landmarks.tobytes(), template.box.tobytes())


@functools.lru_cache(maxsize=16)
def _cached_corner_map(landmarks: bytes, box: bytes) -> np.ndarray:
    source = np.frombuffer(landmarks, dtype=np.float64).reshape(-1, 2)
    unit_targets = np.eye(source.size).reshape(source.size, *source.shape)
    matrices = fit_similarity(source, unit_targets)
    mapped = np.einsum("nij,cj->nci", matrices, _box_corners(np.frombuffer(box, dtype=np.float64)))
    result = mapped.reshape(source.size, 8)
    result.flags.writeable = False
    return result


def _box_corners(box: np.ndarray) -> np.ndarray:
    """The four corners of box [x1, y1, x2, y2] as homogeneous points (4, 3)."""
    x1, y1, x2, y2 = box
    return np.array([[x1, y1, 1.0], [x2, y1, 1.0], [x2, y2, 1.0], [x1, y2, 1.0]])


def template_box_hulls(matrices: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) [x1, y1, x2, y2]: the axis-aligned box around the template box's four corners
    mapped through each similarity (N, 2, 3), so a rotated face's box still contains it.

    Shared by every landmark set a template is fitted to (five points here, Caltech's four in
    kpnet_edge/data/caltech.py), so all boxes follow one convention.
    """
    mapped = np.einsum("nij,cj->nci", matrices, _box_corners(box))  # (N, 4, 2)
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)

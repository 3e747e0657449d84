"""A teacher that completes face labels: YuNet (through OpenCV's FaceDetectorYN) finds every face
in a photo, and `merge_teacher_labels` merges its faces with whatever a human labelled.

Human points and boxes win; the teacher supplies what is missing (mouth corners, faces nobody
labelled); teacher faces below a confidence become ignore regions, not negatives, so an
uncertain face costs the student nothing either way. OpenCV is the only dependency: the teacher
never enters the on-device path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kpnet_edge import config
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.evaluation.detection import box_iou

MOUTH_CORNERS = (3, 4)


@dataclass(frozen=True)
class TeacherFaces:
    """A teacher's faces in image pixels: boxes (N, 4) [x1, y1, x2, y2], landmarks (N, 5, 2) in
    config.LANDMARK_NAMES order, scores (N,)."""

    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> TeacherFaces:
        return cls(np.zeros((0, 4)), np.zeros((0, config.NUM_LANDMARKS, 2)), np.zeros(0))


class YuNetTeacher:
    """YuNet with a fixed square input: each image is scaled so its longer edge fills the input
    (with enlarge, small photos are enlarged too, so a teacher finds their small faces), padded
    bottom-right with black, and the faces are mapped back to the image's pixels."""

    def __init__(self, model_path: str | Path, input_size: int = 640, min_score: float = 0.3,
                 enlarge: bool = True) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise KpnetError(f"{model_path}: YuNet ONNX file not found")
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(model_path), "", (input_size, input_size),
                score_threshold=min_score, nms_threshold=0.3, top_k=5000,
            )
        except cv2.error as error:
            raise KpnetError(f"{model_path}: OpenCV cannot load it as YuNet ({error.err})") from None
        self.input_size = input_size
        self.enlarge = enlarge
        self.name = f"{model_path.stem}@{input_size}"

    def detect(self, image: np.ndarray) -> TeacherFaces:
        """Faces in a BGR uint8 image (H, W, 3), in its pixels."""
        faces, (resized_width, resized_height) = self.detect_resized(image)
        height, width = image.shape[:2]
        factor = np.array([width / resized_width, height / resized_height])
        return TeacherFaces(
            boxes=faces.boxes * np.tile(factor, 2),
            landmarks=faces.landmarks * factor,
            scores=faces.scores,
        )

    def detect_resized(self, image: np.ndarray) -> tuple[TeacherFaces, tuple[int, int]]:
        """Faces in the pixels of the image as resized into the input, and that (width, height).

        `detect` maps them back by plain scaling; benchmarks/peers.py maps them back with its own
        pixel-centre convention, so both run YuNet through this one resize-and-pad path.
        """
        height, width = image.shape[:2]
        scale = self.input_size / max(height, width)
        if not self.enlarge:
            scale = min(scale, 1.0)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas = np.zeros((self.input_size, self.input_size, 3), dtype=np.uint8)
        canvas[: size[1], : size[0]] = cv2.resize(image, size, interpolation=interpolation)
        _, rows = self._detector.detect(canvas)
        if rows is None:
            return TeacherFaces.empty(), size
        # Row layout: x, y, w, h, 5 landmarks (x, y) in our order (image-left eye first), score.
        rows = rows.astype(np.float64)
        faces = TeacherFaces(
            boxes=np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1),
            landmarks=rows[:, 4:14].reshape(-1, config.NUM_LANDMARKS, 2),
            scores=rows[:, 14],
        )
        return faces, size


@dataclass(frozen=True)
class MergeRules:
    """How teacher faces join human labels.

    keep_score: a teacher face nobody labelled becomes a face at or above it, an ignore region
    below (and so does one centred inside a human box it did not match). match_iou: a teacher face overlapping a human face this much is that face.
    guessed_points: per class name (VOC `<name>`), landmarks the teacher can only guess there
    (mouth corners under a mask): kept, but marked not visible so training masks them out.
    """

    keep_score: float = 0.6
    match_iou: float = 0.35
    guessed_points: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class MergeCounts:
    """What came from where, summed over images."""

    images: int = 0
    human_faces: int = 0
    human_points: int = 0
    teacher_points: int = 0
    guessed_points: int = 0
    teacher_faces: int = 0
    ignore_regions: int = 0
    unreadable: list[str] = field(default_factory=list)

    def add(self, other: MergeCounts) -> None:
        for name in ("images", "human_faces", "human_points", "teacher_points", "guessed_points",
                     "teacher_faces", "ignore_regions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unreadable += other.unreadable


def merge_teacher_labels(human: AnnotatedImage, teacher: TeacherFaces,
                         rules: MergeRules = MergeRules()) -> tuple[AnnotatedImage, MergeCounts]:
    """One record holding the human faces completed by the teacher, its extra faces and ignore regions.

    For a human face the teacher matched: the human box and trusted points stay; points the human
    did not give come from the teacher. Where the human gave a mouth centre but no corners
    (Caltech), the teacher's corners are shifted so their midpoint is the human's centre.
    Human faces the teacher missed stay as they are. Scores: 1 for human faces, the teacher's
    score for its own faces and ignore regions.
    """
    count = len(human.boxes)
    landmarks = (np.full((count, config.NUM_LANDMARKS, 2), np.nan) if human.landmarks is None
                 else human.landmarks.copy())
    visible = human.trusted_landmarks() if human.landmarks is not None else np.zeros(landmarks.shape[:2], bool)
    labels = list(human.labels) if human.labels else ["face"] * count
    counts = MergeCounts(images=1, human_faces=count, human_points=int(visible.sum()))
    matches = _greedy_matches(human.boxes, teacher.boxes, teacher.scores, rules.match_iou)
    for face, match in matches.items():
        missing = ~visible[face]
        points = teacher.landmarks[match].copy()
        if human.mouth_centres is not None and missing[list(MOUTH_CORNERS)].all():
            centre = human.mouth_centres[face]
            if np.isfinite(centre).all():
                points[list(MOUTH_CORNERS)] += centre - points[list(MOUTH_CORNERS)].mean(axis=0)
        landmarks[face, missing] = points[missing]
        guessed = np.zeros(config.NUM_LANDMARKS, dtype=bool)
        guessed[list(rules.guessed_points.get(labels[face], ()))] = True
        visible[face] = visible[face] | (missing & ~guessed)
        counts.teacher_points += int((missing & ~guessed).sum())
        counts.guessed_points += int((missing & guessed).sum())
    unmatched = np.setdiff1d(np.arange(len(teacher.boxes)), list(matches.values()))
    # A teacher face centred inside a human box it did not match is the same face in another box
    # convention (or its double): doubtful, never a second positive.
    confident = (teacher.scores[unmatched] >= rules.keep_score) & ~_centre_inside(
        teacher.boxes[unmatched], human.boxes)
    keep, doubt = unmatched[confident], unmatched[~confident]
    counts.teacher_faces, counts.ignore_regions = len(keep), len(doubt)
    added = np.concatenate([keep, doubt])
    record = AnnotatedImage(
        path=human.path,
        boxes=np.concatenate([human.boxes, teacher.boxes[added]]),
        landmarks=np.concatenate([landmarks, teacher.landmarks[added]]),
        ignore=np.concatenate([human.ignore, np.zeros(len(keep), bool), np.ones(len(doubt), bool)]),
        visible=np.concatenate([visible, np.ones((len(keep), config.NUM_LANDMARKS), bool),
                                np.zeros((len(doubt), config.NUM_LANDMARKS), bool)]),
        labels=labels + ["teacher"] * len(keep) + ["ignore"] * len(doubt),
        scores=np.concatenate([np.ones(count), teacher.scores[added]]),
    )
    return record, counts


def _centre_inside(boxes: np.ndarray, containers: np.ndarray) -> np.ndarray:
    """(N,) True where a box's centre lies inside any container box."""
    if len(containers) == 0:
        return np.zeros(len(boxes), dtype=bool)
    centres = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
    inside = (centres >= containers[None, :, :2]) & (centres <= containers[None, :, 2:])
    return inside.all(axis=2).any(axis=1)


def _greedy_matches(human_boxes: np.ndarray, teacher_boxes: np.ndarray, teacher_scores: np.ndarray,
                    min_iou: float) -> dict[int, int]:
    """human face -> teacher face, by descending IoU then teacher score, one to one."""
    if len(human_boxes) == 0 or len(teacher_boxes) == 0:
        return {}
    iou = box_iou(human_boxes, teacher_boxes)
    pairs = np.argwhere(iou >= min_iou)
    order = np.lexsort((-teacher_scores[pairs[:, 1]], -iou[pairs[:, 0], pairs[:, 1]]))
    matches: dict[int, int] = {}
    taken: set[int] = set()
    for human, teacher in pairs[order]:
        if human not in matches and teacher not in taken:
            matches[int(human)] = int(teacher)
            taken.add(int(teacher))
    return matches

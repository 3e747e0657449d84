"""Real-photo labels: the Caltech and VOC loaders, the label.txt round trip with guesses and doubt,
the teacher merge rules, and the fixed validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kpnet_edge.data.caltech import load_caltech
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.data.retinaface import load_retinaface_labels, write_retinaface_labels
from kpnet_edge.data.splits import check_split, split_records, write_split
from kpnet_edge.data.voc import load_voc
from kpnet_edge.errors import KpnetError
from kpnet_edge.teacher import MergeRules, TeacherFaces, merge_teacher_labels

from conftest import write_images, write_text


# ---------------------------------------------------------------------------------------------- Caltech

CALTECH = """\
a.jpg 20.0 30.0 40.0 30.0 30.0 40.0 30.0 50.0
a.jpg 5 5 9 5 7 7 7 9
b.jpg 10 10 20 10 15 15 15 20
"""


def test_caltech_keeps_four_points_and_fits_template_boxes(tmp_path: Path) -> None:
    root = write_images(tmp_path / "img", "a.jpg", "b.jpg", "c.jpg")
    records = load_caltech(write_text(tmp_path / "gt.txt", CALTECH), root)
    assert [r.path.name for r in records] == ["a.jpg", "b.jpg"]
    first = records[0]
    np.testing.assert_allclose(first.landmarks[0, :3], [[20, 30], [40, 30], [30, 40]])
    assert np.isnan(first.landmarks[:, 3:]).all(), "Caltech has no mouth corners"
    assert first.visible[0].tolist() == [True, True, True, False, False]
    np.testing.assert_allclose(first.mouth_centres, [[30, 50], [7, 9]])
    box = first.boxes[0]
    assert box[0] < 20 and box[2] > 40 and box[1] < 30 and box[3] > 50, "the box must hold the points"
    assert 30 < box[2] - box[0] < 60, "the box scales with the eye distance (20 px)"
    with_empty = load_caltech(tmp_path / "gt.txt", root, include_unlabelled=True)
    assert [r.path.name for r in with_empty][-1] == "c.jpg" and len(with_empty[-1].boxes) == 0


@pytest.mark.parametrize("line, problem", [
    ("a.jpg 1 2 3 4 5 6 7", "expected 9 fields"),
    ("a.jpg 1 2 3 4 5 6 7 x", "'x' is not a number"),
    ("a.jpg 1 2 3 4 5 6 7 nan", "not a finite coordinate"),
    ("z.jpg 1 2 3 4 5 6 7 8", "not found"),
    ("a.txt 1 2 3 4 5 6 7 8", "not an image name"),
    ("a.jpg 1 2 1 2 5 6 7 8", "both eyes at the same point"),
])
def test_caltech_malformed_lines_name_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    root = write_images(tmp_path / "img", "a.jpg")
    gt = write_text(tmp_path / "gt.txt", "a.jpg 1 2 3 4 5 6 7 8\n" + line + "\n")
    with pytest.raises(KpnetError, match=rf"gt.txt:2: .*{problem}"):
        load_caltech(gt, root)


# ---------------------------------------------------------------------------------------------- VOC

def _voc(name: str, objects: str) -> str:
    return f"<annotation><filename>{name}</filename>{objects}</annotation>"


def _object(name: str, box: tuple, difficult: int = 0) -> str:
    x1, y1, x2, y2 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def test_voc_boxes_classes_and_difficult(tmp_path: Path) -> None:
    root = write_images(tmp_path / "img", "a.jpg", "b.jpg")
    notes = tmp_path / "ann"
    notes.mkdir()
    write_text(notes / "a.xml", _voc("a.jpg", _object("mask", (1, 2, 11, 22)) + _object("car", (0, 0, 5, 5))
                                      + _object("face", (3, 4, 13, 14), difficult=1)))
    write_text(notes / "b.xml", _voc("b.jpg", ""))
    records = load_voc(notes, root, face_classes={"mask", "face"}, skip_classes={"car"})
    np.testing.assert_allclose(records[0].boxes, [[1, 2, 11, 22], [3, 4, 13, 14]])
    assert records[0].labels == ["mask", "face"] and records[0].ignore.tolist() == [False, True]
    assert len(records[1].boxes) == 0
    with pytest.raises(KpnetError, match=r"a.xml: <object> 2: class 'car' is neither a face class"):
        load_voc(notes, root, face_classes={"mask", "face"})


@pytest.mark.parametrize("text, problem", [
    ("<annotation><filename>a.jpg</filename><object><name>f</name></object></annotation>", "<object> 1: <bndbox> is missing"),
    (_voc("a.jpg", _object("f", (1, 2, "x", 4))), "<object> 1: <xmax>: 'x' is not a number"),
    (_voc("a.jpg", _object("f", (5, 2, 5, 4))), "<object> 1: empty box"),
    (_voc("gone.jpg", ""), "image .*gone.jpg not found"),
    ("<annotation><filename>a.jpg", "not readable VOC XML"),
    ("<other/>", "root element is <other>"),
])
def test_voc_malformed_files_name_file_and_element(tmp_path: Path, text: str, problem: str) -> None:
    root = write_images(tmp_path / "img", "a.jpg")
    notes = tmp_path / "ann"
    notes.mkdir()
    write_text(notes / "a.xml", text)
    with pytest.raises(KpnetError, match=rf"a.xml: .*{problem}"):
        load_voc(notes, root)


# ---------------------------------------------------------------------------------------------- label.txt

def test_label_file_round_trip_keeps_guesses_scores_and_doubt(tmp_path: Path) -> None:
    root = write_images(tmp_path / "img", "x/a.jpg")
    points = np.arange(20, dtype=float).reshape(2, 5, 2) + 10
    points[1, 4] = np.nan
    record = AnnotatedImage(
        path=root / "x/a.jpg", boxes=[[1, 2, 31, 42], [5, 5, 25, 25]], landmarks=points,
        visible=[[True] * 5, [True, True, True, False, False]], scores=[1.0, 0.42],
    )
    label_file = tmp_path / "label.txt"
    write_retinaface_labels([record], label_file, root)
    assert label_file.read_text().startswith("# x/a.jpg\n")
    plain = load_retinaface_labels(label_file, root)[0]
    np.testing.assert_allclose(plain.boxes, record.boxes)
    np.testing.assert_allclose(plain.landmarks[0], points[0])
    assert np.isnan(plain.landmarks[1, 4]).all(), "an absent point stays absent"
    assert plain.visible.tolist() == [[True] * 5, [True, True, True, False, False]]
    np.testing.assert_allclose(plain.scores, [1.0, 0.42])
    assert plain.ignore.tolist() == [False, False]
    doubtful = load_retinaface_labels(label_file, root, min_quality=0.6)[0]
    assert doubtful.ignore.tolist() == [False, True], "a face below min_quality is an ignore region"


# ---------------------------------------------------------------------------------------------- teacher

def _teacher(boxes: list, scores: list) -> TeacherFaces:
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    # Five points spread inside each box: eyes, nose, mouth corners.
    unit = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    landmarks = boxes[:, None, :2] + unit[None] * (boxes[:, None, 2:] - boxes[:, None, :2])
    return TeacherFaces(boxes, landmarks, np.asarray(scores, dtype=float))


def test_merge_keeps_human_faces_adds_teacher_faces_and_doubtful_ones_become_ignore() -> None:
    human = AnnotatedImage(path="p.jpg", boxes=[[0, 0, 40, 40], [100, 100, 140, 140]], labels=["face", "face"])
    teacher = _teacher([[2, 1, 41, 42], [200, 0, 240, 40], [300, 0, 330, 30]], [0.95, 0.9, 0.4])
    merged, counts = merge_teacher_labels(human, teacher, MergeRules(keep_score=0.6))
    np.testing.assert_allclose(merged.boxes[:2], human.boxes, err_msg="human boxes win")
    np.testing.assert_allclose(merged.landmarks[0], teacher.landmarks[0], err_msg="teacher fills points")
    assert np.isnan(merged.landmarks[1]).all(), "a human face the teacher missed stays, without points"
    np.testing.assert_allclose(merged.boxes[2:], teacher.boxes[1:])
    assert merged.ignore.tolist() == [False, False, False, True]
    assert merged.labels == ["face", "face", "teacher", "ignore"]
    np.testing.assert_allclose(merged.scores, [1, 1, 0.9, 0.4])
    assert (counts.human_faces, counts.teacher_faces, counts.ignore_regions, counts.teacher_points) == (2, 1, 1, 5)


def test_merge_human_points_win_and_the_mouth_centre_moves_the_corners() -> None:
    landmarks = np.full((1, 5, 2), np.nan)
    landmarks[0, :3] = [[10, 12], [30, 12], [20, 22]]
    human = AnnotatedImage(path="p.jpg", boxes=[[0, 0, 40, 40]], landmarks=landmarks,
                           visible=[[True, True, True, False, False]], mouth_centres=[[21, 33]])
    teacher = _teacher([[0, 0, 40, 40]], [0.9])
    merged, counts = merge_teacher_labels(human, teacher)
    np.testing.assert_allclose(merged.landmarks[0, :3], landmarks[0, :3], err_msg="human points win")
    np.testing.assert_allclose(merged.landmarks[0, 3:].mean(axis=0), [21, 33])
    corner_gap = teacher.landmarks[0, 4] - teacher.landmarks[0, 3]
    np.testing.assert_allclose(merged.landmarks[0, 4] - merged.landmarks[0, 3], corner_gap)
    assert merged.visible.tolist() == [[True] * 5] and counts.teacher_points == 2


def test_merge_marks_covered_points_of_masked_faces_as_guesses() -> None:
    human = AnnotatedImage(path="p.jpg", boxes=[[0, 0, 40, 40]], labels=["with_mask"])
    teacher = _teacher([[1, 0, 40, 41]], [0.9])
    merged, counts = merge_teacher_labels(human, teacher, MergeRules(guessed_points={"with_mask": (2, 3, 4)}))
    assert merged.visible.tolist() == [[True, True, False, False, False]]
    assert np.isfinite(merged.landmarks).all(), "guesses are kept, only masked out"
    assert (counts.teacher_points, counts.guessed_points) == (2, 3)


def test_merge_never_adds_a_second_positive_inside_a_human_box() -> None:
    human = AnnotatedImage(path="p.jpg", boxes=[[0, 0, 100, 100]])
    teacher = _teacher([[40, 40, 60, 60]], [0.99])  # IoU 0.04: another box convention, same face
    merged, counts = merge_teacher_labels(human, teacher)
    assert merged.ignore.tolist() == [False, True] and counts.teacher_faces == 0


# ---------------------------------------------------------------------------------------------- split

def test_validation_split_is_fixed_and_checked(tmp_path: Path) -> None:
    names = [f"{i:03d}.jpg" for i in range(60)]
    root = write_images(tmp_path / "img", *names)
    records = [AnnotatedImage(path=root / name, boxes=[]) for name in names]
    train, validation = split_records(records, root, 0.2)
    assert 4 <= len(validation) <= 20 and len(train) + len(validation) == 60
    assert split_records(records[::-1], root, 0.2)[1][::-1] == validation, "order must not matter"
    split_file = tmp_path / "val.txt"
    write_split(validation, root, split_file)
    check_split(records, root, 0.2, split_file)
    with pytest.raises(KpnetError, match="validation split changed"):
        check_split(records, root, 0.3, split_file)

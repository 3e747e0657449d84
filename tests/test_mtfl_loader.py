"""MTFL list loading: x's-then-y's parsing, template boxes, errors naming the file and line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from kpnet_edge.data.mtfl import load_mtfl, read_mtfl_landmarks
from kpnet_edge.errors import KpnetError
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks

LINES = [
    "faces/a.jpg 30 50 40 32 48 35 36 45 55 56",
    "faces/b.jpg 31.5 49.5 41 33 47 34 34 44 54 54",
]


def _write_dataset(root: Path, lines: list[str] = LINES) -> Path:
    (root / "faces").mkdir(parents=True, exist_ok=True)
    for line in lines:
        cv2.imwrite(str(root / line.split()[0]), np.full((80, 80, 3), 128, np.uint8))
    list_file = root / "list.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file


def test_landmarks_are_read_as_all_x_then_all_y(tmp_path: Path) -> None:
    records = load_mtfl(_write_dataset(tmp_path))
    assert len(records) == 2
    expected = np.array([[30, 35], [50, 36], [40, 45], [32, 55], [48, 56]], dtype=float)
    np.testing.assert_array_equal(records[0].landmarks, expected[None])
    assert records[0].path == tmp_path / "faces" / "a.jpg"
    assert records[0].boxes.shape == (1, 4) and records[0].ignore.tolist() == [False]


def test_boxes_are_the_template_boxes_of_the_landmarks(tmp_path: Path) -> None:
    records = load_mtfl(_write_dataset(tmp_path))
    landmarks = np.concatenate([record.landmarks for record in records])
    expected = boxes_from_landmarks(landmarks, FaceTemplate.load())
    np.testing.assert_allclose(np.concatenate([record.boxes for record in records]), expected)


def test_image_root_and_windows_separators(tmp_path: Path) -> None:
    _write_dataset(tmp_path / "images")
    list_file = tmp_path / "list.txt"
    list_file.write_text(LINES[0].replace("/", "\\") + "\n\n")  # blank lines are skipped
    records = load_mtfl(list_file, image_root=tmp_path / "images")
    assert [record.path for record in records] == [tmp_path / "images" / "faces" / "a.jpg"]


def test_read_mtfl_landmarks_does_not_need_the_images(tmp_path: Path) -> None:
    list_file = tmp_path / "list.txt"
    list_file.write_text("\n".join(LINES))
    paths, landmarks = read_mtfl_landmarks(list_file)
    assert paths == [tmp_path / "faces" / "a.jpg", tmp_path / "faces" / "b.jpg"]
    assert landmarks.shape == (2, 5, 2)
    assert landmarks[1, 0].tolist() == [31.5, 34.0]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("faces/c.jpg 1 2 3 4 5 6 7 8 9", "list.txt:2: expected a path and 10 numbers"),
        ("faces/c.jpg 1 2 3 4 5 6 7 8 9 10 11", "got 12 fields"),
        ("faces/c.jpg 1 2 3 abc 5 6 7 8 9 10", "list.txt:2: 'abc' is not a number"),
        ("faces/c.jpg 1 2 3 nan 5 6 7 8 9 10", "list.txt:2: 'nan' is not a finite coordinate"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    list_file = tmp_path / "list.txt"
    list_file.write_text(f"{LINES[0]}\n{bad_line}\n")
    with pytest.raises(KpnetError, match=message):
        read_mtfl_landmarks(list_file)


def test_empty_and_missing_list_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(KpnetError, match="no MTFL records"):
        load_mtfl(empty)
    with pytest.raises(KpnetError, match="cannot read MTFL list"):
        load_mtfl(tmp_path / "absent.txt")


def test_missing_images_are_counted_and_named(tmp_path: Path) -> None:
    list_file = _write_dataset(tmp_path)
    (tmp_path / "faces" / "b.jpg").unlink()
    with pytest.raises(KpnetError, match=r"1 of 2 listed images are missing \(.*b\.jpg\)"):
        load_mtfl(list_file)


def test_real_mtfl_lists_have_10000_train_and_2995_test_faces(mtfl_root: Path) -> None:
    train = load_mtfl(mtfl_root / "new_training.txt")
    _, test_landmarks = read_mtfl_landmarks(mtfl_root / "new_testing.txt")
    assert len(train) == 10000
    assert len(test_landmarks) == 2995
    train_landmarks = np.concatenate([record.landmarks for record in train])
    for landmarks in (train_landmarks, test_landmarks):
        inside = np.all((landmarks >= 0) & (landmarks <= 80), axis=(1, 2))
        assert inside.mean() > 0.99, f"only {inside.mean():.3f} of faces lie inside their crop"
        # Image-left eye first: mirrored annotations would show up here.
        assert np.mean(landmarks[:, 0, 0] < landmarks[:, 1, 0]) > 0.99

"""Loaders for WIDER FACE, RetinaFace label.txt and plain folders: records, and file:line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kpnet_edge.data.folder import load_folder
from kpnet_edge.data.retinaface import load_retinaface_labels
from kpnet_edge.data.wider import load_wider
from kpnet_edge.errors import KpnetError

from conftest import write_images, write_text


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    return write_images(tmp_path / "images", "0--Parade/a.jpg", "0--Parade/b.jpg", "1--Handshaking/c.jpg",
                        size=8)


WIDER_GOOD = """\
0--Parade/a.jpg
2
10 20 30 40 0 0 0 0 0 0
5 5 0 8 1 0 0 0 0 0
0--Parade/b.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/c.jpg
1
1.5 2.5 3 4 2 1 0 1 0 0
"""


def test_wider_boxes_ignore_flags_and_empty_images(tmp_path: Path, image_root: Path) -> None:
    records = load_wider(write_text(tmp_path / "gt.txt", WIDER_GOOD), image_root)
    names = ["0--Parade/a.jpg", "0--Parade/b.jpg", "1--Handshaking/c.jpg"]
    assert [r.path for r in records] == [image_root / name for name in names]
    np.testing.assert_allclose(records[0].boxes, [[10, 20, 40, 60], [5, 5, 5, 13]])
    assert records[0].ignore.tolist() == [False, True], "a zero-size box must be ignored"
    assert records[1].boxes.shape == (0, 4) and records[1].ignore.shape == (0,)
    np.testing.assert_allclose(records[2].boxes, [[1.5, 2.5, 4.5, 6.5]])
    assert records[2].ignore.tolist() == [True], "invalid=1 must be ignored"
    assert records[0].landmarks is None


def test_wider_zero_count_without_placeholder_line(tmp_path: Path, image_root: Path) -> None:
    text = "0--Parade/b.jpg\n0\n0--Parade/a.jpg\n1\n1 1 4 4 0 0 0 0 0 0\n"
    records = load_wider(write_text(tmp_path / "gt.txt", text), image_root)
    assert [len(r.boxes) for r in records] == [0, 1]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("0--Parade/a.jpg\n3\n1 1 4 4 0 0 0 0 0 0\n0--Parade/b.jpg\n0\n", 2, "says 3 but only 1"),
        ("0--Parade/a.jpg\n1\n1 1 4 4 0 0 0 0 0 0\n1 1 4 4 0 0 0 0 0 0\n", 4, "more face lines"),
        ("0--Parade/a.jpg\n2\n1 1 4 4 0 0 0 0 0 0\n", 2, "says 2 but only 1"),
        ("0--Parade/a.jpg\ntwo\n", 2, "expected a face count"),
        ("0--Parade/a.jpg\n-1\n", 2, "negative"),
        ("0--Parade/a.jpg\n1\n1 1 4 4 0 0 0\n", 3, "expected 10 numbers"),
        ("0--Parade/a.jpg\n1\n1 1 x 4 0 0 0 0 0 0\n", 3, "'x' is not a number"),
        ("0--Parade/a.jpg\n1\n1 1 nan 4 0 0 0 0 0 0\n", 3, "not a finite"),
        ("0--Parade/a.jpg\n1\n1 1 -4 4 0 0 0 0 0 0\n", 3, "negative box size"),
        ("0--Parade/b.jpg\n0\n0--Parade/missing.jpg\n0\n", 3, "not found"),
        ("0--Parade/a.jpg\n", 1, "ends before the face count"),
        ("not an image path\n1\n", 1, "expected an image path"),
    ],
)
def test_wider_malformed_lines_name_file_and_line(
    tmp_path: Path, image_root: Path, text: str, line: int, words: str
) -> None:
    gt = write_text(tmp_path / "gt.txt", text)
    with pytest.raises(KpnetError) as error:
        load_wider(gt, image_root)
    assert str(error.value).startswith(f"{gt}:{line}: "), str(error.value)
    assert words in str(error.value)


def test_wider_unreadable_or_empty_file(tmp_path: Path, image_root: Path) -> None:
    with pytest.raises(KpnetError, match="cannot read"):
        load_wider(tmp_path / "absent.txt", image_root)
    with pytest.raises(KpnetError, match="no images listed"):
        load_wider(write_text(tmp_path / "gt.txt", "\n\n"), image_root)


RETINA_GOOD = """\
# 0--Parade/a.jpg
449 330 122 149 488.9 373.6 0.0 542.0 376.4 0.0 515.0 412.8 0.0 485.1 425.8 0.0 538.3 431.4 0.0 0.82
78 221 7 8 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 0.2
# 0--Parade/b.jpg
# 1--Handshaking/c.jpg
10 10 20 0
3 4 5 6
"""


def test_retinaface_boxes_landmarks_and_absent_points(tmp_path: Path, image_root: Path) -> None:
    records = load_retinaface_labels(write_text(tmp_path / "label.txt", RETINA_GOOD), image_root)
    assert [r.path.name for r in records] == ["a.jpg", "b.jpg", "c.jpg"]
    first = records[0]
    np.testing.assert_allclose(first.boxes, [[449, 330, 571, 479], [78, 221, 85, 229]])
    expected = [[488.9, 373.6], [542.0, 376.4], [515.0, 412.8], [485.1, 425.8], [538.3, 431.4]]
    np.testing.assert_allclose(first.landmarks[0], expected)
    assert np.isnan(first.landmarks[1]).all(), "-1 landmarks must become NaN"
    assert records[1].boxes.shape == (0, 4) and records[1].landmarks.shape == (0, 5, 2)
    assert records[2].ignore.tolist() == [True, False], "a zero-height box must be ignored"
    assert np.isnan(records[2].landmarks).all(), "box-only faces have no landmarks"


def test_retinaface_single_absent_point_is_nan_others_kept(tmp_path: Path, image_root: Path) -> None:
    text = "# 0--Parade/a.jpg\n0 0 10 10 1 2 0 -1 -1 -1 5 6 0 7 8 0 9 9 0 0.5\n"
    landmarks = load_retinaface_labels(write_text(tmp_path / "l.txt", text), image_root)[0].landmarks[0]
    assert np.isnan(landmarks[1]).all()
    np.testing.assert_allclose(landmarks[[0, 2, 3, 4]], [[1, 2], [5, 6], [7, 8], [9, 9]])


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("1 2 3 4\n", 1, "before the first '# path' header"),
        ("# 0--Parade/a.jpg\n1 2 3 4 5\n", 2, "got 5 fields"),
        ("# 0--Parade/a.jpg\n1 2 3 4\n1 2 three 4\n", 3, "'three' is not a number"),
        ("# 0--Parade/a.jpg\n1 2 -3 4\n", 2, "negative box size"),
        ("# 0--Parade/a.jpg\n\n# 0--Parade/gone.jpg\n", 3, "not found"),
        ("#\n", 1, "expected '# <image path>'"),
    ],
)
def test_retinaface_malformed_lines_name_file_and_line(
    tmp_path: Path, image_root: Path, text: str, line: int, words: str
) -> None:
    labels = write_text(tmp_path / "label.txt", text)
    with pytest.raises(KpnetError) as error:
        load_retinaface_labels(labels, image_root)
    assert str(error.value).startswith(f"{labels}:{line}: "), str(error.value)
    assert words in str(error.value)


def test_retinaface_file_without_headers(tmp_path: Path, image_root: Path) -> None:
    with pytest.raises(KpnetError, match="no '# path' headers"):
        load_retinaface_labels(write_text(tmp_path / "label.txt", ""), image_root)


def test_folder_lists_images_without_faces(tmp_path: Path, image_root: Path) -> None:
    (image_root / "notes.txt").write_text("not an image")
    records = load_folder(image_root)
    assert [r.path.name for r in records] == ["a.jpg", "b.jpg", "c.jpg"]
    assert all(r.boxes.shape == (0, 4) and r.ignore.shape == (0,) for r in records)


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KpnetError, match="no images found"):
        load_folder(tmp_path)


def test_wider_dev_counts(wider_dev: Path) -> None:
    records = load_wider(wider_dev / "wider_face_val_bbx_gt.txt", wider_dev / "images")
    assert len(records) == 100
    assert sum(len(r.boxes) for r in records) == 2656
    boxes = np.concatenate([r.boxes for r in records])
    assert (boxes[:, 2:] > boxes[:, :2]).all(), "x2 > x1 and y2 > y1 for every dev face"
    assert boxes.max() <= 416 + 1, "dev images are 416 x 416"

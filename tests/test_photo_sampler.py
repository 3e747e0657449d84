"""Training cuts of real photos: faces keep their labels through zoom, mosaic, letterbox and flip,
and whatever cannot be learnt in a cut becomes an ignore region."""

from __future__ import annotations

import numpy as np
import pytest

from kpnet_edge import config
from kpnet_edge.training import photos
from kpnet_edge.training.photos import Photo, PhotoSampler


def _photo(seed: int) -> Photo:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    boxes = np.array([[100.0, 80, 160, 150], [250, 100, 290, 145]])
    unit = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    landmarks = boxes[:, None, :2] + unit[None] * (boxes[:, None, 2:] - boxes[:, None, :2])
    visible = np.ones((2, 5), bool)
    visible[1, 3:] = False
    return Photo(image, boxes, landmarks, visible, np.array([[10.0, 10, 40, 40]]))


@pytest.mark.parametrize("size, full", [(128, False), (256, True)])
def test_cuts_keep_faces_learnable_and_points_on_their_faces(size: int, full: bool) -> None:
    sampler = PhotoSampler([_photo(0), _photo(1)], seed=3)
    seen_faces = 0
    for index in range(40):
        cut = sampler.cut(index, size, full)
        assert cut.image.shape == (size, size, 3) and cut.image.dtype == np.uint8
        centres = (cut.boxes[:, :2] + cut.boxes[:, 2:]) / 2
        assert ((centres >= 0) & (centres <= size - 1)).all(), "a face centred outside is ignored"
        sizes = np.max(cut.boxes[:, 2:] - cut.boxes[:, :2], axis=1)
        bins = config.scale_to_bin(sizes / config.INPUT_SIZE)
        assert ((bins >= 0) & (bins < config.NUM_SCALES)).all()
        # Trusted points lie inside their face's box (grown for rotation) and on the image.
        for box, points, seen in zip(cut.boxes, cut.landmarks, cut.visible):
            grown = np.concatenate([box[:2] - 0.3 * (box[2:] - box[:2]), box[2:] + 0.3 * (box[2:] - box[:2])])
            assert ((points[seen] >= grown[:2]) & (points[seen] <= grown[2:])).all()
            assert ((points[seen] >= 0) & (points[seen] <= size - 1)).all()
        seen_faces += len(cut.boxes)
    assert seen_faces > 20, "most cuts must hold a face"


def test_cuts_are_a_pure_function_of_seed_and_index() -> None:
    first = PhotoSampler([_photo(0), _photo(1)], seed=5).cut(7, 128, False)
    second = PhotoSampler([_photo(0), _photo(1)], seed=5).cut(7, 128, False)
    assert np.array_equal(first.image, second.image) and np.allclose(first.boxes, second.boxes)


def test_guessed_points_stay_masked_through_flips() -> None:
    sampler = PhotoSampler([_photo(0)], seed=0)
    masked = 0
    for index in range(30):
        cut = sampler.cut(index, 256, True)
        # The face with hidden mouth corners is the smaller one (40 x 45 px in the photo).
        for box, seen in zip(cut.boxes, cut.visible):
            if not seen[3:].any() and seen[:2].all():
                masked += 1
    assert masked > 0


@pytest.mark.parametrize("size, full", [(128, False), (256, True)])
def test_stretched_cuts_move_boxes_with_their_points(size: int, full: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stretched view's boxes take each axis's factor, as the landmarks inside them do, so the
    scale bin and the points agree; both ways of stretching occur."""
    monkeypatch.setattr(photos, "P_STRETCH", 1.0)
    monkeypatch.setattr(photos, "P_ROTATE", 0.0)
    monkeypatch.setattr(photos, "P_MOSAIC", 0.0)
    original = _photo(0)
    spread = np.ptp(original.landmarks[0], axis=0)  # (x, y) extent of face 0's points
    box_sides = original.boxes[0, 2:] - original.boxes[0, :2]
    ratios = []
    for index in range(40):
        cut = PhotoSampler([original], seed=2).cut(index, size, full)
        for box, points, seen in zip(cut.boxes, cut.landmarks, cut.visible):
            if not seen.all():
                continue  # face 1 (guessed mouth corners)
            box_factor = (box[2:] - box[:2]) / box_sides
            point_factor = np.ptp(points, axis=0) / spread
            np.testing.assert_allclose(box_factor, point_factor, rtol=1e-6)
            ratios.append(box_factor[1] / box_factor[0])
    ratios = np.array(ratios)
    assert len(ratios) > 10
    assert (ratios > 1.15).any() and (ratios < 1 / 1.15).any()
    assert (ratios <= photos.MAX_STRETCH + 1e-9).all() and (ratios >= 1 / photos.MAX_STRETCH - 1e-9).all()

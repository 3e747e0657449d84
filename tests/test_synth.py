"""Synthetic scenes: determinism, landmark geometry, scale-bin coverage, empty scenes and crops."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpnet_edge import config
from kpnet_edge.data.mtfl import load_mtfl
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks
from kpnet_edge.imageio import list_images
from kpnet_edge.training.synth import Scene, SceneGenerator, SynthConfig, random_crop

SIZE = config.INPUT_SIZE
# One colour per landmark (RGB): left eye, right eye, nose, left mouth, right mouth.
DOT_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]])
BASE_LANDMARKS = np.array([[30, 34], [50, 34], [40, 45], [32, 56], [48, 56]], dtype=float)


@pytest.fixture(scope="module")
def dot_faces(tmp_path_factory: pytest.TempPathFactory) -> list[AnnotatedImage]:
    """Six 80x80 grey 'faces' with a coloured dot on each landmark, loaded through load_mtfl."""
    root = tmp_path_factory.mktemp("dot_faces")
    rng = np.random.default_rng(0)
    lines = []
    for number in range(6):
        points = BASE_LANDMARKS + rng.integers(-3, 4, (5, 2))
        crop = np.full((80, 80, 3), 90, np.uint8)
        for (x, y), colour in zip(points.astype(int), DOT_COLOURS):
            cv2.circle(crop, (int(x), int(y)), 3, colour[::-1].tolist(), -1)  # BGR on disk
        cv2.imwrite(str(root / f"face{number}.png"), crop)
        numbers = " ".join(f"{value:g}" for value in [*points[:, 0], *points[:, 1]])
        lines.append(f"face{number}.png {numbers}")
    (root / "list.txt").write_text("\n".join(lines))
    return load_mtfl(root / "list.txt")


@pytest.fixture(scope="module")
def black_background(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    path = tmp_path_factory.mktemp("backgrounds") / "black.png"
    cv2.imwrite(str(path), np.zeros((300, 400, 3), np.uint8))
    return [path]


def _bins(scenes: list[Scene]) -> np.ndarray:
    boxes = np.concatenate([scene.boxes for scene in scenes])
    sizes = np.max(boxes[:, 2:] - boxes[:, :2], axis=1)
    return np.floor(config.scale_to_bin(sizes / SIZE)).astype(int)


def test_same_seed_and_index_give_the_same_scene(dot_faces: list[AnnotatedImage]) -> None:
    first = SceneGenerator(dot_faces, seed=7).generate(3)
    again = SceneGenerator(dot_faces, seed=7)
    again.generate(11)  # order of generation must not matter
    second = again.generate(3)
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.landmarks, second.landmarks)
    np.testing.assert_array_equal(first.visible, second.visible)
    other_seed = SceneGenerator(dot_faces, seed=8).generate(3)
    assert not np.array_equal(first.image, other_seed.image)


def test_scene_layout(dot_faces: list[AnnotatedImage]) -> None:
    generator = SceneGenerator(dot_faces, seed=1)
    for index in range(30):
        scene = generator.generate(index)
        count = len(scene.landmarks)
        assert scene.image.shape == (SIZE, SIZE, 3) and scene.image.dtype == np.uint8
        assert scene.landmarks.shape == (count, 5, 2) and scene.boxes.shape == (count, 4)
        assert scene.visible.shape == (count, 5) and scene.visible.dtype == bool
        assert count <= generator.config.max_faces


def test_landmarks_lie_inside_the_scene_and_boxes_follow_the_template(
    dot_faces: list[AnnotatedImage],
) -> None:
    generator = SceneGenerator(dot_faces, seed=2)
    template = FaceTemplate.load()
    for index in range(100):
        scene = generator.generate(index)
        assert np.all((scene.landmarks >= 0) & (scene.landmarks <= SIZE - 1)), f"scene {index}"
        np.testing.assert_allclose(scene.boxes, boxes_from_landmarks(scene.landmarks, template))


def test_landmarks_sit_on_the_pasted_dots_in_the_flipped_order(
    dot_faces: list[AnnotatedImage], black_background: list[Path]
) -> None:
    # One face, no photometric jitter: the pixel under landmark k must be dot k's colour, or, in a
    # flipped scene, the colour of the dot that FLIP_PERMUTATION moves to slot k.
    synth = replace(
        SynthConfig.plain(), max_faces=1, p_empty=0.0, max_distractors=0, p_procedural=0.0
    )
    generator = SceneGenerator(dot_faces, black_background, seed=3, synth_config=synth)
    orders = []
    for index in range(60):
        scene = generator.generate(index)
        if len(scene.boxes) != 1 or np.max(scene.boxes[0, 2:] - scene.boxes[0, :2]) < 60:
            continue  # dots of small faces blur away
        pixels = np.rint(scene.landmarks[0]).astype(int)
        colours = scene.image[pixels[:, 1], pixels[:, 0]].astype(int)
        nearest = np.argmin(np.abs(colours[:, None] - DOT_COLOURS[None]).sum(axis=2), axis=1)
        order = tuple(nearest.tolist())
        assert order in {(0, 1, 2, 3, 4), config.FLIP_PERMUTATION}, f"scene {index}: dots {order}"
        orders.append(order)
    assert len(orders) >= 10, f"only {len(orders)} scenes had a face large enough to check"
    assert len(set(orders)) == 2, "expected both flipped and unflipped scenes"


def test_image_left_eye_is_left_in_every_scene(dot_faces: list[AnnotatedImage]) -> None:
    # Rotation is at most 20 degrees, so after any flip the left/right names must still hold.
    generator = SceneGenerator(dot_faces, seed=4)
    landmarks = np.concatenate([generator.generate(index).landmarks for index in range(80)])
    assert np.all(landmarks[:, 0, 0] < landmarks[:, 1, 0])
    assert np.all(landmarks[:, 3, 0] < landmarks[:, 4, 0])


def test_face_sizes_cover_all_60_scale_bins(dot_faces: list[AnnotatedImage]) -> None:
    generator = SceneGenerator(dot_faces, seed=5)
    bins = _bins([generator.generate(index) for index in range(300)])
    counts = np.bincount(bins, minlength=config.NUM_SCALES)
    assert bins.min() >= 0 and bins.max() < config.NUM_SCALES, f"bins {bins.min()}..{bins.max()}"
    assert np.all(counts > 0), f"empty bins: {np.flatnonzero(counts == 0).tolist()}"


def test_zero_face_scenes_occur(dot_faces: list[AnnotatedImage]) -> None:
    generator = SceneGenerator(dot_faces, seed=6)
    counts = np.array([len(generator.generate(index).boxes) for index in range(200)])
    assert 0.03 < np.mean(counts == 0) < 0.3, f"{np.mean(counts == 0):.2f} of scenes are empty"
    assert counts.max() > 3


def test_grayscale_scenes_have_equal_channels(dot_faces: list[AnnotatedImage]) -> None:
    generator = SceneGenerator(dot_faces, seed=0, synth_config=replace(SynthConfig(), p_gray=1.0))
    image = generator.generate(0).image.astype(int)
    assert np.abs(np.diff(image, axis=2)).max() <= 1


def test_random_crop_shifts_and_keeps_faces_by_centre() -> None:
    centres = ([60, 60], [200, 60], [130, 130])
    landmarks = np.stack([BASE_LANDMARKS - 40 + centre for centre in centres])
    # Each pixel holds its own (x, y), so a crop's first pixel tells where the window was cut.
    y, x = np.mgrid[:SIZE, :SIZE]
    scene = Scene(
        image=np.stack([x, y, np.zeros_like(x)], axis=2).astype(np.uint8),
        landmarks=landmarks,
        boxes=boxes_from_landmarks(landmarks, FaceTemplate.load()),
        visible=np.ones((3, 5), dtype=bool),
    )
    rng = np.random.default_rng(0)
    kept = set()
    for _ in range(30):
        crop = random_crop(scene, 128, rng)
        left, top = crop.image[0, 0, :2].astype(int)
        offset = np.array([left, top])
        np.testing.assert_array_equal(crop.image, scene.image[top : top + 128, left : left + 128])
        centres = (scene.boxes[:, :2] + scene.boxes[:, 2:]) / 2 - offset
        keep = np.all((centres >= -0.5) & (centres < 127.5), axis=1)
        np.testing.assert_allclose(crop.landmarks, scene.landmarks[keep] - offset)
        np.testing.assert_allclose(crop.boxes, scene.boxes[keep] - np.tile(offset, 2))
        inside = np.all((crop.landmarks >= -0.5) & (crop.landmarks < 127.5), axis=2)
        np.testing.assert_array_equal(crop.visible, inside)
        kept.add(int(keep.sum()))
    assert len(kept) > 1, "every crop kept the same number of faces: windows did not move"


def test_random_crop_rejects_a_window_larger_than_the_scene(
    dot_faces: list[AnnotatedImage],
) -> None:
    scene = SceneGenerator(dot_faces).generate(0)
    with pytest.raises(ValueError, match="crop_size"):
        random_crop(scene, SIZE + 1, np.random.default_rng(0))


def test_faces_need_five_landmarks() -> None:
    with pytest.raises(ValueError, match="landmarks of shape"):
        SceneGenerator([AnnotatedImage(path="x.jpg", boxes=[[0, 0, 10, 10]])])


def test_real_mtfl_faces_on_real_backgrounds(mtfl_root: Path, backgrounds_dir: Path) -> None:
    faces = load_mtfl(mtfl_root / "new_training.txt")[:200]
    generator = SceneGenerator(faces, list_images(backgrounds_dir)[:10], seed=0)
    scenes = [generator.generate(index) for index in range(40)]
    bins = _bins(scenes)
    assert bins.min() >= 0 and bins.max() < config.NUM_SCALES
    assert sum(len(scene.boxes) for scene in scenes) > 40

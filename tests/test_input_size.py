"""One checkpoint at several canvas sizes: the detector letterboxes into the size asked for, scale
bins keep their meaning in network pixels (Eq. 1 with I_max = 256), and the same face comes back
in the same image pixels at 256 and 416."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from kpnet_edge import config
from kpnet_edge.detector import FaceDetector
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks
from kpnet_edge.preprocess import check_input_size, letterbox, letterbox_into
from kpnet_edge.training.targets import face_targets

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "group.jpg"


class PlantedRuntime:
    """What a perfect DRNet outputs for faces with these landmarks (N, K, 2) in the pixels of an
    image of `image_shape`, at whatever canvas size it is fed: a scale-map peak at each face's
    host cell and Eq. 1 bin (I_max = 256), quadratic-logit blobs at the landmarks."""

    def __init__(self, landmarks: np.ndarray, image_shape: tuple[int, int]) -> None:
        self.landmarks = landmarks
        self.image_shape = image_shape
        self.canvas_sizes: list[int] = []

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        size = canvases.shape[1]
        self.canvas_sizes.append(size)
        cells = size // config.STRIDE
        points = self.landmarks * (size / max(self.image_shape))
        targets = face_targets(boxes_from_landmarks(points, FaceTemplate.load()), (cells, cells), config.INPUT_SIZE)
        scale = np.full((config.NUM_SCALES, cells, cells), -12.0, np.float32)
        scale[targets.bins, targets.cells[:, 0], targets.cells[:, 1]] = 6.0
        ys, xs = np.mgrid[0:cells, 0:cells]
        heat = np.full((config.NUM_LANDMARKS, cells, cells), -60.0, np.float32)
        for face in points:
            for k, (x, y) in enumerate(config.pixel_to_cell(face)):
                heat[k] = np.maximum(heat[k], -0.5 * ((xs - x) ** 2 + (ys - y) ** 2))
        count = len(canvases)
        return np.repeat(scale[None], count, 0), np.repeat(heat[None], count, 0)


def template_face(cx: float, cy: float, size: float) -> np.ndarray:
    template = FaceTemplate.load()
    box = template.box
    scale = size / max(box[2] - box[0], box[3] - box[1])
    return (template.landmarks - (box[:2] + box[2:]) / 2) * scale + np.array([cx, cy])


def test_same_face_in_same_image_pixels_at_two_canvas_sizes():
    image = np.zeros((480, 640, 3), np.uint8)
    faces = np.stack([template_face(200.3, 180.6, 90.0), template_face(470.2, 300.1, 60.0)])
    found = {}
    for size in (256, 416):
        runtime = PlantedRuntime(faces, image.shape[:2])
        found[size] = FaceDetector(runtime, input_size=size).detect(image)
        assert runtime.canvas_sizes == [size]
        assert len(found[size]) == 2
    for face_256, face_416 in zip(found[256], found[416]):
        np.testing.assert_allclose(face_256.landmarks, face_416.landmarks, atol=0.1)
        np.testing.assert_allclose(face_256.box, face_416.box, atol=0.2)
    order = np.argsort([face.landmarks[2, 0] for face in found[416]])
    np.testing.assert_allclose(np.stack([found[416][i].landmarks for i in order]), faces, atol=0.1)


def test_proposal_size_is_in_reference_pixels_whatever_the_canvas():
    """A bin decodes to the same proposal side in canvas pixels at 256 and at 416."""
    from kpnet_edge.postprocess import PostprocessParams, postprocess

    sides = []
    for size in (256, 416):
        cells = size // config.STRIDE
        scale = np.full((config.NUM_SCALES, cells, cells), -12.0, np.float32)
        scale[30, cells // 2, cells // 2] = 6.0
        heat = np.zeros((config.NUM_LANDMARKS, cells, cells), np.float32)
        found = postprocess(scale, heat, PostprocessParams())
        sides.append(found.proposals[0, 2] - found.proposals[0, 0])
    expected = config.bin_to_scale(30.5) * config.INPUT_SIZE
    np.testing.assert_allclose(sides, [expected, expected])


@pytest.mark.parametrize("size", [0, 100, 257, -8, 2.5])
def test_bad_input_sizes_are_refused(size):
    with pytest.raises(ValueError, match="multiple of 8"):
        check_input_size(size)


def test_letterbox_into_a_reused_canvas_equals_a_fresh_letterbox():
    rng = np.random.default_rng(0)
    canvas = np.full((320, 320, 3), 255, np.uint8)
    for shape in [(480, 640, 3), (100, 50), (64, 64, 4), (700, 90, 1)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        for order in ("bgr", "rgb"):
            box = letterbox_into(image, canvas, order)
            fresh, fresh_box = letterbox(image, order, 320)
            np.testing.assert_array_equal(canvas, fresh, err_msg=f"{shape} {order}")
            assert box == fresh_box
    bgr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    letterbox_into(bgr, canvas, "bgr")
    np.testing.assert_array_equal(canvas[:320, :320], cv2.resize(bgr, (320, 320))[:, :, ::-1])


@pytest.mark.parametrize("side, interpolation", [(416, cv2.INTER_LINEAR), (1024, cv2.INTER_AREA)])
def test_letterbox_averages_only_past_a_2x_shrink(side, interpolation):
    """A 416 photo (scale 0.62) is sampled bilinearly, as training warps its photos; a 1024 one
    (scale 0.25) is area-averaged, where bilinear sampling would alias. Noise tells the two apart."""
    image = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    canvas, _ = letterbox(image, "rgb", 256)
    expected = cv2.resize(image, (256, 256), interpolation=interpolation)
    np.testing.assert_array_equal(canvas, expected)
    other = cv2.INTER_AREA if interpolation == cv2.INTER_LINEAR else cv2.INTER_LINEAR
    assert not np.array_equal(canvas, cv2.resize(image, (256, 256), interpolation=other))


def test_shipped_checkpoint_runs_at_a_larger_canvas():
    pytest.importorskip("torch")
    detector = FaceDetector.from_checkpoint(input_size=320)
    image = cv2.imread(str(EXAMPLE))
    faces, times = detector.detect_batch_timed([image])
    assert detector.input_size == 320 and times.model > 0
    height, width = image.shape[:2]
    for face in faces[0]:
        centre = (face.box[:2] + face.box[2:]) / 2
        assert 0 <= centre[0] <= width and 0 <= centre[1] <= height

"""The numpy post-processor: planted faces come back, the fast paths equal naive references, and
hostile maps neither crash it nor blow up its output."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kpnet_edge import config
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks
from kpnet_edge.postprocess import (
    SOFT_ARGMAX_METHODS,
    PostprocessParams,
    find_proposals,
    nms,
    pairwise_iou,
    postprocess,
    proposal_windows,
    scale_adaptive_soft_argmax,
    window_max,
)
from kpnet_edge.training.targets import face_targets

MAP = config.OUTPUT_SIZE


def plant_faces(landmarks_px: np.ndarray, sharpness: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Maps a perfect DRNet would give for faces with these landmarks (N, K, 2) in canvas pixels:
    a scale-map peak at each face's host cell and bin, quadratic-logit blobs at the landmarks."""
    template = FaceTemplate.load()
    boxes = boxes_from_landmarks(landmarks_px, template)
    targets = face_targets(boxes, (MAP, MAP), config.INPUT_SIZE)
    scale = np.full((config.NUM_SCALES, MAP, MAP), -12.0, np.float32)
    for (cy, cx), b in zip(targets.cells, targets.bins):
        scale[b, cy, cx] = 6.0
    ys, xs = np.mgrid[0:MAP, 0:MAP]
    heat = np.full((config.NUM_LANDMARKS, MAP, MAP), -60.0, np.float32)
    for face in landmarks_px:
        for k, point in enumerate(config.pixel_to_cell(face)):
            blob = -sharpness * ((xs - point[0]) ** 2 + (ys - point[1]) ** 2)
            heat[k] = np.maximum(heat[k], blob)
    return scale, heat


def face_at(cx: float, cy: float, size: float) -> np.ndarray:
    """Template landmarks scaled so the template box side is about `size` px, centred at (cx, cy)."""
    template = FaceTemplate.load()
    box = template.box
    scale = size / max(box[2] - box[0], box[3] - box[1])
    centre = (box[:2] + box[2:]) / 2
    return (template.landmarks - centre) * scale + np.array([cx, cy])


def test_planted_faces_are_recovered_with_subpixel_landmarks():
    faces = np.stack([face_at(60.3, 70.7, 40.0), face_at(180.6, 150.2, 90.0), face_at(200.1, 40.4, 24.0)])
    scale, heat = plant_faces(faces)
    found = postprocess(scale, heat, PostprocessParams())
    assert len(found) == 3, f"expected 3 faces, got {len(found)}"
    order = [int(np.argmin(np.linalg.norm(found.landmarks[:, 2] - f[2], axis=1))) for f in faces]
    np.testing.assert_allclose(found.landmarks[order], faces, atol=0.05)
    expected_boxes = boxes_from_landmarks(faces, FaceTemplate.load())
    np.testing.assert_allclose(found.boxes[order], expected_boxes, atol=0.2)
    assert np.all((found.scores > 0) & (found.scores <= 1))


def test_proposal_size_decodes_eq1_bin():
    faces = face_at(128.0, 128.0, 64.0)[None]
    scale, heat = plant_faces(faces)
    found = postprocess(scale, heat, PostprocessParams())
    side = found.proposals[0, 2] - found.proposals[0, 0]
    box = boxes_from_landmarks(faces, FaceTemplate.load())[0]
    true_side = max(box[2] - box[0], box[3] - box[1])
    # One bin is 2**0.1 wide: the decoded bin centre is within half a bin of the true size.
    assert abs(np.log2(side / true_side)) <= 0.05 + 1e-9


def test_letterbox_undo_scales_everything():
    faces = face_at(100.0, 100.0, 50.0)[None]
    found = postprocess(*plant_faces(faces), PostprocessParams())
    back = found.scaled(2.5)
    np.testing.assert_allclose(back.landmarks, found.landmarks * 2.5)
    np.testing.assert_allclose(back.boxes, found.boxes * 2.5)


def naive_proposals(scale: np.ndarray, threshold: float) -> list[tuple[float, int, int, int]]:
    """(logit, bin, y, x) of every bin at or above `threshold` that no neighbour over (bin, y, x)
    exceeds (neighbours beyond the border clip onto it), highest first, ties by bin then cell."""
    bins, height, width = scale.shape
    found = []
    for b in range(bins):
        for y in range(height):
            for x in range(width):
                value = scale[b, y, x]
                if not value >= threshold:
                    continue
                neighbours = [
                    scale[min(max(b + db, 0), bins - 1), min(max(y + dy, 0), height - 1), min(max(x + dx, 0), width - 1)]
                    for db in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                ]
                if not any(n > value for n in neighbours):
                    found.append((float(value), b, y, x))
    return sorted(found, key=lambda item: -item[0])  # stable: ties keep (bin, y, x) order


@pytest.mark.parametrize("seed", range(4))
def test_proposals_equal_naive_local_maxima(seed):
    """Integer-valued maps (ties and plateaus everywhere, some NaN): the local maxima, their order
    and their logits are those of a plain loop over every cell and bin."""
    rng = np.random.default_rng(seed)
    scale = rng.integers(-3, 4, (config.NUM_SCALES, 12, 14)).astype(np.float32)
    scale[rng.random(scale.shape) < 0.02] = np.nan
    params = PostprocessParams(score_threshold=0.5, max_proposals=10_000, max_candidate_cells=10_000)
    cells, bins, logits = find_proposals(scale, params)
    found = [(float(v), int(b), int(y), int(x)) for v, b, (y, x) in zip(logits, bins, cells)]
    assert found == naive_proposals(scale, 0.0)


def naive_soft_argmax(heat: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x1, y1, x2, y2 = window
    points, peaks = [], []
    for channel in heat:
        patch = channel[y1 : y2 + 1, x1 : x2 + 1].astype(np.float64)
        weights = np.exp(patch - patch.max())
        phi = weights / weights.sum()
        gy, gx = np.mgrid[y1 : y2 + 1, x1 : x2 + 1]
        points.append([(phi * gx).sum(), (phi * gy).sum()])
        peaks.append(phi.max())
    return np.array(points), np.array(peaks)


@pytest.mark.parametrize("method", SOFT_ARGMAX_METHODS)
@pytest.mark.parametrize("spread", [1.0, 4.0, 12.0])
def test_vectorised_soft_argmax_equals_naive_loop(spread, method):
    rng = np.random.default_rng(7)
    heat = (rng.normal(size=(5, 64, 80)) * spread).astype(np.float32)
    corners = rng.integers(0, [80, 64], size=(60, 2))
    sides = rng.integers(0, 40, size=(60, 2))
    windows = np.concatenate([corners, np.minimum(corners + sides, [79, 63])], axis=1)
    windows = windows[:, [0, 1, 2, 3]]
    points, peaks = scale_adaptive_soft_argmax(heat, windows, method=method)
    for p, window in enumerate(windows):
        ref_points, ref_peaks = naive_soft_argmax(heat, window)
        np.testing.assert_allclose(points[p], ref_points, atol=1e-6, err_msg=f"window {window}")
        np.testing.assert_allclose(peaks[p], ref_peaks, atol=1e-6, err_msg=f"window {window}")


def test_far_from_peak_windows_are_exact():
    heat = np.zeros((5, 32, 32), np.float32)
    heat[:, 0, 0] = 400.0  # exp(-400) underflows the table everywhere else
    heat[:, 20:, 20:] = np.arange(12, dtype=np.float32)[None, :]
    window = np.array([[20, 20, 31, 31]])
    points, _ = scale_adaptive_soft_argmax(heat, window)
    ref, _ = naive_soft_argmax(heat, window[0])
    np.testing.assert_allclose(points[0], ref, atol=1e-6)


def random_proposals(rng: np.random.Generator, count: int, bins: tuple[int, int]) -> np.ndarray:
    """Windows of `count` proposals at random cells with random scale bins in [bins[0], bins[1])."""
    cells = rng.integers(0, MAP, size=(count, 2))
    sizes = config.bin_to_scale(rng.integers(*bins, size=count) + 0.5) * config.INPUT_SIZE
    return proposal_windows(cells, sizes, (MAP, MAP))


@pytest.mark.parametrize("method", SOFT_ARGMAX_METHODS)
def test_confident_peak_maps_equal_naive_reference(method):
    """The issue-11 case that used to take a per-window slow path: N(0, 2) heatmaps with one
    confident landmark (logit 40) per channel, 200 proposals with bins 10-50."""
    rng = np.random.default_rng(11)
    heat = rng.normal(0.0, 2.0, (config.NUM_LANDMARKS, MAP, MAP)).astype(np.float32)
    heat[np.arange(config.NUM_LANDMARKS), rng.integers(0, MAP, 5), rng.integers(0, MAP, 5)] = 40.0
    windows = random_proposals(rng, 200, (10, 50))
    points, peaks = scale_adaptive_soft_argmax(heat, windows, method=method)
    for p, window in enumerate(windows):
        ref_points, ref_peaks = naive_soft_argmax(heat, window)
        np.testing.assert_allclose(points[p], ref_points, atol=1e-6, err_msg=f"window {window}")
        np.testing.assert_allclose(peaks[p], ref_peaks, atol=1e-9, err_msg=f"window {window}")


def assert_equals_naive(heat: np.ndarray, windows: np.ndarray, method: str) -> None:
    points, peaks = scale_adaptive_soft_argmax(heat, windows, method=method)
    for p, window in enumerate(windows):
        ref_points, ref_peaks = naive_soft_argmax(heat, window)
        np.testing.assert_allclose(points[p], ref_points, atol=1e-6, err_msg=f"window {window}")
        np.testing.assert_allclose(peaks[p], ref_peaks, atol=1e-9, err_msg=f"window {window}")


@pytest.mark.parametrize("method", SOFT_ARGMAX_METHODS)
def test_five_confident_faces_with_any_window_size_equal_naive_reference(method):
    """Five confident peaks per channel and windows of every scale bin (2 to 124 cells a side)."""
    rng = np.random.default_rng(13)
    heat = rng.normal(0.0, 2.0, (config.NUM_LANDMARKS, MAP, MAP)).astype(np.float32)
    for _ in range(5):
        heat[np.arange(config.NUM_LANDMARKS), rng.integers(0, MAP, 5), rng.integers(0, MAP, 5)] = 40.0
    assert_equals_naive(heat, random_proposals(rng, 120, (0, config.NUM_SCALES)), method)


@pytest.mark.parametrize("method", SOFT_ARGMAX_METHODS)
def test_isolated_and_crowded_tops_side_by_side_equal_naive_reference(method):
    """Channels whose top cells are set aside (one peak; exactly the cap of 32 high cells) next to
    channels whose are not (33 high cells; plain noise; a smooth ramp)."""
    rng = np.random.default_rng(14)
    heat = rng.normal(0.0, 2.0, (config.NUM_LANDMARKS, MAP, MAP)).astype(np.float32)
    heat[0, 70, 20] = 45.0
    cells = rng.choice(MAP * MAP, 33, replace=False)
    heat[1].flat[cells[:32]] = rng.uniform(30, 40, 32)
    heat[2].flat[cells] = rng.uniform(30, 40, 33)
    heat[4] = np.linspace(-30, 30, MAP)[None, :] + heat[4]
    assert_equals_naive(heat, random_proposals(rng, 150, (5, 50)), method)


def test_a_confident_peak_costs_no_second_round(monkeypatch):
    """The tables' first round sets a confident peak aside, so no window waits for a second."""
    from kpnet_edge import postprocess as module

    rounds = []
    original = module._window_sums
    monkeypatch.setattr(module, "_window_sums", lambda *args: rounds.append(1) or original(*args))
    rng = np.random.default_rng(11)
    heat = rng.normal(0.0, 2.0, (config.NUM_LANDMARKS, MAP, MAP)).astype(np.float32)
    heat[np.arange(config.NUM_LANDMARKS), rng.integers(0, MAP, 5), rng.integers(0, MAP, 5)] = 40.0
    scale_adaptive_soft_argmax(heat, random_proposals(rng, 200, (10, 50)), method="tables")
    assert len(rounds) == 1


@pytest.mark.parametrize("method", ["windows", "auto"])
def test_tiny_and_huge_windows_together_equal_naive_reference(method):
    """Gathering pads each group of windows to its largest: many 3-cell windows beside two that
    span the map must not be padded to them, nor computed wrongly."""
    rng = np.random.default_rng(15)
    heat = (rng.normal(size=(config.NUM_LANDMARKS, MAP, MAP)) * 4).astype(np.float32)
    small = rng.integers(0, MAP - 3, (60, 2))
    windows = np.concatenate([
        np.concatenate([small, small + 2], axis=1),
        [[0, 0, MAP - 1, MAP - 1], [10, 5, 90, 100]],
    ])
    assert_equals_naive(heat, windows, method)


def test_postprocess_on_confident_peak_maps_equals_naive_pipeline():
    """End to end on the same kind of maps: every face's landmarks are the naive soft-argmax of
    its proposal's window, and every proposal is returned (all score 0.98, distinct cells, no NMS)."""
    rng = np.random.default_rng(12)
    heat = rng.normal(0.0, 2.0, (config.NUM_LANDMARKS, MAP, MAP)).astype(np.float32)
    heat[:, 64, 64] = 40.0
    scale = np.full((config.NUM_SCALES, MAP, MAP), -12.0, np.float32)
    flat = rng.choice(MAP * MAP, 200, replace=False)
    scale[rng.integers(10, 50, 200), flat // MAP, flat % MAP] = 4.0
    found = postprocess(scale, heat, PostprocessParams(score_threshold=0.5, nms_iou=1.0))
    assert len(found) == 200
    centres = (found.proposals[:, :2] + found.proposals[:, 2:]) / 2
    cells = np.round(config.pixel_to_cell(centres[:, ::-1])).astype(np.int64)
    windows = proposal_windows(cells, found.proposals[:, 2] - found.proposals[:, 0], (MAP, MAP))
    for face, window in zip(found.landmarks, windows):
        ref_points, _ = naive_soft_argmax(heat, window)
        np.testing.assert_allclose(face, config.cell_to_pixel(ref_points), atol=1e-5, err_msg=f"window {window}")


@pytest.mark.parametrize("method", SOFT_ARGMAX_METHODS)
@pytest.mark.parametrize("seed", range(3))
def test_hostile_heatmaps_equal_naive_reference(seed, method):
    """NaN, infinities, 1e30 and +-100 logits side by side: every window still equals the naive
    soft-argmax of the cleaned logits (NaN as no evidence, values clipped to +-1e4)."""
    rng = np.random.default_rng(seed)
    specials = np.array([np.nan, np.inf, -np.inf, 0, 1, -1, 50, -50, 1e30], np.float32)
    for _ in range(100):
        height, width = rng.integers(1, 25, 2)
        heat = rng.uniform(-100, 100, (config.NUM_LANDMARKS, height, width)).astype(np.float32)
        mask = rng.random(heat.shape) < rng.random()
        heat[mask] = rng.choice(specials, mask.sum())
        corners = rng.integers(0, [width, height], (20, 2))
        windows = np.concatenate([corners, np.minimum(corners + rng.integers(0, 10, (20, 2)), [width - 1, height - 1])], 1)
        points, peaks = scale_adaptive_soft_argmax(heat, windows, method=method)
        clean = np.clip(np.nan_to_num(heat, nan=-1e4, posinf=1e4, neginf=-1e4), -1e4, 1e4)
        for p, window in enumerate(windows):
            ref_points, ref_peaks = naive_soft_argmax(clean, window)
            np.testing.assert_allclose(points[p], ref_points, atol=1e-6, err_msg=f"window {window}")
            np.testing.assert_allclose(peaks[p], ref_peaks, atol=1e-6, err_msg=f"window {window}")


def test_window_max_equals_naive():
    rng = np.random.default_rng(3)
    values = rng.random((3, 50, 70)).astype(np.float32)
    corners = rng.integers(0, [70, 50], size=(100, 2))
    windows = np.concatenate([corners, np.minimum(corners + rng.integers(0, 50, (100, 2)), [69, 49])], 1)
    got = window_max(values, windows)
    for p, (x1, y1, x2, y2) in enumerate(windows):
        np.testing.assert_array_equal(got[p], values[:, y1 : y2 + 1, x1 : x2 + 1].max(axis=(1, 2)))


def reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(iou(boxes[i], boxes[j]) <= threshold for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_simple_reference(seed):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 100, size=(150, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, size=(150, 2))], axis=1)
    scores = rng.random(150)
    assert nms(boxes, scores, 0.6).tolist() == reference_nms(boxes, scores, 0.6)


def test_nms_keeps_zero_area_boxes_as_the_reference_does():
    boxes = np.array([[0, 0, 0, 0], [5, 5, 5, 5], [0, 0, 10, 10], [1, 1, 10, 10], [3, 3, 3, 9]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert nms(boxes, scores, 0.6).tolist() == reference_nms(boxes, scores, 0.6) == [0, 1, 2, 4]


def test_nms_keeps_apart_boxes_too_small_for_opencv():
    """The box of five identical landmarks (flat heatmaps) is ~1e-14 wide after rounding; OpenCV
    would call any two such boxes duplicates, however far apart."""
    corners = np.array([[40.5, 40.5], [90.5, 90.5], [140.5, 140.5], [190.5, 190.5]])
    boxes = np.concatenate([corners, corners + 3e-14], axis=1)
    scores = np.array([0.1, 0.3, 0.6, 0.9])
    assert nms(boxes, scores, 0.6).tolist() == reference_nms(boxes, scores, 0.6) == [3, 2, 1, 0]


def test_pairwise_iou_handles_degenerate_boxes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 0, 0], [5, 5, 15, 15]], dtype=float)
    iou = pairwise_iou(boxes, boxes)
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[1, 1] == 0.0 and iou[0, 1] == 0.0
    assert iou[0, 2] == pytest.approx(25 / 175)


def test_rejects_wrong_shapes_with_clear_message():
    with pytest.raises(ValueError, match="scale_logits must be"):
        postprocess(np.zeros((10, 8, 8)), np.zeros((5, 8, 8)))
    with pytest.raises(ValueError, match="differ in size"):
        postprocess(np.zeros((60, 8, 8)), np.zeros((5, 8, 9)))


special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0, 50.0, -50.0, 1e30])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    fill=special,
    data=st.data(),
)
def test_hostile_maps_give_bounded_finite_output(height, width, fill, data):
    elements = st.one_of(special, st.floats(-100, 100, width=32))
    scale = np.full((config.NUM_SCALES, height, width), fill, np.float32)
    heat = data.draw(hnp.arrays(np.float32, (config.NUM_LANDMARKS, height, width), elements=elements))
    mask = data.draw(hnp.arrays(bool, scale.shape, elements=st.booleans()))
    scale[mask] = data.draw(elements)
    params = PostprocessParams(score_threshold=0.0, max_proposals=50)
    found = postprocess(scale, heat, params)
    assert len(found) <= params.max_proposals
    assert np.all(np.isfinite(found.boxes)) and np.all(np.isfinite(found.landmarks))
    assert np.all((found.scores >= 0) & (found.scores <= 1))
    limit = config.STRIDE * max(height, width) * 4
    assert np.all(np.abs(found.landmarks) <= limit)


def test_flat_maps_are_capped_by_top_k():
    scale = np.ones((config.NUM_SCALES, MAP, MAP), np.float32)
    heat = np.ones((config.NUM_LANDMARKS, MAP, MAP), np.float32)
    found = postprocess(scale, heat, PostprocessParams(score_threshold=0.0, max_proposals=200))
    assert 0 < len(found) <= 200


def channels_last_view(maps: np.ndarray) -> np.ndarray:
    """The same (C, H, W) maps laid out as an NHWC model returns them: a transposed view."""
    return np.ascontiguousarray(maps.transpose(1, 2, 0)).transpose(2, 0, 1)


@pytest.mark.parametrize("seed", range(4))
def test_channels_last_maps_give_the_same_faces(seed):
    """NHWC outputs reach the post-processor as views (no copy); its channels-last fast path must
    find exactly what the NCHW path finds, NaN (also in a cell's first bin) and infinities included."""
    rng = np.random.default_rng(seed)
    faces = np.stack([face_at(*rng.uniform(40, 216, 2), rng.uniform(24, 90)) for _ in range(3)])
    scale, heat = plant_faces(faces)
    scale += rng.normal(0, 3, scale.shape).astype(np.float32)
    heat += rng.normal(0, 2, heat.shape).astype(np.float32)
    if seed % 2:
        specials = np.array([np.nan, np.inf, -np.inf, 1e30], np.float32)
        for maps in (scale, heat):
            mask = rng.random(maps.shape) < 0.01
            maps[mask] = rng.choice(specials, mask.sum())
        scale[0, 5:9, 5:9] = np.nan  # NaN first in these cells' rows, a face bin above threshold
        scale[20, 5:9, 5:9] = 5.0
    params = PostprocessParams(score_threshold=0.3)
    expected = postprocess(scale, heat, params)
    found = postprocess(channels_last_view(scale), channels_last_view(heat), params)
    assert len(expected) > 0
    for name in ("boxes", "scores", "landmarks", "proposals", "proposal_scores"):
        np.testing.assert_array_equal(getattr(found, name), getattr(expected, name), err_msg=name)

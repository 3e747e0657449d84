"""Targets and losses: Eq. 1-3 targets decode back through the post-processor, and the torch
soft-argmax used for Eq. 7 equals the numpy one used at inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kpnet_edge import config
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks
from kpnet_edge.postprocess import PostprocessParams, postprocess, scale_adaptive_soft_argmax
from kpnet_edge.training.dataset import make_sample
from kpnet_edge.training.losses import keypoint_loss, scale_bce_loss, scale_focal_loss, soft_argmax_in_windows
from kpnet_edge.training.targets import face_targets, landmark_heatmap_target, scale_map_target

MAP = (config.OUTPUT_SIZE, config.OUTPUT_SIZE)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


@pytest.mark.parametrize("size", [6.0, 17.0, 40.0, 110.0, 230.0])
def test_scale_target_round_trips_through_postprocess(size):
    template = FaceTemplate.load()
    box = template.box
    scale = size / max(box[2] - box[0], box[3] - box[1])
    centre = (box[:2] + box[2:]) / 2
    landmarks = ((template.landmarks - centre) * scale + [128.3, 121.9])[None]
    boxes = boxes_from_landmarks(landmarks, template)
    targets = face_targets(boxes, MAP, config.INPUT_SIZE)
    assert targets.valid.all()
    scale_map = scale_map_target(targets, MAP)
    assert scale_map.max() == 1.0 and scale_map[targets.bins[0], *targets.cells[0]] == 1.0
    heat = np.zeros((config.NUM_LANDMARKS, *MAP), np.float32)
    found = postprocess(_logit(scale_map), heat, PostprocessParams(score_threshold=0.0))
    assert len(found) >= 1
    best = int(np.argmax(found.proposal_scores))
    proposal = found.proposals[best]
    true_side = np.max(boxes[0, 2:] - boxes[0, :2])
    side = proposal[2] - proposal[0]
    assert abs(np.log2(side / true_side)) <= 0.05 + 1e-9, (side, true_side)
    centre_found = (proposal[:2] + proposal[2:]) / 2
    np.testing.assert_allclose(centre_found, (boxes[0, :2] + boxes[0, 2:]) / 2, atol=config.STRIDE)


def test_faces_outside_the_map_or_the_bins_are_invalid():
    boxes = np.array([[-50, -50, -10, -10], [10, 10, 11, 11], [100, 100, 140, 140]], dtype=float)
    targets = face_targets(boxes, MAP, config.INPUT_SIZE)
    assert targets.valid.tolist() == [False, False, True]


def test_torch_soft_argmax_matches_numpy():
    rng = np.random.default_rng(0)
    heat = (rng.normal(size=(config.NUM_LANDMARKS, 48, 56)) * 3).astype(np.float32)
    corners = rng.integers(0, [56, 48], size=(30, 2))
    windows = np.concatenate([corners, np.minimum(corners + rng.integers(0, 30, (30, 2)), [55, 47])], 1)
    expected, _ = scale_adaptive_soft_argmax(heat, windows)
    got = soft_argmax_in_windows(
        torch.from_numpy(heat)[None].expand(len(windows), -1, -1, -1), torch.from_numpy(windows)
    )
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


def test_keypoint_loss_is_zero_when_exact_and_scale_free():
    target = torch.rand(4, config.NUM_LANDMARKS, 2) * 50
    sides = torch.tensor([5.0, 10.0, 20.0, 40.0])
    assert keypoint_loss(target, target, sides).item() == 0.0
    # The same error relative to the window costs the same at any face size (Eq. 6's Psi).
    small = keypoint_loss(target[:1] + 1.0, target[:1], sides[:1])
    large = keypoint_loss(target[:1] * 8 + 8.0, target[:1] * 8, sides[:1] * 8)
    assert small.item() == pytest.approx(large.item(), rel=1e-5)


def test_focal_loss_prefers_the_right_answer():
    target = torch.zeros(1, config.NUM_SCALES, 8, 8)
    target[0, 10, 4, 4] = 1.0
    good = torch.full_like(target, -8.0)
    good[0, 10, 4, 4] = 8.0
    bad = torch.full_like(target, -8.0)
    bad[0, 30, 1, 1] = 8.0
    assert scale_focal_loss(good, target) < 0.01 < scale_focal_loss(bad, target)


def test_landmark_heatmap_target_peaks_at_visible_landmarks_only():
    points = np.array([[[10.2, 12.7], [20.0, 12.0], [15.0, 18.0], [11.0, 24.0], [19.0, 24.0]]])
    visible = np.array([[True, True, True, False, True]])
    target = landmark_heatmap_target(points, visible, np.array([30.0]), (40, 40))
    assert target.shape == (config.NUM_LANDMARKS, 40, 40)
    assert target[0, 13, 10] == 1.0 and target[1, 12, 20] == 1.0
    assert target[3].max() == 0.0, "an occluded landmark must not be a target"
    assert 0 < target[0, 13, 12] < 1.0


def test_ignore_regions_cost_nothing_in_the_scale_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, config.NUM_SCALES, 16, 16)
    target = torch.zeros_like(logits)
    target[0, 20, 4, 4] = 1.0
    ignore = torch.zeros(2, 16, 16)
    ignore[:, 8:12, 8:14] = 1
    changed = logits.clone()
    changed[:, :, 8:12, 8:14] += 9.0  # confident "faces" inside the ignore region
    for loss in (scale_focal_loss, lambda a, b, ignore: scale_bce_loss(a, b, ignore=ignore)):
        assert torch.allclose(loss(logits, target, ignore=ignore), loss(changed, target, ignore=ignore))
        assert loss(changed, target, ignore=None) > loss(logits, target, ignore=None), "without it they cost"
    positive_inside = target.clone()
    positive_inside[1, 30, 9, 9] = 1.0
    lower = logits.clone()
    lower[1, 30, 9, 9] = -9.0
    assert scale_focal_loss(lower, positive_inside, ignore=ignore) > scale_focal_loss(
        logits, positive_inside, ignore=ignore), "a positive inside an ignore region still counts"


def test_masked_landmarks_cost_nothing_in_the_keypoint_loss():
    target = torch.rand(3, config.NUM_LANDMARKS, 2) * 10
    predicted = target + 0.5
    mask = torch.ones(3, config.NUM_LANDMARKS, dtype=torch.bool)
    mask[1, 3:] = False
    moved = predicted.clone()
    moved[1, 3:] += 100.0
    sides = torch.full((3,), 8.0)
    assert torch.allclose(keypoint_loss(predicted, target, sides, mask), keypoint_loss(moved, target, sides, mask))
    assert torch.allclose(keypoint_loss(predicted, target, sides, torch.ones_like(mask)),
                          keypoint_loss(predicted, target, sides)), "an all-true mask is Eq. 7"


def test_sample_marks_ignore_cells_and_masks_missing_points():
    image = np.zeros((64, 64, 3), np.uint8)
    boxes = np.array([[10.0, 10, 30, 30]])
    landmarks = np.array([[[15.0, 16], [25, 16], [20, 21], [16, 26], [24, 26]]])
    visible = np.array([[True, True, True, False, False]])
    sample = make_sample(image, boxes, landmarks, visible, 256, ignore_boxes=np.array([[40.0, 40, 60, 60]]))
    assert sample.landmark_mask.tolist() == [[True, True, True, False, False]]
    ignore = sample.ignore.numpy()
    cell_centres = config.cell_to_pixel(np.arange(32))
    inside = (cell_centres >= 40) & (cell_centres <= 60)
    assert (ignore == np.outer(inside, inside)).all()

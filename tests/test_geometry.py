"""Boxes from landmarks: the one-matrix-product path equals fitting each similarity and mapping the
template box through it, for any template."""

from __future__ import annotations

import numpy as np

from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks, fit_similarity, template_box_hulls


def similar_faces(template: FaceTemplate, rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` landmark sets (N, K, 2): the template scaled, rotated, shifted, plus noise."""
    scale = rng.uniform(0.2, 4.0, count)
    angle = rng.uniform(-np.pi, np.pi, count)
    rotation = np.stack([np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)], axis=1).reshape(-1, 2, 2)
    points = np.einsum("nij,kj->nki", rotation * scale[:, None, None], template.landmarks)
    return points + rng.uniform(-300, 300, (count, 1, 2)) + rng.normal(0, 3, points.shape)


def test_boxes_equal_fitted_similarity_hulls():
    template = FaceTemplate.load()
    faces = similar_faces(template, np.random.default_rng(0), 300)
    expected = template_box_hulls(fit_similarity(template.landmarks, faces), template.box)
    np.testing.assert_allclose(boxes_from_landmarks(faces, template), expected, rtol=0, atol=1e-9)


def test_exact_template_gives_its_own_box():
    template = FaceTemplate.load()
    np.testing.assert_allclose(boxes_from_landmarks(template.landmarks[None], template)[0], template.box, atol=1e-12)


def test_each_template_gets_its_own_mapping():
    """The cached matrix belongs to a template's content: a second template is not served the first's."""
    wider = FaceTemplate.load()
    other = FaceTemplate(landmarks=wider.landmarks * 1.5 + 7.0, box=np.array([-20.0, -10.0, 90.0, 140.0]))
    faces = similar_faces(wider, np.random.default_rng(1), 20)
    for template in (wider, other, wider):
        expected = template_box_hulls(fit_similarity(template.landmarks, faces), template.box)
        np.testing.assert_allclose(boxes_from_landmarks(faces, template), expected, rtol=0, atol=1e-9)


def test_no_faces_give_no_boxes():
    assert boxes_from_landmarks(np.zeros((0, 5, 2)), FaceTemplate.load()).shape == (0, 4)

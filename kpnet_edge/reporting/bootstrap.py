"""Paired bootstrap confidence intervals for the report's accuracy figures and drops.

Images are resampled with replacement (WIDER and MTFL each on their own), with one seeded set of
resamples shared by every model, so a drop is judged on the same resampled images for the
reference and the candidate: the paired interval is much narrower than the two models' own
intervals when both err on the same images. Each resample is a vector of per-image counts, and a
metric is recomputed from per-image tallies weighted by it; no detection is re-matched.

>>> draws = Resamples.draw(num_wider=3, num_mtfl=2, resamples=4, seed=0)
>>> draws.wider.shape, int(draws.wider.sum(axis=1)[0])
((4, 3), 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.evaluation.detection import FPPI_POINTS, evaluate_detections

RESAMPLES = 1000
"""Bootstrap resamples: the 2.5 / 97.5 percentiles move by well under a tenth of the interval's
width between seeds at this count."""

CONFIDENCE = 0.95
_CHUNK = 200
"""Resamples weighted at once: bounds memory to CHUNK x detections floats."""


@dataclass(frozen=True)
class Resamples:
    """(B, N) resampling counts for the WIDER and the MTFL images; each row sums to N."""

    wider: np.ndarray
    mtfl: np.ndarray
    seed: int

    @classmethod
    def draw(cls, num_wider: int, num_mtfl: int, resamples: int = RESAMPLES, seed: int = 0) -> Resamples:
        rng = np.random.default_rng(seed)

        def counts(n: int) -> np.ndarray:
            if n == 0:
                return np.zeros((resamples, 0))
            return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)

        return cls(counts(num_wider), counts(num_mtfl), seed)


@dataclass(frozen=True)
class DetectionTally:
    """One model's detections at one face-size filter, tallied per image so any resample can be
    scored: entries are the images' curve steps (one per distinct score per image) in descending
    score order, each with its image, score and true / false positives; faces: (N,) counted faces
    per image. run_ends marks the last entry of each run of equal scores (one curve point, as
    evaluate_detections makes them)."""

    image: np.ndarray
    score: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    faces: np.ndarray
    run_ends: np.ndarray

    def metrics(self, weights: np.ndarray, operating_score: float) -> dict[str, np.ndarray]:
        """Per row of weights (B, N): "ap", "recall_at_<p>_fppi" for FPPI_POINTS and
        "recall_at_score" (counted faces found by a face scoring >= operating_score); NaN where a
        resample holds no counted face."""
        results: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(weights), _CHUNK):
            for name, values in self._chunk(weights[start : start + _CHUNK], operating_score).items():
                results.setdefault(name, []).append(values)
        return {name: np.concatenate(parts) for name, parts in results.items()}

    def _chunk(self, weights: np.ndarray, operating_score: float) -> dict[str, np.ndarray]:
        per_entry = weights[:, self.image]  # (b, D)
        faces = weights @ self.faces  # (b,)
        true_positives = np.cumsum(per_entry * self.true_positives, axis=1)[:, self.run_ends]
        false_positives = np.cumsum(per_entry * self.false_positives, axis=1)[:, self.run_ends]
        recall = true_positives / np.maximum(faces, 1)[:, None]
        precision = true_positives / np.maximum(true_positives + false_positives, 1)
        fppi = false_positives / np.maximum(weights.sum(axis=1), 1)[:, None]
        none = faces == 0
        results = {"ap": np.where(none, np.nan, _average_precision(recall, precision))}
        for point in FPPI_POINTS:
            reached = np.where(fppi <= point, recall, 0.0).max(axis=1, initial=0.0)
            results[f"recall_at_{point:g}_fppi"] = np.where(none, np.nan, reached)
        above = per_entry @ (self.true_positives * (self.score >= operating_score))
        results["recall_at_score"] = np.where(none, np.nan, above / np.maximum(faces, 1))
        return results


def detection_tallies(records: Sequence[dict], ground_truth: Sequence[AnnotatedImage],
                      min_sizes: Sequence[float]) -> dict[str, DetectionTally]:
    """{str(min size): DetectionTally} of one model; records[i] must be the record of
    ground_truth[i] (the report runs them in that order). Each image is scored on its own by
    evaluate_detections (matching is per image), so the tallies add up to its global result."""
    parts: dict[str, list[tuple[int, dict]]] = {f"{size:g}": [] for size in min_sizes}
    for index, (record, truth) in enumerate(zip(records, ground_truth, strict=True)):
        result = evaluate_detections([record], [truth], min_sizes)["by_min_size"]
        for key, subset in result.items():
            parts[key].append((index, subset))
    return {key: _tally(subsets) for key, subsets in parts.items()}


def _tally(subsets: list[tuple[int, dict]]) -> DetectionTally:
    images, scores, tps, fps, faces = [np.zeros(0)], [np.zeros(0)], [np.zeros(0)], [np.zeros(0)], []
    for index, subset in subsets:
        curve = subset["curve"]
        # One image: recall = TP / max(faces, 1) and fppi = FP, both cumulative along the curve.
        cumulative_tp = np.rint(np.asarray(curve["recall"], dtype=np.float64) * max(subset["num_faces"], 1))
        cumulative_fp = np.rint(np.asarray(curve["fppi"], dtype=np.float64))
        images.append(np.full(len(cumulative_tp), index))
        scores.append(np.asarray(curve["score"], dtype=np.float64))
        tps.append(np.diff(cumulative_tp, prepend=0.0))
        fps.append(np.diff(cumulative_fp, prepend=0.0))
        faces.append(subset["num_faces"])
    score = np.concatenate(scores)
    order = np.argsort(-score, kind="stable")
    score = score[order]
    run_ends = np.flatnonzero(np.append(score[1:] != score[:-1], score.size > 0))
    return DetectionTally(np.concatenate(images)[order].astype(np.int64), score, np.concatenate(tps)[order],
                          np.concatenate(fps)[order], np.asarray(faces, dtype=np.float64), run_ends)


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Row-wise all-point AP (evaluation.detection.average_precision on each row): the area under
    the precision envelope; steps of zero recall add nothing, so no step selection is needed."""
    rows = len(recall)
    recall_points = np.hstack([np.zeros((rows, 1)), recall, np.ones((rows, 1))])
    envelope = np.hstack([np.zeros((rows, 1)), precision, np.zeros((rows, 1))])
    envelope = np.maximum.accumulate(envelope[:, ::-1], axis=1)[:, ::-1]
    return (np.diff(recall_points, axis=1) * envelope[:, 1:]).sum(axis=1)


def landmark_metrics(per_face: Sequence[float | None], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of weights (B, N): "nme" over the found faces and "miss_rate"; per_face is
    evaluate_landmarks' list (None for a miss)."""
    found = np.array([value is not None for value in per_face], dtype=np.float64)
    values = np.array([value or 0.0 for value in per_face], dtype=np.float64)
    counted = weights @ found
    with np.errstate(invalid="ignore", divide="ignore"):
        nme = np.where(counted > 0, (weights @ (values * found)) / counted, np.nan)
        miss = 1.0 - counted / np.maximum(weights.sum(axis=1), 1)
    return {"nme": nme, "miss_rate": miss}


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> list[float] | None:
    """The central percentile interval [low, high] of bootstrap samples; None when most resamples
    left the figure undefined (NaN)."""
    samples = np.asarray(samples, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    if finite.size < 0.5 * max(samples.size, 1) or finite.size == 0:
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, (tail, 100 - tail))
    return [float(low), float(high)]

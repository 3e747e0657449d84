"""Detection AP / recall-at-FPPI, landmark NME and miss rate, tables and `kpnet-edge eval`, on
hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpnet_edge.cli import main
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.data.wider import load_wider
from kpnet_edge.errors import KpnetError
from kpnet_edge.evaluation.detection import (
    at_score,
    average_precision,
    box_iou,
    evaluate_detections,
    thin_curves,
)
from kpnet_edge.evaluation.landmarks import (
    evaluate_landmarks,
    landmark_nme,
    match_faces_to_landmarks,
)
from kpnet_edge.evaluation.predictions import align_predictions
from kpnet_edge.evaluation.table import detection_table, format_table, landmark_table

# Five points of an upright face whose eyes are 10 px apart, with its centroid at (15, 16.6).
FACE_POINTS = np.array([[10, 10], [20, 10], [15, 15], [11, 24], [19, 24]], dtype=float)


def _face(box: list[float], score: float, landmarks: np.ndarray | None = None) -> dict:
    face = {"box": box, "score": score}
    if landmarks is not None:
        face["landmarks"] = np.asarray(landmarks).tolist()
    return face


def _record(image: str, *faces: dict) -> dict:
    return {"image": image, "width": 100, "height": 100, "faces": list(faces)}


def _subset(result: dict, min_size: int = 16) -> dict:
    return result["by_min_size"][str(min_size)]


def test_perfect_detections_give_ap_one() -> None:
    truth = [
        AnnotatedImage("/data/a.jpg", [[0, 0, 40, 40], [50, 50, 80, 90]]),
        AnnotatedImage("/data/b.jpg", [[10, 10, 30, 30]]),
    ]
    predictions = [
        _record("a.jpg", _face([0, 0, 40, 40], 0.9), _face([50, 50, 80, 90], 0.8)),
        _record("b.jpg", _face([10, 10, 30, 30], 0.7)),
    ]
    subset = _subset(evaluate_detections(predictions, truth))
    assert subset["num_faces"] == 3
    assert subset["ap"] == pytest.approx(1.0)
    assert subset["recall_at_fppi"] == {"0.1": 1.0, "1": 1.0}


def test_false_positive_ranked_above_true_positive_halves_ap() -> None:
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40]])]
    predictions = [_record("a.jpg", _face([60, 60, 90, 90], 0.9), _face([0, 0, 40, 40], 0.8))]
    subset = _subset(evaluate_detections(predictions, truth))
    # Curve: (R 0, P 0) after the FP, (R 1, P 0.5) after the TP; envelope 0.5 over [0, 1].
    assert subset["ap"] == pytest.approx(0.5)
    assert subset["curve"]["precision"] == [0.0, 0.5]
    assert subset["curve"]["recall"] == [0.0, 1.0]
    # One image: the FP alone is already 1 FP per image, so nothing is recalled below it.
    assert subset["recall_at_fppi"] == {"0.1": 0.0, "1": 1.0}


def test_recall_at_fppi_divides_false_positives_by_image_count() -> None:
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40]])] + [
        AnnotatedImage(f"empty{i}.jpg", np.zeros((0, 4))) for i in range(9)
    ]
    predictions = [_record("a.jpg", _face([60, 60, 90, 90], 0.9), _face([0, 0, 40, 40], 0.8))]
    result = evaluate_detections(predictions, truth)
    assert result["num_images"] == 10
    assert _subset(result)["recall_at_fppi"] == {"0.1": 1.0, "1": 1.0}
    assert _subset(result)["curve"]["fppi"] == [0.1, 0.1]


def test_ap_interpolates_under_the_precision_envelope() -> None:
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40], [50, 0, 90, 40]])]
    faces = [_face([0, 0, 40, 40], 0.9), _face([0, 50, 40, 90], 0.8), _face([50, 0, 90, 40], 0.7)]
    predictions = [_record("a.jpg", *faces)]
    subset = _subset(evaluate_detections(predictions, truth))
    # (R .5, P 1), (R .5, P .5), (R 1, P 2/3): AP = 0.5 * 1 + 0.5 * 2/3.
    assert subset["ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision) == pytest.approx(5 / 6)


def test_ap_envelope_lifts_precision_dips() -> None:
    # FP, TP, TP over 2 faces: (R .5, P .5) then (R 1, P 2/3). The envelope at R .5 is 2/3, not .5.
    recall, precision = np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 2 / 3])
    assert average_precision(recall, precision) == pytest.approx(2 / 3)


def test_thin_curves_keeps_ends_and_metrics() -> None:
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40]])]
    faces = [_face([200 + i, 0, 240 + i, 40], 0.9 - i / 100) for i in range(50)]
    result = evaluate_detections([_record("a.jpg", _face([0, 0, 40, 40], 0.95), *faces)], truth)
    thinned = thin_curves(result, max_points=10)
    full, small = _subset(result), _subset(thinned)
    assert len(full["curve"]["score"]) == 51 and len(small["curve"]["score"]) == 10
    for name in ("score", "precision", "recall", "fppi"):
        assert small["curve"][name][0] == full["curve"][name][0]
        assert small["curve"][name][-1] == full["curve"][name][-1]
    assert small["ap"] == full["ap"] and len(full["curve"]["score"]) == 51, "input left untouched"


def test_duplicate_detection_is_a_false_positive() -> None:
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40]])]
    predictions = [_record("a.jpg", _face([0, 0, 40, 40], 0.9), _face([1, 1, 41, 41], 0.8))]
    subset = _subset(evaluate_detections(predictions, truth))
    assert subset["num_detections"] == 2
    assert subset["curve"]["precision"] == [1.0, 0.5]


def test_greedy_matching_takes_best_unmatched_face_by_score() -> None:
    # The 0.9 detection overlaps both faces and takes the closer (right) one; the 0.8 detection
    # then falls back on the left face, which it still overlaps with IoU >= 0.5: two hits.
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40], [8, 0, 48, 40]])]
    predictions = [_record("a.jpg", _face([6, 0, 46, 40], 0.9), _face([2, 0, 42, 40], 0.8))]
    iou = box_iou(np.array([[6, 0, 46, 40], [2, 0, 42, 40]], float), truth[0].boxes)
    assert iou[0, 1] > iou[0, 0] >= 0.5 and iou[1, 0] >= 0.5
    subset = _subset(evaluate_detections(predictions, truth))
    assert subset["ap"] == pytest.approx(1.0)


def test_small_and_invalid_faces_are_ignore_regions() -> None:
    truth = [
        AnnotatedImage(
            "a.jpg",
            [[0, 0, 40, 40], [50, 50, 60, 60], [100, 0, 160, 60]],
            ignore=[False, False, True],
        )
    ]
    predictions = [
        _record(
            "a.jpg",
            _face([50, 50, 60, 60], 0.95),  # on the 10 px face: ignored at >= 16, a hit at >= 8
            _face([110, 10, 130, 30], 0.9),  # inside the invalid face with low IoU: ignored
            _face([0, 0, 40, 40], 0.5),
        )
    ]
    result = evaluate_detections(predictions, truth, min_sizes=(8, 16))
    at_16 = _subset(result, 16)
    assert (at_16["num_faces"], at_16["num_ignored_faces"], at_16["num_detections"]) == (1, 2, 1)
    assert at_16["ap"] == pytest.approx(1.0)
    at_8 = _subset(result, 8)
    assert (at_8["num_faces"], at_8["num_detections"]) == (2, 2)
    assert at_8["ap"] == pytest.approx(1.0)


def test_detections_well_below_min_size_are_not_false_positives() -> None:
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40]])]
    tiny = _face([200, 200, 207, 207], 0.99)  # 7 px < 0.5 * 16: not judged
    medium = _face([300, 300, 312, 312], 0.98)  # 12 px >= 8: a false positive
    predictions = [_record("a.jpg", tiny, medium, _face([0, 0, 40, 40], 0.5))]
    subset = _subset(evaluate_detections(predictions, truth))
    assert subset["num_detections"] == 2
    assert subset["ap"] == pytest.approx(0.5)
    strict = _subset(evaluate_detections(predictions, truth, small_detection_ratio=0.0))
    assert strict["num_detections"] == 3
    assert strict["ap"] == pytest.approx(1 / 3)


def test_tied_scores_do_not_depend_on_order() -> None:
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40]])]
    hit, miss = _face([0, 0, 40, 40], 0.5), _face([60, 60, 90, 90], 0.5)
    for faces in ([hit, miss], [miss, hit]):
        subset = _subset(evaluate_detections([_record("a.jpg", *faces)], truth))
        assert subset["ap"] == pytest.approx(0.5)
        assert subset["curve"]["precision"] == [0.5]


def test_image_without_prediction_record_counts_as_no_detections() -> None:
    truth = [
        AnnotatedImage("/x/0--Parade/a.jpg", [[0, 0, 40, 40]]),
        AnnotatedImage("/x/1--Hand/b.jpg", [[0, 0, 40, 40]]),
    ]
    predictions = [_record("/elsewhere/0--Parade/a.jpg", _face([0, 0, 40, 40], 0.9))]
    subset = _subset(evaluate_detections(predictions, truth))
    assert subset["num_faces"] == 2
    assert subset["ap"] == pytest.approx(0.5)
    assert subset["recall_at_fppi"]["1"] == pytest.approx(0.5)


def test_predictions_pair_with_images_by_longest_path_suffix() -> None:
    images = ["/data/lfw/x.jpg", "/data/net/x.jpg", "/data/net/y.jpg"]
    predictions = [
        _record("net/x.jpg", _face([0, 0, 1, 1], 0.2)),
        _record("C:\\out\\lfw\\x.jpg", _face([0, 0, 1, 1], 0.1)),
    ]
    faces = align_predictions(predictions, images)
    assert [f[0]["score"] if f else f for f in faces] == [0.1, 0.2, None]


@pytest.mark.parametrize(
    ("predictions", "words"),
    [
        ([_record("a.jpg"), _record("/other/a.jpg")], "several prediction records"),
        ([{"faces": []}], "\"image\" path"),
        ([_record("a.jpg", {"box": [0, 0, 1], "score": 1.0})], "'box' must have shape (4,)"),
        ([_record("a.jpg", {"box": [0, 0, 1, 1]})], "no 'score'"),
        ([_record("a.jpg", {"box": [0, 0, 1, 1], "score": "high"})], "'score' is not numeric"),
    ],
)
def test_malformed_predictions_raise_kpnet_error(predictions: list[dict], words: str) -> None:
    with pytest.raises(KpnetError) as error:
        evaluate_detections(predictions, [AnnotatedImage("/d/a.jpg", [[0, 0, 20, 20]])])
    assert words in str(error.value)


def test_one_record_matching_two_images_is_ambiguous() -> None:
    with pytest.raises(KpnetError, match="matches several images"):
        align_predictions([_record("x.jpg")], ["/d/a/x.jpg", "/d/b/x.jpg"])


def test_nme_with_known_offsets() -> None:
    truth = np.stack([FACE_POINTS, FACE_POINTS * 2])  # eye distances 10 and 20
    predicted = truth + np.array([[[0, 1]], [[3, 4]]])  # every point off by 1 and by 5 px
    result = landmark_nme(predicted, truth)
    np.testing.assert_allclose(result["per_face"], [0.1, 0.25])
    assert result["nme"] == pytest.approx(0.175)
    boxes = np.array([[0, 0, 20, 20], [0, 0, 50, 50]])
    np.testing.assert_allclose(landmark_nme(predicted, truth, "box", boxes)["per_face"], [0.05, 0.1])
    # Default box: the landmarks' own bounding box, 10 x 14 for the first face.
    assert landmark_nme(predicted[:1], truth[:1], "box")["nme"] == pytest.approx(1 / np.sqrt(140))


def test_nme_skips_absent_ground_truth_points_and_rejects_bad_input() -> None:
    truth = FACE_POINTS[None].copy()
    truth[0, 2] = np.nan
    predicted = FACE_POINTS[None].copy()
    predicted[0, 2] += 100  # would dominate the error if the absent nose were counted
    predicted[0, 0] += [4, 0]
    assert landmark_nme(predicted, truth)["nme"] == pytest.approx(4 / 4 / 10)
    with pytest.raises(ValueError, match="normaliser is zero"):
        landmark_nme(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="must both be"):
        landmark_nme(np.zeros((2, 5, 2)), np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="normalisation must be"):
        landmark_nme(FACE_POINTS[None], FACE_POINTS[None], "face")


def test_matching_picks_closest_face_and_counts_misses() -> None:
    paths = ["crops/a.jpg", "crops/b.jpg", "crops/c.jpg", "crops/d.jpg"]
    truth = np.stack([FACE_POINTS] * 4)
    predictions = [
        _record(
            "a.jpg",
            _face([0, 0, 30, 30], 0.9, FACE_POINTS + 3),  # contains the centroid, 3*sqrt(2) px off
            _face([5, 5, 25, 30], 0.6, FACE_POINTS + [0, 1]),  # closer: taken
            _face([40, 40, 60, 60], 0.99, FACE_POINTS),  # perfect points, but far box: not a match
        ),
        _record("b.jpg", _face([40, 40, 60, 60], 0.9, FACE_POINTS)),  # box misses the face
        _record("c.jpg", _face([0, 0, 30, 30], 0.2, FACE_POINTS + [2, 0])),  # below min_score
        # d.jpg has no record: a miss
    ]
    matched, found = match_faces_to_landmarks(predictions, paths, truth, min_score=0.5)
    assert found.tolist() == [True, False, False, False]
    np.testing.assert_allclose(matched[0], FACE_POINTS + [0, 1])
    assert np.isnan(matched[1:]).all()
    result = evaluate_landmarks(predictions, paths, truth, min_score=0.5)
    assert result["miss_rate"] == pytest.approx(0.75)
    assert result["nme"] == pytest.approx(0.1)
    assert result["per_face"] == [pytest.approx(0.1), None, None, None]
    assert evaluate_landmarks(predictions, paths, truth)["miss_rate"] == pytest.approx(0.5)


def test_detector_without_landmarks_is_found_but_has_no_nme() -> None:
    predictions = [_record("a.jpg", _face([0, 0, 30, 30], 0.9))]
    result = evaluate_landmarks(predictions, ["a.jpg"], FACE_POINTS[None])
    assert (result["num_found"], result["num_with_landmarks"], result["nme"]) == (1, 0, None)


def test_tables_align_and_show_results() -> None:
    table = format_table(["name", "AP"], [["yunet", "81.2"], ["haar-cascade", None]])
    lines = table.splitlines()
    assert lines[0] == "name" + " " * 12 + "AP"
    assert lines[1] == "-" * 12 + "  " + "-" * 4
    assert lines[2] == "yunet" + " " * 9 + "81.2"
    assert lines[3] == "haar-cascade" + " " * 5 + "-"
    truth = [AnnotatedImage("a.jpg", [[0, 0, 40, 40]])]
    faces = [_face([60, 60, 90, 90], 0.9), _face([0, 0, 40, 40], 0.8)]
    result = evaluate_detections([_record("a.jpg", *faces)], truth)
    rendered = detection_table(result)
    assert ">= 16 px" in rendered and "50.0" in rendered and "R@1FPPI (%)" in rendered
    predictions = [_record("a.jpg", _face([0, 0, 30, 30], 0.9, FACE_POINTS + [0, 1]))]
    landmarks = evaluate_landmarks(predictions, ["a.jpg"], FACE_POINTS[None])
    assert "10.00" in landmark_table(landmarks)


def _write_fixture(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    root = tmp_path / "images"
    (root / "0--Parade").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(root / "0--Parade" / name), np.zeros((100, 100, 3), np.uint8))
    gt = tmp_path / "gt.txt"
    gt.write_text(
        "0--Parade/a.jpg\n1\n0 0 40 40 0 0 0 0 0 0\n"
        "0--Parade/b.jpg\n1\n10 10 30 30 0 0 0 0 0 0\n"
    )
    xs, ys = FACE_POINTS[:, 0], FACE_POINTS[:, 1]
    mtfl = tmp_path / "list.txt"
    mtfl.write_text(f"images/0--Parade/a.jpg {' '.join(map(str, xs))} {' '.join(map(str, ys))}\n")
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps([
        _record(str(root / "0--Parade/a.jpg"), _face([0, 0, 40, 40], 0.9, FACE_POINTS + [0, 1])),
        _record("0--Parade/b.jpg", _face([10, 10, 40, 40], 0.8)),
    ]))
    return root, gt, mtfl, predictions


def test_eval_command_prints_tables_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, gt, mtfl, predictions = _write_fixture(tmp_path)
    out = tmp_path / "out" / "eval.json"
    code = main(["eval", str(predictions), "--wider-gt", str(gt), "--images", str(root),
                 "--landmarks-gt", str(mtfl), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "AP50 (%)" in printed and "NME inter_ocular (%)" in printed
    results = json.loads(out.read_text())
    assert results["detection"]["by_min_size"]["16"]["ap"] == pytest.approx(1.0)
    assert results["detection"]["by_min_size"]["24"]["num_faces"] == 2
    assert results["landmarks"]["nme"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([], "nothing to compare with"),
        (["--wider-gt", "{tmp}/absent.txt"], "absent.txt: cannot read"),
        (["--wider-gt", "{tmp}/gt.txt", "--iou", "0"], "--iou must be in"),
    ],
)
def test_eval_command_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], words: str
) -> None:
    _, _, _, predictions = _write_fixture(tmp_path)
    code = main(["eval", str(predictions), *(a.format(tmp=tmp_path) for a in extra)])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert words in error and "\n" not in error


def test_eval_command_rejects_predictions_for_other_images_and_warns_on_gaps(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, gt, _, predictions = _write_fixture(tmp_path)
    arguments = ["eval", str(predictions), "--wider-gt", str(gt), "--images", str(root)]
    predictions.write_text(json.dumps([_record("other/z.jpg", _face([0, 0, 9, 9], 0.9))]))
    assert main(arguments) == 2
    assert "no record's image path matches" in capsys.readouterr().err
    predictions.write_text(json.dumps([_record("0--Parade/a.jpg", _face([0, 0, 40, 40], 0.9))]))
    assert main(arguments) == 0
    assert "1 of 2 images" in capsys.readouterr().err


def test_eval_command_names_the_predictions_file_for_bad_records(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, gt, _, predictions = _write_fixture(tmp_path)
    predictions.write_text(json.dumps([_record("0--Parade/a.jpg", {"box": [0, 0], "score": 1})]))
    assert main(["eval", str(predictions), "--wider-gt", str(gt), "--images", str(root)]) == 2
    assert f"{predictions}: predictions for" in capsys.readouterr().err


def test_ground_truth_scored_against_itself_on_wider_dev(wider_dev: Path) -> None:
    truth = load_wider(wider_dev / "wider_face_val_bbx_gt.txt", wider_dev / "images")
    predictions = [
        _record(f"{r.path.parent.name}/{r.path.name}", *(_face(b.tolist(), 1.0) for b in r.boxes))
        for r in truth
    ]
    result = evaluate_detections(predictions, truth)
    for subset in result["by_min_size"].values():
        assert subset["ap"] == pytest.approx(1.0)
        assert subset["num_faces"] + subset["num_ignored_faces"] == 2656
        assert subset["num_detections"] == subset["num_faces"], "small faces must be ignored"


def test_operating_point_counts_only_detections_at_or_above_the_threshold() -> None:
    """Two faces; detections 0.9 (hit), 0.6 (false), 0.3 (hit): the point at 0.5 has P 1/2, R 1/2."""
    truth = [AnnotatedImage(Path("a.jpg"), np.array([[0.0, 0, 40, 40], [100, 100, 140, 140]]))]
    record = _record("a.jpg", _face([0, 0, 40, 40], 0.9), _face([200, 0, 240, 40], 0.6),
                     _face([100, 100, 140, 140], 0.3))
    curve = evaluate_detections([record], truth, (16,))["by_min_size"]["16"]["curve"]
    half = at_score(curve, 0.5)
    assert (half["precision"], half["recall"], half["f1"]) == (0.5, 0.5, 0.5)
    everything = at_score(curve, 0.3)
    assert everything["recall"] == 1.0 and everything["precision"] == pytest.approx(2 / 3)
    assert at_score(curve, 0.95) == {"threshold": 0.95, "precision": None, "recall": 0.0, "f1": 0.0}

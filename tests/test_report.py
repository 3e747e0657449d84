"""`kpnet-edge report`: a tiny random DRNet converted to ONNX FP32 and OpenVINO INT8 (batch 1 and 2)
gives all three files with a JSON row per model (accuracy with intervals, drop, stages, latency,
verdict), a calibration sweep, peer rows, and an HTML page that renders in headless Chromium with
its figures. Against a ground-truth oracle, a planted regression (a candidate that loses the true
faces) fails the gate with exit 3, and a planted improvement (a candidate without the reference's
false positives) passes it with exit 0."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kpnet_edge import config
from kpnet_edge.checkpoint import save_checkpoint
from kpnet_edge.cli import main
from kpnet_edge.converters import convert
from kpnet_edge.data.wider import load_wider
from kpnet_edge.geometry import FaceTemplate
from kpnet_edge.imageio import read_image
from kpnet_edge.model import DRNet
from kpnet_edge.preprocess import letterbox
from kpnet_edge.quantization.calibration import CalibrationWarning
from kpnet_edge.reporting import models as report_models_module
from kpnet_edge.reporting.environment import simd_extensions
from kpnet_edge.reporting.gate import EXIT_CODE, FAIL, NOT_GATED, PASS
from kpnet_edge.reporting.models import ReportModel
from kpnet_edge.reporting.peers import LIVE, load_peers
from kpnet_edge.reporting.stages import HEADS

TINY = {"stem": 8, "mid": 16, "deep": 32, "head": 8}
LIMIT = 7
"""The first 7 WIDER-val-200-dev images hold 7 faces >= 24 px (the first 4 hold none)."""
BATCH = 2
SWEEP = (4, 8)
PLANTED = "planted-int8"
IMPROVED = "improved-int8"
CHROMIUM = Path("/usr/bin/chromium")
# A random model's scale map sits near sigmoid(-2) after its scaled-up head: thresholds this low
# leave faces to compare (the shipped model runs at the defaults).
THRESHOLDS = ["--proposal-threshold", "0.01", "--score-threshold", "0", "--operating-score", "0"]


@dataclass(frozen=True)
class ReportRun:
    out: Path
    code: int
    output: str
    data: dict

    def rows(self) -> dict[str, dict]:
        return {row["key"]: row for row in self.data["models"]}


class Oracle:
    """Maps that encode the ground truth of known canvases (others get empty maps): a reference
    with a real AP, so a planted drop is a real number. Each counted face gets a scale-map peak at
    its Eq. 1 bin and centre cell, and landmark peaks where the box template puts them."""

    name = "oracle"

    def __init__(self, wider_gt: Path, images: Path) -> None:
        template = FaceTemplate.load()
        self.maps = {}
        for record in load_wider(wider_gt, images)[:LIMIT]:
            canvas, box = letterbox(read_image(record.path))
            self.maps[canvas.tobytes()] = self.render(record.boxes[~record.ignore] * box.scale, template)
        self.empty = self.render(np.zeros((0, 4)), template)

    @staticmethod
    def render(boxes: np.ndarray, template: FaceTemplate) -> tuple[np.ndarray, np.ndarray]:
        size = config.OUTPUT_SIZE
        scale = np.full((config.NUM_SCALES, size, size), -10.0, np.float32)
        heat = np.full((config.NUM_LANDMARKS, size, size), -10.0, np.float32)
        template_centre = (template.box[:2] + template.box[2:]) / 2
        template_side = np.sqrt(np.prod(template.box[2:] - template.box[:2]))
        for box in boxes:
            side = np.max(box[2:] - box[:2])
            b = int(np.floor(config.scale_to_bin(side / config.INPUT_SIZE)))
            cy, cx = np.round(config.pixel_to_cell((box[1::2].mean(), box[0::2].mean()))).astype(int)
            if not (0 <= b < config.NUM_SCALES and 0 <= cx < size and 0 <= cy < size):
                continue
            scale[b, cy, cx] = 5.0
            factor = np.sqrt(np.prod(box[2:] - box[:2])) / template_side
            points = (box[:2] + box[2:]) / 2 + (template.landmarks - template_centre) * factor
            cells = np.clip(np.round(config.pixel_to_cell(points)).astype(int), 0, size - 1)
            heat[np.arange(config.NUM_LANDMARKS), cells[:, 1], cells[:, 0]] = 10.0
        return scale, heat

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        maps = [self.maps.get(canvas.tobytes(), self.empty) for canvas in canvases]
        return np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps])


class WithFalsePositives:
    """The oracle's outputs with two confident faces planted in the top corners of every canvas,
    where the first images have no face: a reference that makes false positives for a candidate
    to drop. They are rendered like the oracle's faces (scale peak and landmarks), so they decode
    into full-size boxes that the >= 24 px filter judges."""

    name = "false-positives"
    BOXES = np.array([[16.0, 16.0, 76.0, 76.0], [180.0, 16.0, 240.0, 76.0]])
    """Canvas pixels [x1, y1, x2, y2]."""

    def __init__(self, runtime: Oracle) -> None:
        self.runtime = runtime
        self.planted = Oracle.render(self.BOXES, FaceTemplate.load())

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        scale, landmarks = self.runtime.run(canvases)
        return np.maximum(scale, self.planted[0]), np.maximum(landmarks, self.planted[1])


class WipedScaleMap:
    """A runtime's outputs with the scale-map logits pushed far below any threshold: no face."""

    name = "planted"

    def __init__(self, runtime: Oracle) -> None:
        self.runtime = runtime

    def run(self, canvases: np.ndarray, dequantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        scale, landmarks = self.runtime.run(canvases)
        return scale - 40.0, landmarks


def tiny_drnet(seed: int = 0) -> DRNet:
    """Random weights with heads scaled up, so the maps have peaks and decoding depends on them."""
    torch.manual_seed(seed)
    model = DRNet(**TINY)
    with torch.no_grad():
        model.landmark_head.weight.mul_(20)
        model.scale_head.weight.mul_(20)
        model.scale_head.bias.fill_(-2.0)
    return model.eval()


def run_report(argv: list[str], models: Callable[..., list[ReportModel]] | None = None) -> int:
    """`kpnet-edge report ARGV`'s exit code, optionally comparing other models than the folder's."""
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if models is not None:
            patch.setattr(report_models_module, "report_models", models)
        return main(["report", *argv])


def finished(out: Path, code: int, output: io.StringIO) -> ReportRun:
    return ReportRun(out, code, output.getvalue(), json.loads((out / "report.json").read_text()))


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, backgrounds_dir: Path) -> Path:
    weights = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(tiny_drnet(), weights)
    out = tmp_path_factory.mktemp("converted") / "models"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        convert(weights, ["onnx-fp32", "openvino-int8"], out, backgrounds_dir, batch=BATCH, calib_size=8)
    return out


def gate_file(folder: Path, text: str) -> Path:
    path = folder / "gate.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def report_run(tmp_path_factory: pytest.TempPathFactory, converted: Path, shared_data: Path,
               backgrounds_dir: Path, wider_dev: Path, mtfl_root: Path) -> ReportRun:
    """The converted models against their PyTorch source, with peers, a sweep and loose bounds."""
    out = tmp_path_factory.mktemp("report") / "out"
    # A random model's INT8 copy keeps its (random) accuracy within 90 points; it finds no MTFL face
    # to measure landmarks on, and its speed means nothing: neither is gated.
    bounds = gate_file(out.parent, "bounds:\n  ap_drop: 0.9\n  recall_drop: 0.9\n  nme_increase: null\n"
                                   "  latency_ratio: null\n")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = run_report([
            "--model", str(converted), "--data", str(shared_data), "--out", str(out), "--limit", str(LIMIT),
            "--repeats", "4", "--rounds", "2", "--peers", "--gate", str(bounds),
            "--calib-sweep", ",".join(map(str, SWEEP)), "--calib", str(backgrounds_dir), *THRESHOLDS,
        ])
    return finished(out, code, output)


def oracle_report(tmp_path_factory: pytest.TempPathFactory, converted: Path, shared_data: Path, wider_dev: Path,
                  reference: Callable[[Oracle], object], candidate: Callable[[Oracle], object], key: str) -> ReportRun:
    """`kpnet-edge report` with an oracle-based reference and candidate instead of the folder's
    models, at the default bounds except latency (their speed means nothing) and NME (the oracle
    knows no MTFL landmarks, so it finds no MTFL face)."""
    oracle = Oracle(wider_dev / "wider_face_val_bbx_gt.txt", wider_dev / "images")

    def oracle_models(*_: object) -> list[ReportModel]:
        return [ReportModel("oracle-fp32", "oracle", "fp32", False, "(ground truth)", 0, (1,),
                            lambda batch: reference(oracle)),
                ReportModel(key, "oracle", "int8", True, "(planted)", 0, (1,), lambda batch: candidate(oracle))]

    out = tmp_path_factory.mktemp(key) / "out"
    bounds = gate_file(out.parent, "bounds:\n  latency_ratio: null\n  nme_increase: null\n")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = run_report(["--model", str(converted), "--data", str(shared_data), "--out", str(out),
                           "--limit", str(LIMIT), "--repeats", "2", "--rounds", "2", "--gate", str(bounds)],
                          oracle_models)
    return finished(out, code, output)


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory: pytest.TempPathFactory, converted: Path, shared_data: Path,
             wider_dev: Path, mtfl_root: Path) -> ReportRun:
    """A planted regression: the oracle as the reference, a candidate with its scale map wiped."""
    return oracle_report(tmp_path_factory, converted, shared_data, wider_dev, lambda oracle: oracle,
                         WipedScaleMap, PLANTED)


@pytest.fixture(scope="module")
def improvement_run(tmp_path_factory: pytest.TempPathFactory, converted: Path, shared_data: Path,
                    wider_dev: Path, mtfl_root: Path) -> ReportRun:
    """A planted improvement: a reference with false positives, the clean oracle as the candidate."""
    return oracle_report(tmp_path_factory, converted, shared_data, wider_dev, WithFalsePositives,
                         lambda oracle: oracle, IMPROVED)


def test_report_writes_markdown_html_json_and_figures(report_run: ReportRun):
    assert report_run.code == 0, report_run.output[-3000:]
    for name in ("report.md", "report.html", "report.json", "pr_curves.png", "accuracy_latency.png",
                 "head_sqnr.png", "calibration_sweep.png"):
        assert (report_run.out / name).stat().st_size > 0, f"{name} missing or empty"
    markdown = (report_run.out / "report.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(figures) == 4
    for figure in figures:
        assert (report_run.out / figure).is_file(), f"report.md links {figure}, which is not beside it"
    assert "WIDER-val-200-dev@416" in markdown and "not a WIDER FACE score" in markdown
    assert "## Verdict" in markdown and "verdict PASS" in report_run.output and "report.html" in report_run.output


def test_json_has_a_row_per_model_with_accuracy_drop_stages_and_latency(report_run: ReportRun):
    rows = report_run.rows()
    assert list(rows) == ["torch-fp32", "onnx-fp32", "openvino-int8"]
    assert rows["torch-fp32"]["drop"] is None and rows["torch-fp32"]["stages"] is None
    for key, row in rows.items():
        assert row["quantized"] == (key == "openvino-int8")
        for size in ("16", "24"):
            wider = row["accuracy"]["wider"][size]
            assert set(wider["recall_at_fppi"]) == {"0.1", "1"}, f"{key}: {wider['recall_at_fppi']}"
            assert wider["num_faces"] > 0 and wider["ap"] is not None
            assert len(wider["curve"]["precision"]) == len(wider["curve"]["recall"]) > 0
        assert row["accuracy"]["mtfl"]["num_images"] == LIMIT and "nme" in row["accuracy"]["mtfl"]
        assert row["size_bytes"] > 0, f"{key}: no size on disk"
        assert [measured["batch"] for measured in row["latency"]] == [1, BATCH], f"{key}: {row['latency']}"
        for measured in row["latency"]:
            for kind in ("model_ms", "end_to_end_ms"):
                p50, p90, p99 = (measured[kind][p] for p in ("p50", "p90", "p99"))
                assert 0 < p50 <= p90 <= p99, f"{key} batch {measured['batch']} {kind}: {measured[kind]}"
            assert "threads_requested" in measured["runtime"]
            assert len(measured["end_to_end_ms"]["round_p50"]) == 2, "one median per interleaved round"
            assert isinstance(measured["consistent"], bool) and measured["spread"]["load_before"]
        ap, interval = row["accuracy"]["wider"]["24"]["ap"], row["accuracy"]["wider"]["24"]["ap_ci"]
        assert interval[0] <= ap <= interval[1], f"{key}: AP {ap} outside its interval {interval}"
        if key != "torch-fp32":
            assert set(row["stages"]["heads"]) == set(HEADS)
            assert {"nme_increase", "miss_rate_increase", "nme_increase_ci"} <= set(row["drop"]["mtfl"])
            assert {"ap_ci", "recall_at_score", "recall_at_score_ci"} <= set(row["drop"]["wider"]["24"])
            assert row["latency_ratio"]["value"] > 0 and len(row["latency_ratio"]["rounds"]) == 2
            assert row["verdict"]["verdict"] == PASS, row["verdict"]
    assert rows["openvino-int8"]["latency"][0]["runtime"]["inference_precision_hint"]
    environment = report_run.data["environment"]
    assert environment["machine"]["cpu"] and environment["machine"]["logical_cores"] >= 1
    assert environment["machine"]["simd"] == simd_extensions()
    assert {"numpy", "onnxruntime", "openvino"} <= set(environment["tools"])


def test_stages_show_a_faithful_fp32_export_and_a_lossy_int8_one(report_run: ReportRun):
    rows = report_run.rows()
    onnx, int8 = rows["onnx-fp32"]["stages"], rows["openvino-int8"]["stages"]
    assert onnx["proposals"]["reference"] > 0, "the reference made no proposals: thresholds too high"
    assert onnx["proposals"]["recall"] >= 0.99, onnx["proposals"]
    for head, figures in onnx["heads"].items():
        assert figures["identical"] or figures["sqnr_db"] > 60, f"onnx-fp32 {head}: {figures}"
        assert figures["cosine"] > 0.9999, f"onnx-fp32 {head}: {figures}"
    assert onnx["faces"]["lost"] == onnx["faces"]["gained"] == 0 and onnx["images_changed"] == 0, onnx
    scale_sqnr = int8["heads"]["scale_map"]["sqnr_db"]
    assert scale_sqnr < onnx["heads"]["scale_map"]["sqnr_db"] - 20, "INT8 should be far noisier than FP32"
    assert int8["matched_faces"]["keypoint_px_mean"] > onnx["matched_faces"]["keypoint_px_mean"]


def test_calibration_sweep_reports_int8_accuracy_per_set_size(report_run: ReportRun):
    sweep = report_run.data["calibration_sweep"]
    assert [(row["target"], row["requested_size"]) for row in sweep] == [("openvino-int8", n) for n in SWEEP]
    scored = [row for row in sweep if row["error"] is None]
    assert scored, f"every sweep size failed: {[row['error'] for row in sweep]}"
    for row in scored:
        assert row["calibration_size"] == row["requested_size"]
        assert row["accuracy"]["wider"]["24"]["num_faces"] > 0
    hashes = {row["calibration_sha256"] for row in scored}
    assert len(hashes) == len(scored), "two sizes gave the same calibration set"


def test_peer_rows_join_the_accuracy_table_with_a_caveat(report_run: ReportRun):
    assert {"yunet-n", "haar"} <= set(report_run.data["peers"]["rows"])
    markdown = (report_run.out / "report.md").read_text()
    assert "yunet-n (peer)" in markdown and "haar (peer)" in markdown
    assert "NOT the same images" in markdown, "peers stored on 100 images, models on the --limit subset"


def test_live_peers_are_scored_on_the_report_images(shared_data: Path, yunet_dir: Path, mtfl_root: Path):
    peers = load_peers(LIVE, shared_data, LIMIT)
    assert set(peers["rows"]) == {"yunet-n", "yunet-s", "haar"}, "kpnet is the report's own reference row"
    for name, row in peers["rows"].items():
        assert row["num_images"] == row["accuracy"]["mtfl"]["num_images"] == LIMIT, name
    assert peers["rows"]["yunet-n"]["accuracy"]["wider"]["24"]["ap"] > 0.5, "YuNet finds the large faces"


def test_gate_fails_a_planted_regression_that_loses_true_faces(gate_run: ReportRun):
    rows = gate_run.rows()
    oracle_ap = rows["oracle-fp32"]["accuracy"]["wider"]["24"]["ap"]
    assert oracle_ap is not None and oracle_ap > 0.3, f"the oracle should find most faces: AP {oracle_ap}"
    assert rows[PLANTED]["accuracy"]["wider"]["24"]["ap"] == 0
    drop = rows[PLANTED]["drop"]["wider"]["24"]
    assert drop["ap"] == pytest.approx(oracle_ap)
    assert drop["ap_ci"][0] > 0.01, f"every resample loses the faces: {drop['ap_ci']}"
    assert gate_run.code == EXIT_CODE, gate_run.output[-3000:]
    verdict = rows[PLANTED]["verdict"]
    assert verdict["verdict"] == FAIL and gate_run.data["gate"]["verdict"] == FAIL
    assert verdict["checks"]["ap_drop"]["result"] == FAIL and verdict["checks"]["recall_drop"]["result"] == FAIL
    assert verdict["checks"]["latency_ratio"]["result"] == NOT_GATED
    faces = rows[PLANTED]["stages"]["faces"]
    # The oracle's template boxes miss some small labelled faces by IoU, so not every loss is judged
    # a true face; most are, and nothing is gained.
    assert faces["lost"] > 0 and faces["true_faces_lost"] >= 0.6 * faces["lost"], faces
    assert faces["new_false_positives"] == faces["true_faces_gained"] == 0
    first = rows[PLANTED]["regressions"][0]["changes"]
    assert first["true_faces_lost"] == max(item["changes"]["true_faces_lost"] for item in rows[PLANTED]["regressions"])
    assert f"verdict FAIL: {PLANTED} FAIL" in gate_run.output and "AP50 drop, faces >= 24 px" in gate_run.output
    markdown = (gate_run.out / "report.md").read_text()
    assert "true faces lost" in markdown and "| FAIL |" in markdown


def test_gate_passes_a_planted_improvement_that_drops_false_positives(improvement_run: ReportRun):
    rows = improvement_run.rows()
    assert improvement_run.code == 0, improvement_run.output[-3000:]
    verdict = rows[IMPROVED]["verdict"]
    assert verdict["verdict"] == PASS and improvement_run.data["gate"]["verdict"] == PASS
    drop = rows[IMPROVED]["drop"]["wider"]["24"]
    assert drop["ap"] < 0 and drop["ap_ci"][1] <= 0, f"fewer false positives can only raise AP: {drop}"
    assert drop["recall_at_score"] == 0 and drop["recall_at_score_ci"] == [0.0, 0.0]
    faces = rows[IMPROVED]["stages"]["faces"]
    assert faces["lost"] > 0 and faces["false_positives_removed"] + faces["unlabelled_lost"] == faces["lost"], faces
    assert faces["false_positives_removed"] > 0
    # Where a planted face overlaps an oracle face, NMS keeps one of them in the reference, so the
    # candidate may "gain" that oracle face back; no true face is lost either way.
    assert faces["true_faces_lost"] == 0 and faces["false_positives_removed"] > faces["new_false_positives"]
    assert verdict["checks"]["ap_drop"]["result"] == verdict["checks"]["recall_drop"]["result"] == PASS


def test_stages_locate_the_planted_damage_in_the_scale_map(gate_run: ReportRun):
    stages = gate_run.rows()[PLANTED]["stages"]
    assert stages["proposals"]["reference"] > 0 and stages["proposals"]["recall"] == 0, stages["proposals"]
    assert stages["heads"]["scale_map"]["sqnr_db"] < 20, stages["heads"]["scale_map"]
    heads = stages["heads"]
    assert all(heads[name]["identical"] for name in config.LANDMARK_NAMES), "landmark heads were untouched"
    assert stages["faces"]["lost"] == stages["faces"]["reference"] > 0 and stages["faces"]["gained"] == 0
    regressions = gate_run.rows()[PLANTED]["regressions"]
    assert len(regressions) == stages["images_changed"] == gate_run.rows()[PLANTED]["regressions_total"] > 0
    assert sum(len(item["lost"]) for item in regressions) == stages["faces"]["lost"]
    html = (gate_run.out / "report.html").read_text()
    assert html.count("data:image/jpeg;base64,") == len(regressions), "one thumbnail per changed image"


def test_html_is_self_contained_with_data_uri_images(report_run: ReportRun):
    html = (report_run.out / "report.html").read_text()
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", html)
    assert len(sources) == html.count("<img") >= 4, "expected at least the four figures"
    for source in sources:
        match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", source)
        assert match, f"<img> source is not a base64 data URI: {source[:60]}"
        decoded = cv2.imdecode(np.frombuffer(base64.b64decode(match.group(2)), np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and min(decoded.shape[:2]) > 10, "an embedded image does not decode"
    external = re.search(r"<(script|link|iframe)\b|(src|href)=\"(https?:|file:|//)", html)
    assert external is None, f"the page loads something from outside: {external}"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)")
def test_html_renders_in_headless_chromium_with_its_figures(report_run: ReportRun, tmp_path: Path):
    screenshot = tmp_path / "report.png"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}", "--window-size=1200,2000",
         (report_run.out / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, f"chromium exited {result.returncode}: {result.stderr[-2000:]}"
    image = cv2.imread(str(screenshot))
    assert image is not None, f"no screenshot written: {result.stderr[-2000:]}"
    assert image.shape[:2] == (2000, 1200)
    ink = (image < 200).any(axis=2).mean()
    colour = (cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[:, :, 1] > 80).mean()
    assert ink > 0.01, f"the page looks blank ({ink:.4f} of pixels dark)"
    assert colour > 0.002, f"no coloured pixels ({colour:.5f}): the figures did not render"


@pytest.mark.parametrize(("argv", "message"), [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--max-drop", "2"], "--max-drop is an AP drop in [0, 1)"),
    (["--calib-sweep", "32,x"], "comma-separated image counts"),
    (["--operating-score", "1.5"], "--operating-score must lie in [0, 1]"),
    (["--gate", "/nonexistent/gate.yaml"], "/nonexistent/gate.yaml: cannot read the gate file"),
    (["--max-recall-drop", "3"], "is a fraction (0.01 = 1 point)"),
    ([], "no such manifest"),
])
def test_bad_options_fail_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                          message: str):
    assert run_report(["--model", str(tmp_path / "missing"), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n",
         ["avx2", "fma", "avx512f", "avx512_vnni"]),
        ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n", ["avx2", "fma"]),
        ("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd0c\n", ["asimddp", "i8mm"]),
        ("processor\t: 0\nmodel name\t: unknown\n", []),
    ],
    ids=["x86 with VNNI", "x86 AVX2 only", "Arm with dot product", "no flags line"],
)
def test_simd_extensions_reads_x86_flags_and_arm_features(tmp_path: Path, cpuinfo: str, expected: list[str]) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert simd_extensions(path) == expected
    assert simd_extensions(tmp_path / "missing") == []

"""`kpnet-edge convert`: every target of the table runs through the adapter `detect` uses and matches
PyTorch within its tolerance; the folder travels (lone files, sha256, merges, permissions); bad
options, folders and calibration data fail clearly, and nothing half-made is left behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kpnet_edge import config
from kpnet_edge.artifacts import FORMATS, MANIFEST_NAME, PRECISIONS, TARGETS, load_manifest, select_targets
from kpnet_edge.checkpoint import load_drnet, save_checkpoint
from kpnet_edge.cli import main
from kpnet_edge.converters import convert
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import read_image
from kpnet_edge.model import DRNet
from kpnet_edge.preprocess import letterbox
from kpnet_edge.quantization.agreement import decoded_agreement, logit_error
from kpnet_edge.quantization.calibration import CalibrationWarning, build_calibration_set
from kpnet_edge.runtimes.registry import choose_model, open_runtime

from conftest import TINY_BATCH, randomise_batchnorm

REPO = Path(__file__).resolve().parent.parent


def torch_outputs(weights: Path, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = torch.from_numpy(canvases.transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        scale, landmarks = load_drnet(weights)(pixels)
    return scale.numpy(), landmarks.numpy()


@pytest.fixture(scope="module")
def check_canvases(tiny_models: Path, tiny_calibration: Path) -> np.ndarray:
    """The held-out images the manifest names, read afresh through the inference pre-processing."""
    manifest = load_manifest(tiny_models)
    assert manifest.calibration is not None and manifest.calibration["check_held_out"]
    return np.stack([letterbox(read_image(tiny_calibration / f))[0] for f in manifest.calibration["check_files"]])


def _copy(folder: Path, to: Path, only: tuple[str, ...] | None = None) -> Path:
    to.mkdir()
    for path in folder.iterdir():
        if only is None or path.name in only:
            shutil.copy(path, to / path.name)
    return to


MADE = [(t.format, t.precision, b) for t in TARGETS.values() for b in ((1, TINY_BATCH) if t.accepts("batch") else (1,))]


@pytest.mark.parametrize(("fmt", "precision", "batch"), MADE, ids=[f"{f}-{p}-b{b}" for f, p, b in MADE])
def test_every_target_runs_through_its_adapter_and_matches_pytorch(
    tiny_models: Path, tiny_weights: Path, check_canvases: np.ndarray, fmt: str, precision: str, batch: int
) -> None:
    target = TARGETS[f"{fmt}-{precision}"]
    runtime = open_runtime(tiny_models, fmt, precision, batch=batch)
    entry = runtime.entry
    assert (entry.batch, entry.file) == (batch, target.filename(batch)) and entry.input.shape[0] == batch
    reference = torch_outputs(tiny_weights, check_canvases)
    candidate = runtime.run(check_canvases)
    figures = {**logit_error(reference, candidate), **decoded_agreement(reference, candidate)}
    for metric, bound in target.tolerance.items():
        assert figures[metric] <= bound, f"{entry.file}: {metric} = {figures[metric]:.3g} > {bound:g}"
        # The manifest's figure was measured the same way, on the same images, at convert time.
        assert figures[metric] == pytest.approx(entry.parity[metric], rel=1e-2, abs=1e-5), metric


def test_int8_tflite_takes_raw_uint8_pixels_and_describes_its_outputs(tiny_models: Path) -> None:
    entry = load_manifest(tiny_models).find("tflite", "int8")
    assert entry.input.dtype == "uint8"
    assert entry.input.quantization in (None, {"scale": 1.0, "zero_point": 0})
    assert {o.name for o in entry.outputs} == set(config.OUTPUT_NAMES)
    assert all(o.index is not None for o in entry.outputs)
    assert entry.output("scale_logits").shape[-1] == config.NUM_SCALES
    assert entry.output("landmark_logits").shape[-1] == config.NUM_LANDMARKS


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tflite_files_run_whole_in_xnnpack(tiny_models: Path, precision: str) -> None:
    """Every op is one XNNPACK knows: Keras' UpSampling2D became TILE, which it does not, and split
    the graph into five delegate partitions with reference kernels between them."""
    from ai_edge_litert.interpreter import Interpreter

    entry = load_manifest(tiny_models).find("tflite", precision)
    interpreter = Interpreter(model_path=str(tiny_models / entry.file), num_threads=1)
    interpreter.allocate_tensors()
    ops = [op["op_name"] for op in interpreter._get_ops_details()]  # the graph's nodes, delegates included
    assert "TILE" not in ops
    assert ops.count("DELEGATE") == 1


def test_onnx_int8_is_qdq_with_7_bit_weights_and_float_output_layers(tiny_models: Path) -> None:
    """The file ONNX Runtime's CPU integer kernels take: QDQ pairs, weights within 7 bits (full
    8-bit weights saturate VPMADDUBSW on CPUs without VNNI), and the convolutions writing the
    output maps computing in float (their input is the quantised activation before them)."""
    import onnx
    from onnx import numpy_helper

    entry = load_manifest(tiny_models).find("onnx", "int8")
    graph = onnx.load(str(tiny_models / entry.file)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 5
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    producers = {name: node for node in graph.node for name in node.output}
    for output in graph.output:
        node = producers[output.name]
        while node.op_type != "Conv":
            node = producers[node.input[0]]
        assert node.input[1] not in producers, f"{output.name}: its convolution's weights are quantised"


def test_manifest_validates_and_records_calibration_tools_and_parity(tiny_models: Path) -> None:
    manifest = load_manifest(tiny_models, verify=True)
    assert len(manifest.models) == len(MADE)
    calibration = manifest.calibration
    assert calibration is not None and calibration["size"] == 8 == len(calibration["files"])
    assert not set(calibration["files"]) & set(calibration["check_files"])
    for tool in ("torch", "onnx", "onnxruntime", "openvino", "nncf", "ai-edge-litert", "kpnet-edge"):
        assert manifest.tools.get(tool, "not installed") != "not installed", tool
    for entry in manifest.models:
        assert entry.normalisation["inside_graph"] and entry.normalisation["mean"] == config.PIXEL_MEAN
        assert "held-out images" in entry.checked_on
        for metric, bound in entry.tolerance.items():
            assert entry.parity[metric] <= bound, f"{entry.file}: {metric}"
    assert list(manifest.find("openvino", "fp32").extra_files) == ["drnet_fp32.bin"]


def test_outputs_have_normal_permissions(tiny_models: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    assert tiny_models.stat().st_mode & 0o777 == 0o777 & ~mask
    for path in tiny_models.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path.name


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["models"][0]["input"].update(shape="1x3x256x256"),
            r"models\[0\]\.input\.shape: expected a list",
        ),
        (
            lambda d: d["models"][1].pop("outputs"),
            r"models\[1\]: missing keys \[.outputs.\], unexpected keys \[\]",
        ),
        (lambda d: d.update(schema_version=1), "this kpnet-edge reads 'kpnet-edge/manifest' v2"),
        (lambda d: d["tools"].update(torch=2), r"manifest\.tools\.torch: expected a string"),
    ],
)
def test_broken_manifest_is_refused_naming_the_field(
    tiny_models: Path, tmp_path: Path, edit: Callable[[dict], object], message: str
) -> None:
    copy = _copy(tiny_models, tmp_path / "models", only=(MANIFEST_NAME,))
    data = json.loads((copy / MANIFEST_NAME).read_text())
    edit(data)
    (copy / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(KpnetError, match=message):
        load_manifest(copy)


def test_manifest_that_is_not_json_or_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KpnetError, match="no such manifest"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(KpnetError, match="not valid JSON"):
        load_manifest(tmp_path)


def test_tampered_model_file_is_refused_at_load_naming_it(tiny_models: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_models, tmp_path / "models")
    data = bytearray((copy / "drnet_int8.tflite").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2048] = bytes(2048)  # a damaged stretch; the file still parses
    (copy / "drnet_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(KpnetError, match=r"drnet_int8\.tflite: does not match its sha256"):
        open_runtime(copy, "tflite", "int8")
    with pytest.raises(KpnetError, match=r"drnet_int8\.tflite: does not match its sha256"):
        load_manifest(copy, verify=True)
    open_runtime(copy, "onnx", "fp32")  # the other files are untouched and still run


def test_a_lone_model_file_and_the_manifest_run_on_their_own(
    tiny_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lone = _copy(tiny_models, tmp_path / "device", only=(MANIFEST_NAME, "drnet_int8.tflite"))
    entry = choose_model(lone)
    assert (entry.format, entry.precision) == ("tflite", "int8")
    code = main(["detect", str(REPO / "examples" / "group.jpg"), "--model", str(lone)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "tflite int8 (drnet_int8.tflite)" in captured.err
    assert json.loads(captured.out)[0]["width"] == 416
    with pytest.raises(KpnetError, match=r"drnet_fp32\.onnx: missing; .*lists it for the onnx fp32 model"):
        open_runtime(lone, "onnx", "fp32")
    with pytest.raises(KpnetError, match=r"no onnx model to run: .*the folder holds drnet_int8\.tflite"):
        open_runtime(lone, "onnx")


def test_converting_into_a_folder_merges_into_its_manifest(
    tiny_models: Path, tiny_weights: Path, tiny_calibration: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = _copy(tiny_models, tmp_path / "models")
    before = load_manifest(folder)
    code = main(["convert", "--to", "onnx", "--weights", str(tiny_weights), "--calib", str(tiny_calibration),
                 "--calib-size", "8", "--out", str(folder)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "onnx fp32: export: done in" in captured.err
    assert "drnet_fp32.onnx" in captured.out and "max_rel_logit" in captured.out
    after = load_manifest(folder, verify=True)
    assert [(m.format, m.precision, m.batch) for m in after.models] == [
        (m.format, m.precision, m.batch) for m in before.models]
    assert after.find("openvino", "int8") == before.find("openvino", "int8")
    known = {MANIFEST_NAME, *(name for m in after.models for name in m.files)}
    assert {p.name for p in folder.iterdir()} == known, "files the manifest does not know"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # no staging folder left


REFUSALS = [
    # (what, call(tmp_path, fixtures) -> None, message); nothing may be written in any case.
    ("unknown target", lambda t, f: convert(None, ["tflite-fp16"], t / "out"), "unknown target 'tflite-fp16'"),
    ("option no target takes", lambda t, f: convert(t / "missing.pt", ["onnx-fp32"], t / "out", per_tensor=True),
     "--per-tensor does not apply here .*onnx-fp32 accepts --batch"),
    ("batch where no target takes it", lambda t, f: convert(t / "missing.pt", ["tflite-fp32", "tflite-int8"],
                                                            t / "out", batch=4),
     "--batch .*tflite-int8 accepts --per-tensor"),
    ("max-drop outside OpenVINO INT8", lambda t, f: convert(t / "missing.pt", ["onnx-fp32", "openvino-fp16"],
                                                            t / "out", max_drop=0.01),
     "--max-drop .*applies to openvino-int8"),
    ("max-drop out of range", lambda t, f: convert(t / "missing.pt", ["openvino-int8"], t / "out", max_drop=1.5),
     r"--max-drop is an agreement-score drop in \(0, 1\)"),
    ("batch 0", lambda t, f: convert(t / "missing.pt", ["openvino-fp32"], t / "out", batch=0),
     "--batch must be at least 1"),
    ("input size not a multiple of 8", lambda t, f: convert(t / "missing.pt", ["onnx-fp32"], t / "out",
                                                            input_size=250),
     "--input-size must be a multiple of 8"),
    ("INT8 without calibration", lambda t, f: convert(t / "missing.pt", ["tflite-int8"], t / "out"),
     "INT8 needs calibration images"),
    ("--out is a file", lambda t, f: (t / "out").write_text("x") and convert(t / "missing.pt", ["onnx-fp32"], t / "out"),
     "out: exists and is not a folder"),
    ("--out has files but no manifest", lambda t, f: ((t / "out").mkdir(), (t / "out" / "x.onnx").write_text("x"),
                                                      convert(t / "missing.pt", ["onnx-fp32"], t / "out")),
     "out: holds files but no manifest.json"),
    ("--out has models of other weights", lambda t, f: (
        _copy(f["tiny_models"], t / "out"), save_checkpoint(DRNet(stem=8, mid=16, deep=32, head=8), t / "other.pt"),
        convert(t / "other.pt", ["onnx-fp32"], t / "out")),
     "cannot add these models to its manifest.json: its models come from other weights"),
    ("--out has models of another input size", lambda t, f: (
        _copy(f["tiny_models"], t / "out"), convert(f["tiny_weights"], ["onnx-fp32"], t / "out", input_size=320)),
     "its models take 256x256 canvases, these 320x320"),
    ("unknown format", lambda t, f: select_targets(["onnx", "coreml"]),
     "unknown format coreml; choose from onnx, openvino, tflite"),
]


@pytest.mark.parametrize(("call", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_come_first_and_write_nothing(
    call: Callable, message: str, tiny_models: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    with pytest.raises(KpnetError, match=message):
        call(tmp_path, {"tiny_models": tiny_models, "tiny_weights": tiny_weights})
    out = tmp_path / "out"
    if out.is_dir() and (out / MANIFEST_NAME).exists():
        assert (out / MANIFEST_NAME).read_bytes() == (tiny_models / MANIFEST_NAME).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.converting")]


def test_format_selection() -> None:
    assert [t.key for t in select_targets(["openvino"])] == ["openvino-fp32", "openvino-fp16"]
    chosen = select_targets(["tflite", "onnx"], int8=True)
    assert [t.key for t in chosen] == ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]
    assert set(PRECISIONS) >= {t.precision for t in TARGETS.values()} and set(FORMATS) == {t.format for t in TARGETS.values()}


def test_cli_refuses_an_option_no_target_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["convert", "--to", "onnx", "--per-tensor", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--per-tensor does not apply here (onnx-fp32 accepts --batch)" in capsys.readouterr().err


def test_cli_bad_calibration_folder_exits_2_and_writes_nothing(
    tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["convert", "--to", "openvino", "--int8", "--weights", str(tiny_weights),
                 "--calib", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _scale_counts_tflite(path: Path) -> set[int]:
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return {d["quantization_parameters"]["scales"].size for d in details
            if d["dtype"] == np.int8 and d["quantization_parameters"]["scales"].size}


def _scale_counts_openvino(path: Path) -> list[int]:
    """Weight scale sizes of the INT8 convolutions (int8 -> Convert -> Multiply by scale)."""
    import openvino as ov

    counts = []
    for op in ov.Core().read_model(str(path)).get_ordered_ops():
        weights = op.input_value(1).get_node() if op.get_type_name() == "Convolution" else None
        if weights is not None and weights.get_type_name() == "Multiply":
            counts.append(int(np.prod(weights.input_value(1).get_node().get_output_shape(0))))
    return counts


def _bn_drnet(path: Path) -> Path:
    """A random tiny DRNet with non-trivial BatchNorm statistics (so folding is exercised) and
    heads scaled up so its maps have peaks, saved to path."""
    torch.manual_seed(0)
    model = DRNet(stem=8, mid=16, deep=32, head=8)
    randomise_batchnorm(model)
    with torch.no_grad():
        model.landmark_head.weight.mul_(20)
        model.scale_head.weight.mul_(20)
        model.scale_head.bias.fill_(-2.0)
    save_checkpoint(model.eval(), path)
    return path


def test_per_tensor_and_accuracy_controlled_int8(tiny_models: Path, wider_dev: Path, tmp_path: Path) -> None:
    per_channel = _scale_counts_openvino(tiny_models / "drnet_int8.xml")
    assert max(_scale_counts_tflite(tiny_models / "drnet_int8.tflite")) > 1 and max(per_channel) > 1
    max_drop = 0.0005  # below plain INT8's drop on this model, so some layers must go back to float
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        manifest = convert(_bn_drnet(tmp_path / "bn.pt"), ["openvino-int8", "tflite-int8"], tmp_path / "pt",
                           wider_dev / "images", per_tensor=True, max_drop=max_drop, calib_size=8)
    assert _scale_counts_tflite(tmp_path / "pt" / "drnet_int8.tflite") == {1}
    controlled = _scale_counts_openvino(tmp_path / "pt" / "drnet_int8.xml")
    assert set(controlled) == {1} and len(controlled) < len(per_channel)
    entry = manifest.find("openvino", "int8")
    assert entry.options == {"per_tensor": True, "max_drop": max_drop}
    # The agreement score's drop is keypoint NME + proposal error on the same held-out images.
    assert entry.parity["keypoint_nme"] <= max_drop
    assert manifest.find("tflite", "int8").options == {"per_tensor": True}


def test_model_failing_its_parity_check_is_not_written(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kpnet_edge.runtimes import registry

    real_open = registry.open_model

    class Shifted:
        def __init__(self, runtime):  # noqa: ANN001
            self.runtime, self.entry = runtime, runtime.entry

        def run(self, canvases):  # noqa: ANN001, ANN202
            return tuple(o + 1e-3 for o in self.runtime.run(canvases))

    monkeypatch.setattr(registry, "open_model", lambda *a, **k: Shifted(real_open(*a, **k)))
    message = r"parity check failed, nothing written: drnet_fp32\.onnx: max_rel_logit = \S+ > 1e-05"
    with pytest.raises(KpnetError, match=message):
        convert(tiny_weights, ["onnx-fp32"], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_interrupted_conversion_leaves_no_partial_model(
    tiny_models: Path, tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kpnet_edge.converters import onnx_export

    def interrupted(target, job, batch):  # noqa: ANN001, ANN202
        (job.staging / target.filename(batch)).write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "export", interrupted)
    weights_before = tiny_weights.read_bytes()
    existing = _copy(tiny_models, tmp_path / "existing")
    for out in (tmp_path / "new", existing):
        with pytest.raises(KeyboardInterrupt):
            convert(tiny_weights, ["onnx-fp32"], out)
    assert not (tmp_path / "new").exists()
    assert (existing / "drnet_fp32.onnx").read_bytes() == (tiny_models / "drnet_fp32.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no staging folder left
    assert tiny_weights.read_bytes() == weights_before


_SLOW_EXPORT = """
import signal, sys, time
from pathlib import Path

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if our parent ignores it
from kpnet_edge.converters import convert, onnx_export

def slow(target, job, batch):
    (job.staging / target.filename(batch)).write_bytes(b"half a model")
    Path(sys.argv[2]).write_text("exporting")
    time.sleep(60)

onnx_export.export = slow
convert(sys.argv[1], ["onnx-fp32"], sys.argv[3])
"""


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_conversion_removes_the_staging_folder(
    signal_number: int, tiny_weights: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    started = tmp_path / "started"
    process = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT, str(tiny_weights), str(started), str(work / "out")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), f"the conversion never reached its export: {process.communicate()[1][-1500:]}"
    assert [p.name for p in work.iterdir()][0].startswith(".out.converting-")
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert list(work.iterdir()) == [], f"left behind: {list(work.iterdir())}; {stderr[-1000:]}"


def _write_images(folder: Path, count: int, size: tuple[int, int] = (96, 160)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), np.uint8))
        paths.append(path)
    return paths


def test_calibration_is_letterboxed_seeded_and_hashed(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "imgs", 12)
    with pytest.warns(CalibrationWarning, match="only 5 images"):
        first = build_calibration_set(tmp_path / "imgs", size=5, seed=3)
    with pytest.warns(CalibrationWarning):
        again = build_calibration_set(tmp_path / "imgs", size=5, seed=3)
        other = build_calibration_set(tmp_path / "imgs", size=5, seed=4)
        larger = build_calibration_set(tmp_path / "imgs", size=5, seed=3, input_size=320)
    assert first.files == again.files and first.sha256 == again.sha256
    assert first.files != other.files and first.sha256 != other.sha256
    assert len(first) == 5 and len(first.check) == 7 and first.check_held_out
    expected = letterbox(read_image(tmp_path / "imgs" / first.files[0]))[0]
    np.testing.assert_array_equal(first.canvases[0], expected)
    assert first.sha256 == hashlib.sha256(first.canvases.tobytes()).hexdigest()
    assert {p.name for p in paths} >= set(first.files)
    assert larger.canvases.shape[1:] == (320, 320, 3) and larger.describe()["preprocessing"].startswith(
        "letterbox to 320x320")


def test_calibration_is_balanced_over_face_scales(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "imgs", 10, size=(100, 200))
    small = [[10, 10, 15, 15]]  # 5 px on a 200 px image: octave 0 of Eq. 1
    large = [[10, 10, 160, 90]]  # 150 px: octave 5
    records = [AnnotatedImage(p, small) for p in paths[:6]]
    records += [AnnotatedImage(p, large) for p in paths[6:8]]
    records += [AnnotatedImage(p, np.zeros((0, 4))) for p in paths[8:]]
    with pytest.warns(CalibrationWarning):
        calibration = build_calibration_set(records, size=3, seed=0)
    assert calibration.strata == {"no_faces": 1, "octave_0": 1, "octave_5": 1}


def test_unreadable_calibration_images_are_skipped_with_a_warning_naming_each(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.warns(CalibrationWarning) as caught:
        calibration = build_calibration_set(tmp_path / "imgs", size=10)
    assert any("broken.jpg" in str(w.message) for w in caught)
    assert "broken.jpg" not in calibration.files and len(calibration) == 3


@pytest.mark.parametrize("problem", ["missing", "empty", "all_corrupt"])
def test_bad_calibration_folder_fails_clearly(problem: str, tmp_path: Path) -> None:
    folder = tmp_path / "calib"
    if problem != "missing":
        folder.mkdir()
    if problem == "all_corrupt":
        (folder / "a.jpg").write_bytes(b"garbage")
        (folder / "b.png").write_bytes(b"")
    expected = {
        "missing": "no such folder", "empty": "no images found", "all_corrupt": "no readable image"
    }[problem]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        with pytest.raises(KpnetError, match=f"{folder}.*{expected}|{expected}.*{folder}"):
            build_calibration_set(folder)


@pytest.mark.slow
def test_full_size_drnet_converts_to_every_format_with_int8(
    tiny_calibration: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "drnet.pt"
    torch.manual_seed(0)
    save_checkpoint(DRNet().eval(), weights)
    out = tmp_path / "models"
    code = main(["convert", "--to", "onnx,openvino,tflite", "--int8", "--weights", str(weights),
                 "--calib", str(tiny_calibration), "--calib-size", "8", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    manifest = load_manifest(out, verify=True)
    assert sorted((m.format, m.precision) for m in manifest.models) == sorted(
        (t.format, t.precision) for t in TARGETS.values()
    )

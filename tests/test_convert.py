"""`kpnet-edge convert`: every target converts, runs in its runtime from what manifest.json says, and
matches PyTorch within its tolerance; bad options and bad calibration data fail clearly."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kpnet_edge import config
from kpnet_edge.checkpoint import save_checkpoint
from kpnet_edge.cli import main
from kpnet_edge.converters import TARGETS, convert, load_manifest, select_targets
from kpnet_edge.converters.manifest import Manifest, ModelEntry
from kpnet_edge.converters.targets import FORMATS, PRECISIONS
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError
from kpnet_edge.imageio import read_image
from kpnet_edge.model import DRNet
from kpnet_edge.preprocess import letterbox
from kpnet_edge.quantization.agreement import decoded_agreement, logit_error
from kpnet_edge.quantization.calibration import CalibrationWarning, build_calibration_set

TINY = {"stem": 8, "mid": 16, "deep": 32, "head": 8}
CALIB_SIZE = 8
BATCH = 2


def tiny_drnet(seed: int = 0) -> DRNet:
    """A random tiny DRNet with non-trivial BatchNorm statistics (so folding is exercised) and
    heads scaled up so its maps have peaks: decoded keypoints then depend on the weights."""
    torch.manual_seed(seed)
    model = DRNet(**TINY)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        model.landmark_head.weight.mul_(20)
        model.scale_head.weight.mul_(20)
        model.scale_head.bias.fill_(-2.0)
    return model.eval()


def torch_outputs(model: DRNet, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = torch.from_numpy(canvases.transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        scale, landmarks = model(pixels)
    return scale.numpy(), landmarks.numpy()


def run_from_manifest(folder: Path, entry: ModelEntry, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run a converted file using only what its manifest entry says (as a runtime adapter would):
    layout, dtype and quantization of the input, names or indices, quantization and layout of the
    outputs. Returns NCHW float outputs for canvases (N, H, W, 3) uint8, N a multiple of batch."""
    path = folder / entry.file
    names = [o.name for o in entry.outputs]
    if entry.format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def infer(x: np.ndarray) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(names, {entry.input.name: x})))

    elif entry.format == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

        def infer(x: np.ndarray) -> dict[str, np.ndarray]:
            result = compiled(x)
            return {name: result[compiled.output(name)] for name in names}

    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()

        def infer(x: np.ndarray) -> dict[str, np.ndarray]:
            interpreter.set_tensor(entry.input.index, x)
            interpreter.invoke()
            return {o.name: interpreter.get_tensor(o.index) for o in entry.outputs}

    results = []
    for start in range(0, len(canvases), entry.batch):
        x = canvases[start : start + entry.batch]
        x = x.transpose(0, 3, 1, 2) if entry.input.layout == "NCHW" else x
        quant = entry.input.quantization
        x = x / quant["scale"] + quant["zero_point"] if quant else x
        results.append(infer(np.ascontiguousarray(np.round(x) if quant else x, dtype=entry.input.dtype)))
    outputs = []
    for name in config.OUTPUT_NAMES:
        info = entry.output(name)
        values = np.concatenate([r[name] for r in results]).astype(np.float32)
        if info.quantization:
            values = (values - info.quantization["zero_point"]) * info.quantization["scale"]
        outputs.append(values.transpose(0, 3, 1, 2) if info.layout == "NHWC" else values)
    return outputs[0], outputs[1]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(tiny_drnet(), path)
    return path


@pytest.fixture(scope="module")
def calib_images(wider_dev: Path) -> Path:
    return wider_dev / "images"


@pytest.fixture(scope="module")
def converted(
    tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path, calib_images: Path
) -> tuple[Path, Manifest]:
    """Every target of the table, batch 1 and BATCH, from one conversion of the tiny model."""
    out = tmp_path_factory.mktemp("converted") / "models"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        manifest = convert(tiny_weights, list(TARGETS), out, calib_images, batch=BATCH, calib_size=CALIB_SIZE)
    return out, manifest


@pytest.fixture(scope="module")
def check_canvases(converted: tuple[Path, Manifest], calib_images: Path) -> np.ndarray:
    """The held-out images the manifest names, read afresh through the inference pre-processing."""
    _, manifest = converted
    assert manifest.calibration is not None and manifest.calibration["check_held_out"]
    return np.stack([letterbox(read_image(calib_images / f))[0] for f in manifest.calibration["check_files"]])


MATRIX = list(itertools.product(FORMATS, PRECISIONS, (1, BATCH)))


@pytest.mark.parametrize(("fmt", "precision", "batch"), MATRIX, ids=[f"{f}-{p}-b{b}" for f, p, b in MATRIX])
def test_every_target_converts_runs_and_matches_pytorch(
    converted: tuple[Path, Manifest],
    check_canvases: np.ndarray,
    fmt: str,
    precision: str,
    batch: int,
    tmp_path: Path,
) -> None:
    out, manifest = converted
    key = f"{fmt}-{precision}"
    if key not in TARGETS:  # not in the table: refused by name, never half-made
        with pytest.raises(KpnetError, match=f"unknown target '{key}'"):
            convert(None, [key], tmp_path / "out")
        return
    target = TARGETS[key]
    if batch != 1 and not target.accepts("batch"):
        with pytest.raises(KeyError):
            manifest.find(fmt, precision, batch)
        return
    entry = manifest.find(fmt, precision, batch)
    assert (out / entry.file).is_file() and entry.file.endswith(target.suffix)
    assert entry.input.shape[0] == batch and entry.input.name == config.INPUT_NAME
    canvases = check_canvases[: len(check_canvases) // batch * batch]
    reference = torch_outputs(tiny_drnet(), canvases)
    candidate = run_from_manifest(out, entry, canvases)
    figures = {**logit_error(reference, candidate), **decoded_agreement(reference, candidate)}
    for metric, bound in target.tolerance.items():
        assert figures[metric] <= bound, f"{entry.file}: {metric} = {figures[metric]:.3g} > {bound:g}"


def test_int8_tflite_takes_raw_uint8_pixels_and_describes_its_outputs(
    converted: tuple[Path, Manifest],
) -> None:
    _, manifest = converted
    entry = manifest.find("tflite", "int8")
    assert entry.input.dtype == "uint8"
    assert entry.input.quantization == {"scale": 1.0, "zero_point": 0}
    assert {o.name for o in entry.outputs} == set(config.OUTPUT_NAMES)
    assert all(o.dtype == "int8" and o.quantization and o.index is not None for o in entry.outputs)
    assert entry.output("scale_logits").shape[-1] == config.NUM_SCALES
    assert entry.output("landmark_logits").shape[-1] == config.NUM_LANDMARKS


def test_manifest_validates_and_records_calibration_tools_and_parity(
    converted: tuple[Path, Manifest],
) -> None:
    out, written = converted
    manifest = load_manifest(out, verify=True)
    assert manifest == written
    assert len(manifest.models) == len(TARGETS) + sum(t.accepts("batch") for t in TARGETS.values())
    calibration = manifest.calibration
    assert calibration is not None and calibration["size"] == CALIB_SIZE == len(calibration["files"])
    assert not set(calibration["files"]) & set(calibration["check_files"])
    tools = ("torch", "onnx", "onnxruntime", "openvino", "nncf", "tensorflow", "ai-edge-litert", "kpnet-edge")
    for tool in tools:
        assert manifest.tools.get(tool, "not installed") != "not installed", tool
    for entry in manifest.models:
        assert entry.normalisation["inside_graph"] and entry.normalisation["mean"] == config.PIXEL_MEAN
        for metric, bound in entry.tolerance.items():
            assert entry.parity[metric] <= bound, f"{entry.file}: {metric}"
    ir = manifest.find("openvino", "fp32")
    assert list(ir.extra_files) == ["drnet_fp32.bin"]


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
        (lambda d: d.update(schema_version=99), "this kpnet-edge reads"),
        (lambda d: d["models"][0].update(file="gone.onnx"), "names gone.onnx, which is missing"),
        (lambda d: d["tools"].update(torch=2), r"manifest\.tools\.torch: expected a string"),
    ],
)
def test_broken_manifest_is_refused_naming_the_field(
    converted: tuple[Path, Manifest], tmp_path: Path, edit: Callable[[dict], object], message: str
) -> None:
    out, _ = converted
    copy = tmp_path / "models"
    shutil.copytree(out, copy)
    data = json.loads((copy / "manifest.json").read_text())
    edit(data)
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(KpnetError, match=message):
        load_manifest(copy)


def test_manifest_that_is_not_json_or_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KpnetError, match="no such manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(KpnetError, match="not valid JSON"):
        load_manifest(tmp_path)


def test_modified_model_fails_verification(converted: tuple[Path, Manifest], tmp_path: Path) -> None:
    out, _ = converted
    copy = tmp_path / "models"
    shutil.copytree(out, copy)
    with open(copy / "drnet_fp32.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(KpnetError, match="drnet_fp32.onnx does not match its sha256"):
        load_manifest(copy, verify=True)


def _scale_counts_tflite(path: Path) -> set[int]:
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return {d["quantization_parameters"]["scales"].size for d in details if d["dtype"] == np.int8}


def _scale_counts_openvino(path: Path) -> list[int]:
    """Weight scale sizes of the INT8 convolutions (int8 -> Convert -> Multiply by scale)."""
    import openvino as ov

    counts = []
    for op in ov.Core().read_model(str(path)).get_ordered_ops():
        weights = op.input_value(1).get_node() if op.get_type_name() == "Convolution" else None
        if weights is not None and weights.get_type_name() == "Multiply":
            counts.append(int(np.prod(weights.input_value(1).get_node().get_output_shape(0))))
    return counts


def test_per_tensor_and_accuracy_controlled_int8(
    converted: tuple[Path, Manifest], tiny_weights: Path, calib_images: Path, tmp_path: Path
) -> None:
    default_out, _ = converted
    per_channel = _scale_counts_openvino(default_out / "drnet_int8.xml")
    assert max(_scale_counts_tflite(default_out / "drnet_int8.tflite")) > 1 and max(per_channel) > 1
    max_drop = 0.0005  # below plain INT8's drop on this model, so some layers must go back to float
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        manifest = convert(tiny_weights, ["openvino-int8", "tflite-int8"], tmp_path / "pt", calib_images,
                           per_tensor=True, max_drop=max_drop, calib_size=CALIB_SIZE)
    assert _scale_counts_tflite(tmp_path / "pt" / "drnet_int8.tflite") == {1}
    controlled = _scale_counts_openvino(tmp_path / "pt" / "drnet_int8.xml")
    assert set(controlled) == {1} and len(controlled) < len(per_channel)
    entry = manifest.find("openvino", "int8")
    assert entry.options == {"per_tensor": True, "max_drop": max_drop}
    # The agreement score's drop is keypoint NME + proposal error on the same held-out images.
    assert entry.parity["keypoint_nme"] <= max_drop
    assert manifest.find("tflite", "int8").options == {"per_tensor": True}


@pytest.mark.parametrize(
    ("targets", "options", "message"),
    [
        (["onnx-fp32"], {"per_tensor": True}, "--per-tensor does not apply here .*onnx-fp32 accepts --batch"),
        (["tflite-fp32", "tflite-int8"], {"batch": 4}, "--batch .*tflite-int8 accepts --per-tensor"),
        (["onnx-fp32", "openvino-fp16"], {"max_drop": 0.01}, "--max-drop .*applies to openvino-int8"),
        (["openvino-int8"], {"max_drop": 1.5}, r"--max-drop is an agreement-score drop in \(0, 1\)"),
        (["openvino-fp32"], {"batch": 0}, "--batch must be at least 1"),
        (["tflite-int8"], {}, "INT8 needs calibration images"),
    ],
)
def test_refused_options_fail_before_any_work(
    targets: list[str], options: dict[str, object], message: str, tmp_path: Path
) -> None:
    # The weights do not exist: the refusal must come first.
    with pytest.raises(KpnetError, match=message):
        convert(tmp_path / "missing.pt", targets, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "models"
    taken.write_text("not a folder")
    with pytest.raises(KpnetError, match="models: exists and is not a folder"):
        convert(tmp_path / "missing.pt", ["onnx-fp32"], taken)


def test_format_selection() -> None:
    assert [t.key for t in select_targets(["openvino"])] == ["openvino-fp32", "openvino-fp16"]
    chosen = select_targets(["tflite", "onnx"], int8=True)
    assert [t.key for t in chosen] == ["onnx-fp32", "tflite-fp32", "tflite-int8"]
    with pytest.raises(KpnetError, match="onnx has no INT8 target; INT8 is made for openvino, tflite"):
        select_targets(["onnx"], int8=True)
    with pytest.raises(KpnetError, match="unknown format coreml; choose from onnx, openvino, tflite"):
        select_targets(["onnx", "coreml"])


def test_keras_mirror_equals_torch() -> None:
    from kpnet_edge.converters.keras_drnet import build_keras_drnet

    model = tiny_drnet(seed=1)
    shape = (2, config.INPUT_SIZE, config.INPUT_SIZE, 3)
    canvases = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    keras_outputs = build_keras_drnet(model, batch_size=2)(canvases.astype(np.float32))
    for name, expected, got in zip(config.OUTPUT_NAMES, torch_outputs(model, canvases), keras_outputs):
        error = np.abs(np.asarray(got).transpose(0, 3, 1, 2) - expected).max()
        assert error <= 1e-5, f"{name}: Keras differs from torch by {error:.3g}"


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
    assert first.files == again.files and first.sha256 == again.sha256
    assert first.files != other.files and first.sha256 != other.sha256
    assert len(first) == 5 and len(first.check) == 7 and first.check_held_out
    expected = letterbox(read_image(tmp_path / "imgs" / first.files[0]))[0]
    np.testing.assert_array_equal(first.canvases[0], expected)
    assert first.sha256 == hashlib.sha256(first.canvases.tobytes()).hexdigest()
    assert {p.name for p in paths} >= set(first.files)


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


def test_cli_bad_calibration_folder_exits_2_and_writes_nothing(
    tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["convert", "--to", "openvino", "--int8", "--weights", str(tiny_weights),
                 "--calib", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_option_no_target_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["convert", "--to", "onnx", "--per-tensor", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--per-tensor does not apply here (onnx-fp32 accepts --batch)" in capsys.readouterr().err


def test_interrupted_conversion_leaves_no_partial_model(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kpnet_edge.converters import onnx_export

    def interrupted(target, job, batch):  # noqa: ANN001, ANN202
        (job.staging / target.filename(batch)).write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "export", interrupted)
    weights_before = tiny_weights.read_bytes()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "drnet_fp32.onnx").write_bytes(b"previous model")
    for out in (tmp_path / "new", existing):
        with pytest.raises(KeyboardInterrupt):
            convert(tiny_weights, ["onnx-fp32"], out)
    assert not (tmp_path / "new").exists()
    assert (existing / "drnet_fp32.onnx").read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no staging folder left
    assert tiny_weights.read_bytes() == weights_before


def test_model_failing_its_parity_check_is_not_written(
    converted: tuple[Path, Manifest], tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kpnet_edge.converters import onnx_export

    source, _ = converted
    monkeypatch.setattr(onnx_export, "export", lambda target, job, batch: Path(
        shutil.copy(source / "drnet_fp32.onnx", job.staging / target.filename(batch))))
    real_load = onnx_export.load
    shifted = lambda path: lambda canvases: tuple(o + 1e-3 for o in real_load(path)(canvases))  # noqa: E731
    monkeypatch.setattr(onnx_export, "load", shifted)
    message = r"parity check failed, nothing written: drnet_fp32.onnx: max_abs_logit = 0.001 > 0.0001"
    with pytest.raises(KpnetError, match=message):
        convert(tiny_weights, ["onnx-fp32"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_converts_end_to_end_with_summary(
    tiny_weights: Path, calib_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models"
    code = main(["convert", "--to", "onnx", "--weights", str(tiny_weights), "--calib", str(calib_images),
                 "--calib-size", "4", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "onnx fp32: export: done in" in captured.err
    assert "warning: calibration set has only 4 images" in captured.err
    assert "drnet_fp32.onnx" in captured.out and "max_abs_logit" in captured.out
    assert f"1 models and manifest.json in {out.resolve()}" in captured.out
    assert load_manifest(out, verify=True).find("onnx", "fp32").parity["max_abs_logit"] <= 1e-4


@pytest.mark.slow
def test_full_size_drnet_converts_to_every_format_with_int8(
    calib_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "drnet.pt"
    torch.manual_seed(0)
    save_checkpoint(DRNet().eval(), weights)
    out = tmp_path / "models"
    code = main(["convert", "--to", "onnx,openvino,tflite", "--int8", "--weights", str(weights),
                 "--calib", str(calib_images), "--calib-size", "32", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    manifest = load_manifest(out, verify=True)
    assert sorted((m.format, m.precision) for m in manifest.models) == sorted(
        (t.format, t.precision) for t in TARGETS.values()
    )

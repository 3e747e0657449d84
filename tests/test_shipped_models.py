"""The converted models shipped beside the checkpoint (kpnet_edge/assets/) are that checkpoint's: made
from its sha256, files intact, each within its target's tolerance of PyTorch through the adapter
`detect` uses. After a new checkpoint, `python -m kpnet_edge.converters.release` regenerates them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from kpnet_edge.artifacts import TARGETS, load_manifest, sha256_file
from kpnet_edge.checkpoint import SHIPPED_WEIGHTS
from kpnet_edge.converters.release import SHIPPED_TARGETS
from kpnet_edge.imageio import read_image
from kpnet_edge.preprocess import letterbox
from kpnet_edge.quantization.agreement import decoded_agreement, logit_error
from kpnet_edge.runtimes import registry
from kpnet_edge.runtimes.registry import SHIPPED_MODELS, choose_model, open_runtime

REGENERATE = "run `python -m kpnet_edge.converters.release` after changing the checkpoint"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "group.jpg"


@pytest.fixture(scope="module")
def canvases() -> np.ndarray:
    """The bundled example, its mirror image and a half-size copy, letterboxed."""
    image = read_image(EXAMPLE)
    variants = (image, image[:, ::-1], cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    return np.stack([letterbox(np.ascontiguousarray(v))[0] for v in variants])


def test_shipped_models_were_made_from_the_shipped_checkpoint() -> None:
    manifest = load_manifest(SHIPPED_MODELS, verify=True)  # every file there, sha256 as recorded
    assert manifest.source["sha256"] == sha256_file(SHIPPED_WEIGHTS), f"stale converted models: {REGENERATE}"
    assert {f"{m.format}-{m.precision}" for m in manifest.models} == set(SHIPPED_TARGETS)


@pytest.mark.parametrize("key", SHIPPED_TARGETS)
def test_shipped_model_matches_the_checkpoint(key: str, canvases: np.ndarray) -> None:
    target = TARGETS[key]
    reference = open_runtime(None, "torch").run(canvases)
    candidate = open_runtime(SHIPPED_MODELS, target.format, target.precision).run(canvases)
    figures = {**logit_error(reference, candidate), **decoded_agreement(reference, candidate)}
    for metric, bound in target.tolerance.items():
        assert figures[metric] <= bound, f"shipped {key}: {metric} = {figures[metric]:.3g} > {bound:g}; {REGENERATE}"


def test_a_device_with_only_litert_picks_the_shipped_int8_tflite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "installed", lambda backend: backend == "tflite")
    entry = choose_model(SHIPPED_MODELS)
    assert (entry.format, entry.precision) == ("tflite", "int8")
    monkeypatch.setattr(registry, "installed", lambda backend: False)
    with pytest.raises(Exception, match=r"installed backends: none; install kpnet-edge\[onnx\], kpnet-edge\[tflite\]"):
        choose_model(SHIPPED_MODELS)


def test_the_model_exported_at_two_input_sizes_finds_the_same_planted_face(tmp_path: Path) -> None:
    """The shipped FP32 ONNX (256) against the same checkpoint converted with --input-size 320: the
    manifest carries the size, the detector letterboxes to it, and both find the one planted face
    (a face from the bundled example, 96 px, on a flat grey 480x360 scene) at the same place."""
    from kpnet_edge.converters import convert
    from kpnet_edge.detector import FaceDetector
    from kpnet_edge.postprocess import pairwise_iou

    image = read_image(EXAMPLE)
    face = cv2.resize(image[156:239, 205:288], (96, 96), interpolation=cv2.INTER_CUBIC)  # one face, 1.6x its box
    scene = np.full((360, 480, 3), 120, np.uint8)
    scene[100:196, 200:296] = face
    convert(None, ["onnx-fp32"], tmp_path / "m320", input_size=320)
    found = {}
    for size, folder in ((256, SHIPPED_MODELS), (320, tmp_path / "m320")):
        detector = FaceDetector.from_artifacts(folder, "onnx", "fp32")
        assert detector.input_size == size == load_manifest(folder).find("onnx", "fp32").input_size
        found[size] = detector.detect(scene)
        assert len(found[size]) == 1, f"input {size}: {len(found[size])} faces, expected the planted one"
    (small,), (large,) = found[256], found[320]
    iou = float(pairwise_iou(small.box[None], large.box[None])[0, 0])
    side = small.box[2] - small.box[0]
    shift = float(np.linalg.norm(small.landmarks - large.landmarks, axis=1).max())
    assert iou >= 0.6, f"boxes at 256 and 320 overlap by IoU {iou:.2f}"
    assert shift <= 0.15 * side, f"landmarks moved {shift:.1f} px between 256 and 320 (face {side:.0f} px)"
    centre = (small.box[:2] + small.box[2:]) / 2
    assert 200 <= centre[0] <= 296 and 100 <= centre[1] <= 196, f"face found at {centre}, planted at 200-296, 100-196"

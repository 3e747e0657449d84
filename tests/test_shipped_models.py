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

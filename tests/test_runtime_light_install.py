"""The on-device path runs converted models without torch, tensorflow or nncf: in a clean process,
and (slow) in a fresh virtual environment holding only `pip install kpnet-edge[onnx]`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "group.jpg"
HEAVY = ("torch", "tensorflow", "keras", "nncf")
BACKENDS = ("onnx", "openvino", "tflite")


@pytest.fixture(scope="module")
def artifacts(tiny_models) -> Path:
    """The test run's one conversion of the tiny model (each backend's FP32 file is used)."""
    return tiny_models


def test_detect_from_artifacts_imports_no_heavy_framework(artifacts, tmp_path):
    code = f"""
import json, sys
from kpnet_edge.cli import main
from kpnet_edge.detector import FaceDetector
from kpnet_edge.imageio import read_image
image = read_image({str(EXAMPLE)!r})
counts = {{}}
for backend in {BACKENDS!r}:
    out = {str(tmp_path)!r} + "/" + backend + ".json"
    code = main(["detect", {str(EXAMPLE)!r}, "--model", {str(artifacts)!r}, "--backend", backend,
                 "--precision", "fp32", "--json", out])
    assert code == 0, backend
    detector = FaceDetector.from_artifacts({str(artifacts)!r}, backend)
    counts[backend] = (len(json.load(open(out))[0]["faces"]), len(detector.detect(image)))
print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules], "counts": counts}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"the on-device path imported {report['heavy']}"
    for backend, (from_cli, from_api) in report["counts"].items():
        assert from_cli == from_api, f"{backend}: the CLI found {from_cli} faces, the API {from_api}"


@pytest.mark.slow
def test_fresh_venv_with_only_the_tflite_extra_detects_with_the_shipped_model(tmp_path):
    """A real fresh venv (no system site-packages), the project installed from a copy of this
    checkout with only the [tflite] extra, then plain `kpnet-edge detect IMAGE`: no torch, no
    tensorflow, no --model, no --backend; the shipped INT8 TFLite model runs and says so."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "kpnet_edge", source / "kpnet_edge", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "kpnet-edge"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{source}[tflite]"],
        capture_output=True, text=True, timeout=900,
    )
    assert install.returncode == 0, f"pip install failed:\n{install.stdout[-1500:]}\n{install.stderr[-1500:]}"
    for heavy in ("torch", "tensorflow", "onnxruntime"):
        absent = subprocess.run([python, "-c", f"import {heavy}"], capture_output=True, text=True)
        assert absent.returncode != 0, f"{heavy} is importable in the fresh venv: it is not a light install"
    result = subprocess.run([cli, "detect", EXAMPLE], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "running tflite int8 (drnet_int8.tflite)" in result.stderr
    [record] = json.loads(result.stdout)
    assert (record["width"], record["height"]) == (416, 416) and len(record["faces"]) > 0

"""TFLite export, old path against new, on one checkpoint and one calibration set:
old = the Keras mirror of DRNet through TensorFlow's TFLiteConverter (what `convert` uses);
new = litert-torch converting DRNet itself (FP32), then ai-edge-quantizer (static INT8, and 16x8:
16-bit activations, INT8 weights), calibrated on the same canvases.

    python benchmarks/tflite_paths.py [--weights PT] [--calib DIR] [--calib-size 300] [--mtfl 500]

Writes two convert-style folders (models + manifest.json, parity measured through the runtime
adapter `detect` uses, on the calibration source's held-out images) and
benchmarks/results/tflite_paths/results.json: conversion seconds, parity, size, and for every file and the
PyTorch reference, AP50 on WIDER-val-200-dev@416 (faces >= 24 px), inter-ocular NME on the first
--mtfl MTFL test crops, and model latency (median of interleaved calls, 2 threads). New-path files
are written even when they miss the target's tolerance: the point is to measure them. Needs
`pip install litert-torch==0.10.*` (brings ai-edge-quantizer) beside the [convert] extra.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from kpnet_edge.artifacts import TARGETS, Manifest, ModelEntry, TensorInfo, sha256_file
from kpnet_edge.checkpoint import SHIPPED_WEIGHTS, load_drnet
from kpnet_edge.converters import tflite_export
from kpnet_edge.converters.pipeline import NORMALISATION, Job, convert, preprocessing
from kpnet_edge.datapaths import data_root
from kpnet_edge.quantization.agreement import decoded_agreement, logit_error
from kpnet_edge.quantization.calibration import build_calibration_set
from kpnet_edge.runtimes.registry import open_model

RESULTS = Path(__file__).resolve().parent / "results"


def litert_float(model, path: Path, size: int) -> None:  # noqa: ANN001
    """DRNet wrapped to take (1, size, size, 3) uint8 NHWC and give NHWC logits, through litert-torch."""
    import litert_torch
    import torch

    class ChannelsLast(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            scale, landmarks = self.inner(pixels.permute(0, 3, 1, 2).float())
            return scale.permute(0, 2, 3, 1), landmarks.permute(0, 2, 3, 1)

    sample = torch.zeros(1, size, size, 3, dtype=torch.uint8)
    litert_torch.convert(ChannelsLast(model).eval(), (sample,)).export(str(path))


def quantize(float_path: Path, path: Path, canvases: np.ndarray, activation_bits: int) -> None:
    """ai-edge-quantizer static quantization (INT8 weights per channel) calibrated on canvases."""
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_path=str(float_path)).get_signature_list()["serving_default"]
    (input_name,) = signature["inputs"]
    q = quantizer.Quantizer(str(float_path))
    q.load_quantization_recipe(recipe.static_wi8_ai8() if activation_bits == 8 else recipe.static_wi8_ai16())
    calibration = q.calibrate({"serving_default": [{input_name: c[None]} for c in canvases]}, num_threads=2)
    q.quantize(calibration).export_model(str(path), overwrite=True)


def entry_for(path: Path, precision: str, job: Job, tolerance: dict[str, float]) -> ModelEntry:
    """A manifest entry for a TFLite file, parity measured through the TFLite adapter."""
    described = tflite_export.describe(path)
    entry = ModelEntry(
        file=path.name, format="tflite", precision=precision, batch=1, runtime="ai-edge-litert",
        sha256=sha256_file(path), size_bytes=path.stat().st_size, input=TensorInfo(**described["input"]),
        outputs=[TensorInfo(**t) for t in described["outputs"]], normalisation=dict(NORMALISATION), parity={},
        tolerance=dict(tolerance), checked_on=f"{len(job.check)} held-out calibration-source images",
    )
    candidate = open_model(path.parent, entry).run(job.check)
    reference = job.reference(job.check)
    return replace(entry, parity={**logit_error(reference, candidate), **decoded_agreement(reference, candidate)})


def accuracy_and_latency(runtimes: dict, mtfl: int, repeats: int = 30) -> dict[str, dict]:
    """AP50 (faces >= 24 px) on the WIDER dev set, NME on MTFL test crops, median model latency."""
    from kpnet_edge.data.mtfl import read_mtfl_landmarks
    from kpnet_edge.data.wider import load_wider
    from kpnet_edge.detector import FaceDetector, detection_record
    from kpnet_edge.evaluation.detection import evaluate_detections
    from kpnet_edge.evaluation.landmarks import evaluate_landmarks
    from kpnet_edge.imageio import read_image
    from kpnet_edge.postprocess import PostprocessParams
    from kpnet_edge.preprocess import letterbox

    data = data_root()
    wider = load_wider(data / "widerface_val200_dev" / "wider_face_val_bbx_gt.txt",
                       data / "widerface_val200_dev" / "images")
    paths, points = read_mtfl_landmarks(data / "mtfl" / "new_testing.txt")
    paths, points = paths[:mtfl], points[:mtfl]
    params = PostprocessParams(proposal_threshold=0.05, score_threshold=0.02)  # the report's settings
    results: dict[str, dict] = {}
    for name, runtime in runtimes.items():
        detector = FaceDetector(runtime, params)
        records = [detection_record(str(r.path), image, detector.detect(image))
                   for r in wider for image in [read_image(r.path)]]
        ap = evaluate_detections(records, wider, (24,))["by_min_size"]["24"]["ap"]
        crops = [detection_record(str(p), image, detector.detect(image)) for p in paths for image in [read_image(p)]]
        nme = evaluate_landmarks(crops, paths, points, "inter_ocular", PostprocessParams.score_threshold)["nme"]
        results[name] = {"ap50_24px": ap, "mtfl_nme": nme}
    canvas = letterbox(read_image(wider[0].path))[0][None]
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(repeats):  # interleaved: the machine's load moves all rows alike
        for name, runtime in runtimes.items():
            start = time.perf_counter()
            runtime.run(canvas)
            times[name].append(time.perf_counter() - start)
    for name in runtimes:
        results[name]["latency_ms"] = round(1000 * float(np.median(times[name])), 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    parser.add_argument("--calib", type=Path, default=data_root() / "caltech_webfaces" / "images")
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS / "tflite_paths")
    parser.add_argument("--mtfl", type=int, default=500, help="MTFL test crops for the NME (default: 500)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    calibration = build_calibration_set(args.calib, args.calib_size, seed=0)
    results: dict[str, dict] = {}

    seconds: dict[str, float] = {}
    stages = {}

    def progress(stage: str, elapsed: float | None) -> None:
        if elapsed is not None:
            stages[stage] = elapsed

    old = convert(args.weights, ["tflite-fp32", "tflite-int8"], args.out / "old", calibration, progress=progress)
    for entry in old.models:
        seconds[entry.precision] = stages[f"tflite {entry.precision}: export"]
        results[f"old tflite-{entry.precision}"] = {"seconds": round(seconds[entry.precision], 1),
                                                    "size_bytes": entry.size_bytes, "parity": entry.parity}

    model = load_drnet(args.weights)
    new_dir = args.out / "new"
    new_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        job = Job(model, Path(scratch), calibration, calibration.check)
        entries = []
        start = time.perf_counter()
        litert_float(model, new_dir / "drnet_fp32.tflite", calibration.canvases.shape[1])
        float_seconds = time.perf_counter() - start
        entries.append(entry_for(new_dir / "drnet_fp32.tflite", "fp32", job, TARGETS["tflite-fp32"].tolerance))
        results["new tflite-fp32"] = {"seconds": round(float_seconds, 1)}
        for precision, bits in (("int8", 8), ("int16x8", 16)):
            start = time.perf_counter()
            quantize(new_dir / "drnet_fp32.tflite", new_dir / f"drnet_{precision}.tflite", calibration.canvases, bits)
            took = time.perf_counter() - start + float_seconds  # the float conversion comes first
            tolerance = TARGETS["tflite-int8"].tolerance
            entries.append(entry_for(new_dir / f"drnet_{precision}.tflite", precision, job, tolerance))
            results[f"new tflite-{precision}"] = {"seconds": round(took, 1)}
        for entry in entries:
            key = f"new tflite-{entry.precision}"
            results[key].update(size_bytes=entry.size_bytes, parity=entry.parity,
                                within_tolerance=all(entry.parity[m] <= b for m, b in entry.tolerance.items()))
        Manifest(models=entries, source=old.source, calibration=old.calibration,
                 preprocessing=preprocessing(calibration.canvases.shape[1]), tools={}, created=old.created
                 ).write(new_dir)
    from kpnet_edge.runtimes.registry import open_runtime

    runtimes = {"torch": open_runtime(None, "torch", weights=args.weights, threads=2)}
    for side in ("old", "new"):
        for entry in (old if side == "old" else Manifest(entries, {}, None, "", {}, "")).models:
            runtimes[f"{side} tflite-{entry.precision}"] = open_model(args.out / side, entry, threads=2)
    measured = accuracy_and_latency(runtimes, args.mtfl)
    for key, row in measured.items():
        results.setdefault(key, {}).update(row)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for key, row in results.items():
        parity = row.get("parity", {})
        print(f"{key:22s} {row.get('seconds', 0):7.1f} s  {row.get('size_bytes', 0) / 1e6:5.2f} MB  "
              f"AP50 {row['ap50_24px']:.4f}  NME {row['mtfl_nme'] or float('nan'):.4f}  {row['latency_ms']:.1f} ms  "
              f"max_abs_logit {parity.get('max_abs_logit', float('nan')):.2g}  "
              f"keypoint_nme {parity.get('keypoint_nme', float('nan')):.2g}  "
              f"proposal_prob {parity.get('proposal_prob', float('nan')):.2g}")


if __name__ == "__main__":
    main()

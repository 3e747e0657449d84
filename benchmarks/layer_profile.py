"""Where DRNet's model time goes, layer by layer, in OpenVINO and ONNX Runtime (issue 11).

    python benchmarks/layer_profile.py --model DIR [--threads 2] [--frames 50]

DIR is a `kpnet-edge convert` folder. Each OpenVINO IR (FP32 run in f32, INT8) is compiled with
PERF_COUNT on; each ONNX model runs with onnxruntime's profiler. Both record every executed node
per inference, with OpenVINO also naming the kernel it chose (its exec type, e.g.
`brgconv_avx512_I8` or `jit_avx2_FP32`), which tells whether an INT8 layer really ran in
integers. Times are per frame, medians over `--frames` real photos (WIDER-val-200-dev,
letterboxed into the model's canvas). Writes benchmarks/results/layer_profile.{json,md}: per
model, its total, the share of reorders/conversions, the time per kernel precision and the
slowest layers. TFLite has no per-op profiler in LiteRT's Python API, so it is not profiled here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from kpnet_edge.artifacts import ModelEntry, load_manifest, manifest_folder
from kpnet_edge.datapaths import data_root
from kpnet_edge.imageio import list_images, read_image
from kpnet_edge.preprocess import letterbox
from kpnet_edge.reporting import environment
from kpnet_edge.runtimes.tensors import to_input

LAYOUT_TYPES = {"Reorder", "Convert", "Transpose", "Reshape", "FakeQuantize", "Subgraph",
                "QuantizeLinear", "DequantizeLinear", "Cast"}
"""Node types that move or re-encode data rather than compute DRNet's layers."""

Layers = dict[str, dict[str, Any]]
"""node name -> {"type", "kernel", "ms": per-frame times}."""


def frames(entry: ModelEntry, count: int) -> list[np.ndarray]:
    """`count` WIDER dev photos letterboxed into the model's canvas, as the model's input tensors."""
    paths = list_images(data_root() / "widerface_val200_dev" / "images")[:count]
    return [to_input(letterbox(read_image(p), size=entry.input_size)[0][None], entry.input) for p in paths]


def profile_openvino(folder: Path, entry: ModelEntry, inputs: list[np.ndarray], threads: int) -> Layers:
    import openvino as ov

    # f32 as the adapter runs every file by default (OpenVINO would pick bf16 where the CPU has it).
    properties = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                  "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(str(folder / entry.file), "CPU", properties).create_infer_request()
    request.infer({0: inputs[0]})  # warm-up: first-run allocations are not the model's cost
    layers: Layers = {}
    for tensor in inputs:
        request.infer({0: tensor})
        for node in request.get_profiling_info():
            if node.status != node.Status.EXECUTED:
                continue
            layer = layers.setdefault(node.node_name, {"type": node.node_type, "kernel": node.exec_type, "ms": []})
            layer["ms"].append(node.real_time.total_seconds() * 1e3)
    return layers


def profile_onnxruntime(folder: Path, entry: ModelEntry, inputs: list[np.ndarray], threads: int) -> Layers:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "ort")
        session = ort.InferenceSession(str(folder / entry.file), options, ["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        session.run(None, {name: inputs[0]})  # warm-up, dropped below
        for tensor in inputs:
            session.run(None, {name: tensor})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"].removesuffix("_kernel_time")
            runs[node].append(event["dur"] / 1e3)
            kinds[node] = event["args"].get("op_name", "?")
    return {node: {"type": kinds[node], "kernel": kinds[node], "ms": times[1:]} for node, times in runs.items()}


def summarise(layers: Layers, top: int) -> dict[str, Any]:
    """Per-frame medians: total, layout/conversion share, time per kernel precision, slowest layers."""
    medians = {name: float(np.median(layer["ms"])) for name, layer in layers.items() if layer["ms"]}
    total = sum(medians.values())
    by_precision: dict[str, float] = defaultdict(float)
    for name, ms in medians.items():
        kernel = layers[name]["kernel"]
        by_precision[kernel.rsplit("_", 1)[-1] if "_" in kernel else kernel] += ms
    layout = sum(ms for name, ms in medians.items() if layers[name]["type"] in LAYOUT_TYPES)
    slowest = sorted(medians, key=medians.get, reverse=True)[:top]
    return {
        "total_ms": round(total, 3),
        "layout_ms": round(layout, 3),
        "nodes": len(medians),
        "ms_by_kernel_precision": {k: round(v, 3) for k, v in sorted(by_precision.items(), key=lambda kv: -kv[1])},
        "slowest": [{"node": n, "type": layers[n]["type"], "kernel": layers[n]["kernel"],
                     "ms": round(medians[n], 3), "share": round(medians[n] / total, 3)} for n in slowest],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Layer profile, {result['threads']} threads, {result['frames']} WIDER dev photos, median ms per frame "
             f"({result['machine']}).", ""]
    for name, model in result["models"].items():
        if "error" in model:
            lines += [f"### {name}", "", f"not profiled: {model['error']}", ""]
            continue
        precisions = ", ".join(f"{k} {v:.2f}" for k, v in model["ms_by_kernel_precision"].items())
        lines += [f"### {name}: {model['total_ms']:.2f} ms in {model['nodes']} nodes "
                  f"(layout and conversion nodes {model['layout_ms']:.2f} ms)", "",
                  f"By kernel precision: {precisions}", "",
                  "| node | type | kernel | ms | share |", "|---|---|---|---:|---:|"]
        lines += [f"| {s['node']} | {s['type']} | {s['kernel']} | {s['ms']:.3f} | {s['share']:.0%} |"
                  for s in model["slowest"]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a `kpnet-edge convert` output folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=50, help="profiled photos per model (default: %(default)s)")
    parser.add_argument("--top", type=int, default=12, help="slowest layers listed per model")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "layer_profile.json")
    args = parser.parse_args()

    folder = manifest_folder(args.model)
    profilers = {"openvino": profile_openvino, "onnx": profile_onnxruntime}
    models: dict[str, Any] = {}
    for entry in load_manifest(folder).present(folder):
        if entry.format not in profilers or entry.batch != 1:
            continue
        name = f"{entry.format} {entry.precision}"
        try:
            layers = profilers[entry.format](folder, entry, frames(entry, args.frames), args.threads)
        except (ImportError, RuntimeError) as error:
            models[name] = {"error": str(error).splitlines()[0]}
            continue
        models[name] = summarise(layers, args.top)
        print(f"{name:<16} {models[name]['total_ms']:8.2f} ms  {models[name]['ms_by_kernel_precision']}")
    result = {"threads": args.threads, "frames": args.frames, "models": models,
              "machine": environment.summary()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(f"-> {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

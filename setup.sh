#!/usr/bin/env bash
# Set up kpnet-edge in ./.venv. Usage: ./setup.sh [extras]   (default extras: torch, onnx)
#   ./setup.sh tflite   a device: detect with the shipped INT8 TFLite model (no torch)
#   ./setup.sh          detect with the shipped PyTorch model (torch, onnx)
#   ./setup.sh dev      everything: converters, training, reports, tests
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-torch,onnx}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU wheel of torch 2.13.0; an open range would pull a multi-GB CUDA build.
case ",$extras," in
  *,dev,*|*,torch,*|*,convert,*|*,train,*) .venv/bin/python -m pip install --quiet "torch==2.13.0" ;;
esac
.venv/bin/python -m pip install --quiet -e ".[$extras]"
echo "kpnet-edge is set up in $(pwd)/.venv ($extras)"

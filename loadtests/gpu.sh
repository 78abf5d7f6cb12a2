#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one command (`make bench-gpu`), on a machine with an NVIDIA
# GPU, onnxruntime-gpu in the virtualenv and, unless UNET and AUDIO_ENCODER name ONNX models, PyTorch
# (which `make venv` installs) to export default-initialised ones. Writes JSON into $OUT (default artifacts/gpu):
#
#   gpu.csv                    the GPU, its memory and driver (nvidia-smi)
#   engine.json                UNet-328 alone by batch size, float32 and float16 (`fp16`), with and
#                              without host copies, fp16 against fp32 on the GPU, the stages, and
#                              float32 frames/s through the server's runner (loadtests/bench_engine.py)
#   streams-P-bB.json          viewers at 25 fps held by a real lipsync-server at p99 < 100 ms, precision
#                              P, --max-batch B: streams per GPU and per CPU core (loadtests/served_streams.py)
#
# Environment: OUT, PYTHON (default .venv/bin/python), UNET and AUDIO_ENCODER (ONNX models; default:
# exported here), PRECISIONS (default "fp32 fp16"), BATCHES (default "8 16 32"), BATCH_SIZES of the
# model alone (default 1,2,4,8,16,32), STEP_SECONDS (default 5). About 12 minutes on an H100 or H200.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-artifacts/gpu}"
PYTHON="${PYTHON:-.venv/bin/python}"
PRECISIONS="${PRECISIONS:-fp32 fp16}"
BATCHES="${BATCHES:-8 16 32}"
BATCH_SIZES="${BATCH_SIZES:-1,2,4,8,16,32}"
STEP_SECONDS="${STEP_SECONDS:-5}"
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.csv"
"$PYTHON" -c 'import onnxruntime as o; p = o.get_available_providers(); print(o.__version__, p)
assert "CUDAExecutionProvider" in p, "onnxruntime has no CUDA provider: install onnxruntime-gpu"'

if [[ -z "${UNET:-}" || -z "${AUDIO_ENCODER:-}" ]]; then
  mkdir -p "$OUT/models"
  "$PYTHON" -c 'import sys; from pathlib import Path; from loadtests.bench_engine import export_default_models
export_default_models(Path(sys.argv[1]))' "$OUT/models"
  UNET="$OUT/models/unet.onnx"
  AUDIO_ENCODER="$OUT/models/audio_encoder.onnx"
fi

"$PYTHON" loadtests/bench_engine.py --unet "$UNET" --audio-encoder "$AUDIO_ENCODER" --device cuda \
  --batches "$BATCH_SIZES" --repeats 20 --runner-rounds 0 --fp16 \
  --unet-runner 8,16,32 --unet-runner-rounds 2 --callers 64 --runner-frames 1500 \
  --output "$OUT/engine.json" >/dev/null

for precision in $PRECISIONS; do
  for batch in $BATCHES; do
    "$PYTHON" -m loadtests.served_streams --engine unet328 --device cuda --precision "$precision" --fp16 \
      --unet "$UNET" --audio-encoder "$AUDIO_ENCODER" --max-batch "$batch" \
      --start 10 --step 5 --max 200 --step-seconds "$STEP_SECONDS" \
      --json "$OUT/streams-$precision-b$batch.json" >/dev/null
  done
done
echo "GPU figures in $OUT"

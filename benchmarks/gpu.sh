#!/usr/bin/env bash
# mmgpt's bench table on a CUDA GPU, as one prepared command (for a lent GPU machine):
#
#   bash benchmarks/gpu.sh                   # every row: train fp32/bf16/compiled, decode eager/compiled,
#                                            # packing, cache, loader (pinned memory), serve, log-mel, MFU
#   ONLY=train,compiled bash benchmarks/gpu.sh
#
# On CUDA the bench runs mmgpt against transformers' Llava at equal size with bf16 autocast rows,
# SDPA attention (the decoders' default), pinned-memory data workers and the compiled rows, and
# writes OUT/bench.json and OUT/BENCHMARKS.md (the table, with the GPU's name) to paste into
# BENCHMARKS.md. Without a GPU it falls back to the CPU with --quick (tiny sizes, one repeat): a
# check that the script and every measurement run, not a measurement.
#
# Environment: OUT (default runs/bench_gpu), ONLY (comma-separated ids or groups; default all),
# PYTHON (default .venv/bin/python if present, else python3), EXTRA (more `mmgpt bench` arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-runs/bench_gpu}
mkdir -p "$OUT"

if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE=cuda
  MODE=()
  "$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")'
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader || true
else
  DEVICE=cpu
  MODE=(--quick)
  echo "no CUDA device: CPU fallback with --quick (checks the script, measures nothing)"
fi

ARGS=(-m mmgpt.cli bench --device "$DEVICE" --out "$OUT" --markdown "$OUT/BENCHMARKS.md" "${MODE[@]}")
if [ -n "${ONLY:-}" ]; then ARGS+=(--only "$ONLY"); fi
# shellcheck disable=SC2206  # EXTRA is split into words on purpose
if [ -n "${EXTRA:-}" ]; then ARGS+=($EXTRA); fi
ARGS+=(--note "benchmarks/gpu.sh on $DEVICE")
echo "+ $PYTHON ${ARGS[*]}"
"$PYTHON" "${ARGS[@]}"
echo "table: $OUT/BENCHMARKS.md"

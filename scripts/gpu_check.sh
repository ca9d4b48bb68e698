#!/usr/bin/env bash
# The GPU checks, as one script for a machine with an NVIDIA GPU (which has
# no Rust toolchain). Prepare here, then run it there with `run`:
#
#   cargo build --release --features cuda
#   cargo test --release --features cuda --test gpu --no-run   # note the test binary path
#   mkdir -p .gpu && cp target/release/scratchnet .gpu/ && cp <test binary> .gpu/gpu-tests
#   cp ../shared/seed/000_2d80a8ec39b9354a.txt .gpu/notebook.txt
#   cp ../shared/data/mnist.pkl.gz .gpu/
#   run: bash scripts/gpu_check.sh   (carry: [".gpu"])
#
# Results go to $OUT: the parity and kernel tests, the full seed preset on the
# GPU (time and accuracy), the notebook under cupy and scratchnet for the same
# number of iterations (the ratio), and `bench --device cuda`.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
ITERS=${ITERS:-500}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
# A GPU test that cannot open the device fails here instead of skipping.
SCRATCHNET_REQUIRE_GPU=1 ./.gpu/gpu-tests --nocapture --test-threads 1 > "$OUT/gpu-tests.txt" 2>&1
echo "gpu tests: rc=$?" | tee -a "$OUT/summary.txt"
/usr/bin/time -f "%e s" ./.gpu/scratchnet train --preset seed --device cuda \
    --metrics "$OUT/seed-gpu.jsonl" --save "$OUT/seed-gpu.safetensors" \
    > "$OUT/seed-gpu.txt" 2>&1
tail -3 "$OUT/seed-gpu.txt" | tee -a "$OUT/summary.txt"
python3 scripts/notebook_cupy.py .gpu/notebook.txt .gpu/mnist.pkl.gz "$ITERS" \
    > "$OUT/cupy.txt" 2>&1
tail -1 "$OUT/cupy.txt" | tee -a "$OUT/summary.txt"
./.gpu/scratchnet train --preset seed --device cuda --iters "$ITERS" --eval-every 1000000 \
    > "$OUT/scratchnet-iters.txt" 2>&1
tail -1 "$OUT/scratchnet-iters.txt" | tee -a "$OUT/summary.txt"
./.gpu/scratchnet bench --device cuda --runs 5 > "$OUT/bench-gpu.txt" 2>&1
cat "$OUT/bench-gpu.txt" >> "$OUT/summary.txt"

#!/usr/bin/env bash
# One short, prepared check for a machine with accelerators (issue 32):
#   1. the compress step's FLOP/s against the same process's GEMM rate
#      (benchmarks/step_flops.py) at the README's batch and at a batch an
#      accelerator would use;
#   2. `keras-guide compress` of the README's teacher for about MINUTES minutes
#      of training on every local device (data parallel), its report and the
#      llama.cpp checks that follow.
#
#   benchmarks/gpu_check.sh OUT [MINUTES]     # MINUTES defaults to 10
#
# Set up as the README says, plus the accelerator's JAX wheel (on NVIDIA:
# `pip install "jax[cuda12]"`). Everything it prints is also under OUT; on a
# machine without accelerators it runs the same steps on the CPU (a dry run,
# 8 rows a step: `ROWS=8 benchmarks/gpu_check.sh /tmp/check 1`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benchmarks/gpu_check.sh OUT [MINUTES]}
minutes=${2:-10}
rows=${ROWS:-32}  # rows per device per step
python=${PYTHON:-.venv/bin/python}
export KERAS_BACKEND=jax
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total \
  --format=csv || true
read -r platform devices < <("$python" - <<'PY'
import jax
print(jax.default_backend(), jax.device_count())
PY
)
echo "JAX platform: $platform, devices: $devices"

# 1. Step FLOP/s over GEMM FLOP/s on one device (the ratio is the third line
#    from the end), at the README's batch and at ROWS rows (32).
for batch in 8 "$rows"; do
  "$python" benchmarks/step_flops.py --teacher smollm2 --batch-size "$batch" \
    --steps 6 --gemm 4096 | tee "$out/step_flops_batch$batch.txt" | tail -n 3
done

# 2. A compress of about $minutes minutes, ROWS rows per device (32): the step time
#    measured above sets the step count, so the run fits the time anywhere.
seconds_per_step=$("$python" - "$out/step_flops_batch$rows.txt" <<'PY'
import json, sys
print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["step_s"])
PY
)
steps=$("$python" -c "print(max(20, int($minutes * 60 / $seconds_per_step)))")
echo "compress: $steps steps of batch $((rows * devices)) ($seconds_per_step s per step)"
"$python" -m keras_guide.cli compress smollm2 --size 25% --text shakespeare:train \
  --eval shakespeare:test --out "$out/compress" --overwrite --steps "$steps" \
  --batch-size $((rows * devices)) --devices "$devices" \
  --checkpoint-every $((steps / 5 + 1))

#!/usr/bin/env bash
# Runs the test suite once per Keras backend (the backend is fixed at import).
# Fails if any backend fails or collects no test (pytest exit code 5).
#
# The backends run side by side, JOBS at a time (default 2): much of a run is
# single-threaded tracing and compilation. On this project's 2-core machine
# (2026-12-05, a study sharing the CPU) the three took 35 minutes side by side:
# JAX 35 (its XLA programs shared through a per-session cache, see
# tests/conftest.py), TensorFlow 20 and PyTorch 15 after it. Each backend's
# output is printed whole when it ends; JOBS=1 runs them in turn.
set -u
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
jobs=${JOBS:-2}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run() {
  local backend=$1
  local start=$SECONDS
  KERAS_BACKEND=$backend "$python" -m pytest -q -p no:cacheprovider "${@:2}" \
    > "$logs/$backend.log" 2>&1
  local rc=$?
  echo "$rc $((SECONDS - start))" > "$logs/$backend.rc"
}

backends=(${BACKENDS:-jax tensorflow torch})
for backend in "${backends[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n
  done
  run "$backend" "$@" &
done
wait

status=0
for backend in "${backends[@]}"; do
  rc=1 seconds="?"
  [ -f "$logs/$backend.rc" ] && read -r rc seconds < "$logs/$backend.rc"
  echo "=== KERAS_BACKEND=$backend (${seconds} s) ==="
  cat "$logs/$backend.log"
  if [ "$rc" -ne 0 ]; then
    echo "backend $backend failed (pytest exit code $rc)"
    status=1
  fi
done
exit $status

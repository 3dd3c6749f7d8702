#!/usr/bin/env bash
# Runs the test suite once per Keras backend (the backend is fixed at import).
# Fails if any backend fails or collects no test (pytest exit code 5).
set -u
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
status=0
for backend in ${BACKENDS:-jax tensorflow torch}; do
  echo "=== KERAS_BACKEND=$backend ==="
  KERAS_BACKEND=$backend "$python" -m pytest -q -p no:cacheprovider "$@"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "backend $backend failed (pytest exit code $rc)"
    status=1
  fi
done
exit $status

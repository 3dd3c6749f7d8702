"""Every family's guided student is the same, bit for bit, on JAX, TensorFlow
and PyTorch: its values come from host float64 math on the teacher's values."""

import json
import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_DIGESTS = """
import hashlib, json, keras, numpy as np
from keras_guide import build_student, guide
from tests.harness import families as harness
digests = {}
for seed, (name, family) in enumerate(sorted(harness.FAMILIES.items())):
    teacher = harness.numpy_teacher(family, seed)
    values = []
    for sizes, options in (({}, dict(norm="fold")), (family.narrow, {})):
        student = build_student(teacher, **sizes)
        guide(teacher, student, **options)
        values += [keras.ops.convert_to_numpy(w).tobytes() for w in student.weights]
    digests[name] = hashlib.sha256(b"".join(values)).hexdigest()
print("RESULT " + json.dumps(digests))
"""


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="spawns all three backends itself; running it once (under jax) suffices",
)
def test_every_family_guides_the_same_student_on_every_backend():
    from tests.harness import families as harness

    digests = {}
    for backend in ("jax", "tensorflow", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run(
            [sys.executable, "-c", _DIGESTS],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=900,
        )
        lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        assert out.returncode == 0 and lines, out.stderr[-3000:]
        digests[backend] = json.loads(lines[-1][len("RESULT ") :])
    assert sorted(digests["jax"]) == sorted(harness.FAMILIES)
    for name in harness.FAMILIES:
        by_backend = {backend: d[name] for backend, d in digests.items()}
        assert len(set(by_backend.values())) == 1, (name, by_backend)

import hashlib
import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_is_light():
    code = "import sys, keras_guide; print(sorted(m for m in ('keras_hub', 'tensorflow', 'torch') if m in sys.modules))"
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


_DIGEST = """
import hashlib, keras, numpy as np
from keras_guide import GuidedInitializer, pca_projection
rng = np.random.default_rng(7)
table = rng.normal(size=(300, 48)).astype("float32")
kernel = rng.normal(size=(48, 4, 12)).astype("float32")
p = pca_projection(table, 20, mean_preserving=True)
values = [
    GuidedInitializer(table, {1: p})((300, 20), "float32"),
    GuidedInitializer(kernel, {0: p}, {1: "uniform"}, gains={0: rng.normal(size=48)}, scale=1.5)((20, 2, 12), "float32"),
]
print(hashlib.sha256(b"".join(keras.ops.convert_to_numpy(v).tobytes() for v in values)).hexdigest())
"""


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="spawns all three backends itself; running it once (under jax) suffices",
)
def test_student_weights_bit_identical_on_all_backends():
    digests = {}
    for backend in ("jax", "tensorflow", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend)
        out = subprocess.run([sys.executable, "-c", _DIGEST], capture_output=True, text=True, env=env, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-2000:]
        digests[backend] = out.stdout.strip().splitlines()[-1]
    assert len(set(digests.values())) == 1, digests

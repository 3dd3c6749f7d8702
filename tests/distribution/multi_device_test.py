"""Two simulated devices: guide() and Distiller.fit under DataParallel and
ModelParallel (JAX), and under MirroredStrategy (TensorFlow).

Device counts are fixed when a backend starts, so each scenario is a script in
`scenarios/` run in its own process; it prints its measurements and the tests
here assert on them. Each runs once per CI: the JAX scenarios in the JAX run,
the TensorFlow one in the TensorFlow run.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

_SCENARIOS = pathlib.Path(__file__).parent / "scenarios"
_ROOT = _SCENARIOS.parents[2]
_TOL = 1e-6

jax_only = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="spawns its own JAX process with 2 simulated devices; the JAX run suffices",
)
tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="spawns its own TensorFlow process with 2 logical CPUs; "
    "the TensorFlow run suffices",
)


def _run(script, backend, devices=2):
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        PYTHONPATH=str(_ROOT),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    if backend == "jax":
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={devices}"
        ).strip()
    done = subprocess.run(
        [sys.executable, str(_SCENARIOS / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (
        f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def guided():
    return _run("jax_guide.py", "jax")


@pytest.fixture(scope="module")
def fitted():
    return _run("jax_fit.py", "jax")


@pytest.fixture(scope="module")
def mirrored():
    return _run("tf_mirrored_fit.py", "tensorflow")


@jax_only
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_guide_gives_the_one_device_student_under_both_distributions(guided, family):
    assert guided["devices"] == 2
    result = guided[family]
    # Host float64 math and exact assignment: bit-identical, not merely close.
    assert result["data_parallel_diff"] == 0.0
    assert result["model_parallel_diff"] == 0.0
    assert result["sharded_student_weights"] > 0
    assert result["layout_mismatches"] == []


@jax_only
def test_pca_of_a_sharded_table_gathers_at_most_one_copy_and_keeps_none(guided):
    pca = guided["pca"]
    assert pca["sharded"]
    assert pca["peak_bytes"] <= 1.25 * pca["table_bytes"], pca
    assert not pca["host_copy_kept_on_teacher"], pca


@jax_only
def test_row_chunks_read_a_sharded_table_without_a_full_copy(guided):
    rows = guided["row_chunks"]
    assert rows["gram_max_diff"] == 0.0
    # 4096 of 32768 rows at a time: far below one copy of the table.
    assert rows["peak_bytes"] < 0.75 * rows["table_bytes"], rows
    assert not rows["host_copy_kept_on_teacher"]


@jax_only
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_data_parallel_fit_matches_one_device_fit(fitted, family):
    result = fitted[family]
    assert result["moved"] > 1e-2  # fit changed the student...
    assert result["data_parallel_diff"] < _TOL  # ...identically on 2 devices.
    assert result["teacher_unchanged"]


@jax_only
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_model_parallel_fit_keeps_the_layout_map_sharding(fitted, family):
    result = fitted[family]
    assert result["sharded_by_layout"] > 0
    assert result["layout_mismatches"] == []
    # Momentum slots follow their variables' layouts.
    assert result["optimizer_slots_sharded"] == result["student_trainable_sharded"] > 0
    assert result["model_parallel_diff"] < _TOL


@tensorflow_only
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_mirrored_strategy_runs_the_fit_on_two_replicas(mirrored, family):
    result = mirrored[family]
    assert result["strategy"] == "MirroredStrategy" and result["replicas"] == 2
    assert result["mirrored_variables"] > 0
    assert result["moved"] > 1e-2


@tensorflow_only
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_mirrored_distiller_fit_matches_one_device_fit(mirrored, family):
    # The Distiller divides its loss by the replica count (what Keras'
    # TensorFlow trainer expects of compute_loss): mirrored fit == one-device fit.
    assert mirrored[family]["mirrored_diff"] < _TOL

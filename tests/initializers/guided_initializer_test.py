import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_guide import GuidedInitializer
from keras_guide.initializers import pca_projection

TABLE = np.random.default_rng(0).normal(size=(40, 16)).astype("float32")
KERNEL = np.random.default_rng(1).normal(size=(16, 24)).astype("float32")


def _student(projection):
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(
        40,
        8,
        embeddings_initializer=GuidedInitializer(TABLE, {1: projection}, name="wte"),
    )(inputs)
    x = keras.layers.Dense(
        12,
        kernel_initializer=GuidedInitializer(
            KERNEL, {0: projection}, {1: "uniform"}, name="fc"
        ),
    )(x)
    return keras.Model(inputs, x)


def test_initializes_keras_layers_with_guided_values():
    p = pca_projection(TABLE, 8)
    model = _student(p)
    embedding, kernel = model.layers[1].embeddings, model.layers[2].kernel
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(embedding), TABLE @ p.matrix, rtol=1e-5, atol=1e-6
    )
    expected = p.matrix.T @ KERNEL[:, 0::2]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(kernel), expected, rtol=1e-5, atol=1e-6
    )


def test_accepts_keras_variables_and_does_not_modify_them():
    teacher = keras.Variable(KERNEL)
    before = keras.ops.convert_to_numpy(teacher).copy()
    init = GuidedInitializer(teacher, select={0: "first", 1: [0, 5, 7]})
    value = keras.ops.convert_to_numpy(init((4, 3), "float32"))
    np.testing.assert_array_equal(value, KERNEL[:4][:, [0, 5, 7]])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(teacher), before)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_dtype_is_honoured(dtype):
    value = GuidedInitializer(KERNEL, scale=0.5)((16, 24), dtype)
    assert keras.backend.standardize_dtype(value.dtype) == dtype


def test_config_round_trip_keeps_recipe_drops_teacher():
    init = GuidedInitializer(
        KERNEL, select={1: "uniform"}, scale=2.0, fallback="zeros", name="fc"
    )
    config = init.get_config()
    assert config["teacher"] is None and config["select"] == {"1": "uniform"}
    restored = GuidedInitializer.from_config(config)
    assert restored.select == {1: "uniform"} and restored.scale == 2.0
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored((3, 2), "float32")), np.zeros((3, 2))
    )
    again = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(again, GuidedInitializer)


def test_errors_name_the_weight_and_both_shapes():
    p = pca_projection(TABLE, 8)
    with pytest.raises(
        ValueError,
        match=r"`fc`.*larger than the teacher's on axis 1.*\(8, 30\).*\(16, 24\)",
    ):
        GuidedInitializer(KERNEL, {0: p}, name="fc")((8, 30), "float32")
    with pytest.raises(ValueError, match=r"`fc` has rank 2.*rank 1"):
        GuidedInitializer(KERNEL, name="fc")((16,), "float32")
    with pytest.raises(ValueError, match=r"`select` names axis 2.*\(16, 24\)"):
        GuidedInitializer(KERNEL, select={2: "uniform"}, name="fc")


def test_saved_student_loads_in_fresh_process_without_teacher(tmp_path):
    p = pca_projection(TABLE, 8)
    model = _student(p)
    path = str(tmp_path / "student.keras")
    model.save(path)
    expected = keras.ops.convert_to_numpy(model(np.arange(5)[None]))
    np.save(tmp_path / "expected.npy", expected)
    expected_path = str(tmp_path / "expected.npy")
    code = textwrap.dedent(
        f"""
        import numpy as np, keras
        import keras_guide  # registers the serializable classes
        model = keras.saving.load_model({path!r})
        out = keras.ops.convert_to_numpy(model(np.arange(5)[None]))
        np.testing.assert_allclose(out, np.load({expected_path!r}), rtol=1e-6)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout

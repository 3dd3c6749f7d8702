import keras
import numpy as np
import pytest

from keras_guide.workflows import checkpoint


def _model(seed=0, width=3, name="dense"):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(width, name=name)(inputs))


def _values(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


def test_variables_round_trip_and_float16_rounds(tmp_path):
    path = str(tmp_path / "w.npz")
    source, target = _model(0), _model(1)
    checkpoint.save_variables(source.weights, path)
    checkpoint.load_variables(target.weights, path)
    for got, want in zip(_values(target.weights), _values(source.weights)):
        np.testing.assert_array_equal(got, want)
    checkpoint.save_variables(source.weights, path, dtype="float16", compressed=True)
    checkpoint.load_variables(target.weights, path)
    for got, want in zip(_values(target.weights), _values(source.weights)):
        np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))


def test_older_key_formats_still_load(tmp_path):
    model = _model(0)
    values = [np.full(v.shape, i + 1.0, "float32") for i, v in enumerate(model.weights)]
    shipped = {f"{i:03d}:{v.path}": values[i] for i, v in enumerate(model.weights)}
    np.savez(tmp_path / "teacher.npz", **shipped)
    checkpoint.load_variables(model.weights, str(tmp_path / "teacher.npz"))
    assert [float(v.max()) for v in _values(model.weights)] == [1.0, 2.0]
    unnamed = {f"{i:05d}": a * 3 for i, a in enumerate(values)}
    np.savez(tmp_path / "optimizer.npz", **unnamed)
    checkpoint.load_variables(model.weights, str(tmp_path / "optimizer.npz"))
    assert [float(v.max()) for v in _values(model.weights)] == [3.0, 6.0]


def test_another_model_is_refused_naming_the_weight(tmp_path):
    path = str(tmp_path / "w.npz")
    checkpoint.save_variables(_model(0).weights, path)
    with pytest.raises(ValueError, match="holds 2 arrays but 1 variables"):
        checkpoint.load_variables(_model(0).weights[:1], path)
    with pytest.raises(ValueError, match=r"dense/kernel of shape \(4, 5\)"):
        checkpoint.load_variables(_model(0, width=5).weights, path)
    renamed = _model(0, name="other")
    with pytest.raises(ValueError, match="other/kernel"):
        checkpoint.load_variables(renamed.weights, path)
    checkpoint.load_variables(renamed.weights, path, check_paths=False)


def test_a_run_checkpoint_restores_the_student_step_and_optimizer(tmp_path):
    student = _model(0)
    optimizer = keras.optimizers.Adam(1e-2)
    student.compile(optimizer=optimizer, loss="mse")
    student.fit(np.ones((4, 4)), np.zeros((4, 3)), verbose=0)
    directory = checkpoint.checkpoint_dir(str(tmp_path))
    assert checkpoint.restore(directory, 10) == (0, None)
    checkpoint.save(directory, student, optimizer, step=4, num_steps=10)
    with pytest.raises(ValueError, match="same `num_steps`"):
        checkpoint.restore(directory, 12)
    step, restored = checkpoint.restore(directory, 10)
    assert step == 4
    for got, want in zip(_values(restored.weights), _values(student.weights)):
        np.testing.assert_array_equal(got, want)
    fresh = keras.optimizers.Adam(1e-2)
    checkpoint.restore_optimizer(directory, fresh, restored.trainable_variables)
    for got, want in zip(_values(fresh.variables), _values(optimizer.variables)):
        np.testing.assert_array_equal(got, want)

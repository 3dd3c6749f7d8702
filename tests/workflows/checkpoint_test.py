import json
import os

import keras
import numpy as np
import pytest

from keras_guide.workflows import checkpoint
from keras_guide.workflows.run import record


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


def _trained(seed=0):
    student = _model(seed)
    optimizer = keras.optimizers.Adam(1e-2)
    student.compile(optimizer=optimizer, loss="mse")
    student.fit(np.ones((4, 4)), np.zeros((4, 3)), verbose=0)
    return student, optimizer


def test_a_run_checkpoint_restores_the_student_step_and_optimizer(tmp_path):
    student, optimizer = _trained()
    directory = checkpoint.checkpoint_dir(str(tmp_path))
    target = _model(1)
    assert checkpoint.latest(directory) is None
    assert checkpoint.restore(directory, target) is None
    settings = {"num_steps": 10, "learning_rate": 0.1}
    path = checkpoint.save(directory, student, optimizer, 4, 10, settings)
    assert sorted(os.listdir(path)) == [
        "manifest.json",
        "optimizer.npz",
        "state.json",
        "student.keras",
    ]
    with pytest.raises(
        checkpoint.ResumeError,
        match=r"learning_rate: 0\.1 -> 0\.2; num_steps: 10 -> 12",
    ):
        checkpoint.restore(directory, target, {"num_steps": 12, "learning_rate": 0.2})
    for got, want in zip(_values(target.weights), _values(_model(1).weights)):
        np.testing.assert_array_equal(got, want)  # a refused resume loads nothing
    found = checkpoint.restore(directory, target, settings)
    assert (found.step, found.num_steps, found.path) == (4, 10, path)
    for got, want in zip(_values(target.weights), _values(student.weights)):
        np.testing.assert_array_equal(got, want)
    fresh = keras.optimizers.Adam(1e-2)
    checkpoint.restore_optimizer(found, fresh, target.trainable_variables)
    for got, want in zip(_values(fresh.variables), _values(optimizer.variables)):
        np.testing.assert_array_equal(got, want)


def test_the_newest_complete_set_wins_and_torn_ones_are_named(tmp_path):
    student, optimizer = _trained()
    directory = str(tmp_path)
    for step in (2, 4, 6):
        checkpoint.save(directory, student, optimizer, step, 10, keep=3)
    six, four = (os.path.join(directory, f"step-{k:08d}") for k in (6, 4))
    with open(os.path.join(six, "optimizer.npz"), "r+b") as f:
        f.truncate(100)
    with open(os.path.join(four, "manifest.json"), "w") as f:
        f.write('{"step": 4, "fil')
    found = checkpoint.latest(directory)
    assert found.step == 2
    assert "step-00000006: optimizer.npz does not match its hash" in found.describe()
    assert "step-00000004: unreadable manifest" in found.describe()
    os.remove(os.path.join(six, "manifest.json"))
    assert "step-00000006: no manifest" in checkpoint.latest(directory).describe()


def test_older_sets_are_pruned_once_a_newer_one_is_complete(tmp_path):
    student, optimizer = _trained()
    directory = str(tmp_path)
    os.makedirs(os.path.join(directory, "step-00000001"))  # a torn early save
    for step in (2, 4, 6):
        checkpoint.save(directory, student, optimizer, step, 10)
    assert sorted(os.listdir(directory)) == ["step-00000004", "step-00000006"]
    # Saving a step again (a run resumed from an older set) replaces it whole.
    checkpoint.save(directory, student, optimizer, 6, 10, {"run": 2})
    assert checkpoint.latest(directory).settings == {"run": 2}


def test_an_atomic_write_that_fails_keeps_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "record.json")
    checkpoint.write_json(path, {"old": 1})

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoint.write_atomic(path, fail)
    assert os.listdir(tmp_path) == ["record.json"]
    with open(path) as f:
        assert json.load(f) == {"old": 1}


def test_the_model_digest_is_its_content_not_its_names(tmp_path):
    a, b = _model(0), _model(0, name="renamed")
    assert record.model_digest(a) == record.model_digest(b)
    assert record.model_digest(a) != record.model_digest(_model(1))
    a.save(tmp_path / "a.keras")
    loaded = keras.saving.load_model(tmp_path / "a.keras")
    assert record.model_digest(loaded) == record.model_digest(a)


@pytest.mark.parametrize(
    "edit, reason",
    [
        (
            lambda m: m["files"].update({"../../secret.txt": "0" * 64}),
            "the manifest lists .*secret.txt",
        ),
        (lambda m: m.update(files={}), r"the manifest lists \[\]"),
        (lambda m: m.update(step=99), "the manifest's step 99 of 10 is not this set's"),
        (lambda m: m.update(step=2), "the manifest's step 2 of 10 is not this set's"),
        (lambda m: m.update(num_steps="ten"), "the manifest's step 4 of 'ten'"),
    ],
)
def test_a_manifest_is_read_not_trusted(tmp_path, edit, reason):
    import json
    import re

    student, optimizer = _trained()
    directory = str(tmp_path)
    for step in (2, 4):
        checkpoint.save(directory, student, optimizer, step, 10, keep=3)
    path = os.path.join(directory, "step-00000004", "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)
    found = checkpoint.latest(directory)
    assert found.step == 2
    assert re.search("step-00000004: " + reason, found.describe()), found.describe()

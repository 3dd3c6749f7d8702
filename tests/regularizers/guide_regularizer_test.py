import json
import zipfile

import keras
import numpy as np
import pytest

from keras_guide import GuideRegularizer
from keras_guide import set_guide_strength
from keras_guide.regularizers import track_guide_state

RNG = np.random.default_rng(0)
TARGET = RNG.normal(size=(4, 3)).astype("float32")


def test_penalty_matches_numpy_reference():
    w = RNG.normal(size=(4, 3)).astype("float32")
    reg = GuideRegularizer(TARGET, strength=0.3)
    expected = 0.3 * np.mean((w.astype(np.float64) - TARGET) ** 2)
    penalty = float(keras.ops.convert_to_numpy(reg(w)))
    np.testing.assert_allclose(penalty, expected, rtol=1e-6)


def test_shape_mismatch_and_bad_strength_are_explained():
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*target has shape \(4, 3\)"):
        GuideRegularizer(TARGET)(np.zeros((3, 4), "float32"))
    with pytest.raises(ValueError, match=r"non-negative.*strength=-1.0"):
        GuideRegularizer(TARGET, -1.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        GuideRegularizer(np.full((2, 2), np.nan))


def test_shared_strength_variable():
    strength = keras.Variable(0.5, trainable=False)
    a, b = GuideRegularizer(TARGET, strength), GuideRegularizer(TARGET, strength)
    strength.assign(0.0)
    assert float(keras.ops.convert_to_numpy(a(TARGET + 1))) == 0.0
    assert a.strength is b.strength


def test_config_keeps_the_strength_and_leaves_the_target_out():
    reg = GuideRegularizer(TARGET, 0.25)
    assert reg.get_config() == {"target": None, "strength": 0.25}
    with pytest.warns(UserWarning, match="without its target"):
        again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(again, GuideRegularizer)
    assert again.target is None and again.variables() == [again.strength]
    assert float(keras.ops.convert_to_numpy(again.strength)) == 0.25
    assert float(keras.ops.convert_to_numpy(again(TARGET + 1.0))) == 0.0


def test_a_config_saved_with_its_target_still_loads():
    config = {"target": TARGET.tolist(), "strength": 0.5}
    again = GuideRegularizer.from_config(config)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again.target), TARGET)


def _model(strength):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3,
                use_bias=False,
                kernel_initializer="zeros",
                kernel_regularizer=GuideRegularizer(TARGET, strength),
            ),
        ]
    )
    track_guide_state(model)
    return model


def test_penalty_is_in_fit_loss():
    model = _model(0.7)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x, y = RNG.normal(size=(8, 4)), RNG.normal(size=(8, 3))
    loss = model.evaluate(x, y, verbose=0)
    mse = np.mean((0.0 - y) ** 2)
    penalty = 0.7 * np.mean(TARGET.astype(np.float64) ** 2)
    np.testing.assert_allclose(loss, mse + penalty, rtol=1e-5)
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], loss, rtol=1e-5)


def test_strength_change_mid_fit_takes_effect_without_retracing():
    lr, strength, steps, switch_at = 0.5, 3.0, 4, 1
    model = _model(0.0)
    model.compile(optimizer=keras.optimizers.SGD(lr), loss=None)

    class Switch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == switch_at:
                set_guide_strength(self.model, strength)

    traced = []
    original = model.make_train_function

    def counting(force=False):
        traced.append(force)
        return original(force=force)

    model.make_train_function = counting
    model.fit(
        np.zeros((steps, 4)), epochs=1, batch_size=1, verbose=0, callbacks=[Switch()]
    )
    assert traced == [False]
    # Gradient of λ·mean((W − T)²) is 2λ/n (W − T): each step shrinks W − T.
    factor = 1 - 2 * lr * strength / TARGET.size
    expected = TARGET - TARGET * factor ** (steps - switch_at)
    kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
    np.testing.assert_allclose(kernel, expected, rtol=1e-5)


def test_tracked_state_is_not_saved_with_the_model(tmp_path):
    model = _model(0.1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    with pytest.warns(UserWarning, match="without its target"):
        restored = keras.saving.load_model(path)
    assert len(restored.weights) == 1
    regularizer = restored.layers[0].kernel_regularizer
    assert regularizer.target is None
    assert float(keras.ops.convert_to_numpy(regularizer.strength)) == pytest.approx(0.1)


def _guide_regularizer_configs(node, found):
    if isinstance(node, dict):
        if node.get("class_name") == "GuideRegularizer":
            found.append(node["config"])
        for value in node.values():
            _guide_regularizer_configs(value, found)
    elif isinstance(node, list):
        for value in node:
            _guide_regularizer_configs(value, found)
    return found


def test_saved_guided_model_config_holds_no_weight_values(tmp_path):
    from keras_guide import GuidedInitializer
    from keras_guide.initializers import guided_value
    from keras_guide.initializers import pca_projection

    rng = np.random.default_rng(1)
    table = rng.normal(size=(2000, 64)).astype("float32")
    w_teacher = rng.normal(size=(64, 96)).astype("float32")
    m = pca_projection(table, 16)
    project, select = {0: m}, {1: "uniform"}
    target = guided_value(w_teacher, (16, 48), project, select)
    model = keras.Sequential(
        [
            keras.Input((8,), dtype="int32"),
            keras.layers.Embedding(
                2000,
                16,
                embeddings_initializer=GuidedInitializer(table, {1: m}),
                embeddings_regularizer=GuideRegularizer(table @ m.matrix, 0.5),
            ),
            keras.layers.Dense(
                48,
                kernel_initializer=GuidedInitializer(w_teacher, project, select),
                kernel_regularizer=GuideRegularizer(target, 0.5),
            ),
        ]
    )
    track_guide_state(model)
    saved = [keras.ops.convert_to_numpy(w) for w in model.weights]
    path = str(tmp_path / "student.keras")
    model.save(path)

    with zipfile.ZipFile(path) as archive:
        config_text = archive.read("config.json").decode()
    # The targets hold 2000·16 + 16·48 = 32,768 numbers, over 300 kB as JSON.
    assert len(config_text) < 10_000, len(config_text)
    found = _guide_regularizer_configs(json.loads(config_text), [])
    assert found == [{"target": None, "strength": 0.5}] * 2

    with pytest.warns(UserWarning, match="without its target"):
        restored = keras.saving.load_model(path)
    for weight, value in zip(restored.weights, saved):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), value)
    assert float(sum(keras.ops.convert_to_numpy(x) for x in restored.losses)) == 0.0
    tokens = rng.integers(0, 2000, size=(4, 8)).astype("int32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(tokens)),
        keras.ops.convert_to_numpy(model(tokens)),
    )
    restored.compile(optimizer="sgd", loss="mse")
    restored.fit(tokens, np.zeros((4, 8, 48)), epochs=1, verbose=0)


def test_guide_regularizers_on_a_keras_hub_student_are_not_saved(tmp_path):
    import keras_hub

    from keras_guide import build_student
    from keras_guide import guide

    teacher = keras_hub.models.GPT2Backbone(
        vocabulary_size=512,
        num_layers=2,
        num_heads=4,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    student = build_student(teacher, hidden_dim=16, num_heads=2, intermediate_dim=32)
    guide(teacher, student, regularize=0.5)
    assert any(w.regularizer is not None for w in student.weights)
    path = str(tmp_path / "student.keras")
    student.save(path)
    with zipfile.ZipFile(path) as archive:
        config_text = archive.read("config.json").decode()
    assert "GuideRegularizer" not in config_text and len(config_text) < 2_000
    restored = keras.saving.load_model(path)
    for weight, original in zip(restored.weights, student.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(weight), keras.ops.convert_to_numpy(original)
        )
    assert all(w.regularizer is None for w in restored.weights)

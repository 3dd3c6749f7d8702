import keras
import numpy as np
import pytest

from keras_guide import GuideRegularizer
from keras_guide import set_guide_strength
from keras_guide import track_guide_state

RNG = np.random.default_rng(0)
TARGET = RNG.normal(size=(4, 3)).astype("float32")


def test_penalty_matches_numpy_reference():
    w = RNG.normal(size=(4, 3)).astype("float32")
    reg = GuideRegularizer(TARGET, strength=0.3)
    expected = 0.3 * np.mean((w.astype(np.float64) - TARGET) ** 2)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(reg(w))), expected, rtol=1e-6)


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


def test_serialization_round_trip():
    reg = GuideRegularizer(TARGET, 0.25)
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(again, GuideRegularizer)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again.target), TARGET)
    assert float(keras.ops.convert_to_numpy(again.strength)) == 0.25


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
    np.testing.assert_allclose(loss, mse + 0.7 * np.mean(TARGET.astype(np.float64) ** 2), rtol=1e-5)
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
    model.fit(np.zeros((steps, 4)), epochs=1, batch_size=1, verbose=0, callbacks=[Switch()])
    assert traced == [False]
    # Gradient of λ·mean((W − T)²) is 2λ/n (W − T): each step shrinks W − T.
    factor = 1 - 2 * lr * strength / TARGET.size
    expected = TARGET - TARGET * factor ** (steps - switch_at)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[0].kernel), expected, rtol=1e-5)


def test_tracked_state_is_not_saved_with_the_model(tmp_path):
    model = _model(0.1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert len(restored.weights) == 1
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored.layers[0].kernel_regularizer.target), TARGET
    )

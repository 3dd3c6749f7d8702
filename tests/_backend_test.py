"""Each Keras internal `keras_guide._backend` uses still exists and still does
what keras_guide needs; a Keras release that moves one fails here, by name."""

import keras
import numpy as np
import pytest

from keras_guide import _backend


def _dense_model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))


def test_tracked_state_is_training_state_but_not_saved(tmp_path):
    model = _dense_model()
    variable = keras.Variable(1.5, trainable=False, name="tracked")
    _backend.track_state(model, [variable, variable])
    assert sum(v is variable for v in model.variables) == 1
    assert all(w is not variable for w in model.weights)
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert len(keras.saving.load_model(path).weights) == len(model.weights)


def test_a_missing_internal_is_named():
    with pytest.raises(_backend.KerasInternalsError, match="object._seed_generators"):
        _backend.track_state(object(), [])


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="only a JAX fit holds the state outside the variables",
)
def test_assign_during_fit_reaches_the_running_jax_step():
    model = _dense_model()
    scale = keras.Variable(0.0, trainable=False, name="scale")
    _backend.track_state(model, [scale])
    model.compile(optimizer="sgd", loss=lambda y, p: scale * keras.ops.mean(p**2))

    class SetScale(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                _backend.assign_during_fit(self.model, scale, 1.0)

    history = model.fit(
        np.ones((4, 3)),
        np.zeros((4, 2)),
        batch_size=1,
        verbose=0,
        callbacks=[SetScale()],
        shuffle=False,
    )
    assert history.history["loss"][0] > 0  # steps 2 and 3 saw the new scale
    assert float(keras.ops.convert_to_numpy(scale)) == 1.0


def test_scale_loss_for_distribution_is_the_identity_on_one_device():
    loss = keras.ops.convert_to_tensor(2.5)
    got = _backend.scale_loss_for_distribution(loss)
    assert float(keras.ops.convert_to_numpy(got)) == 2.5


def test_has_compiled_metrics_follows_compile():
    model = _dense_model()
    model.compile(optimizer="sgd", loss="mse")
    assert not _backend.has_compiled_metrics(model)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert _backend.has_compiled_metrics(model)
    model.compile(optimizer="sgd", loss="mse")  # Keras keeps the metrics
    assert _backend.has_compiled_metrics(model)


def test_call_nodes_finds_a_nested_model_and_its_tensors():
    inner_inputs = keras.Input((3,))
    inner = keras.Model(inner_inputs, keras.layers.Dense(4)(inner_inputs), name="inner")
    inputs = keras.Input((3,))
    hidden = inner(inputs)
    outer = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    assert _backend.is_functional(outer) and _backend.is_functional(inner)
    assert not _backend.is_functional(keras.layers.Dense(2))
    calls = _backend.call_nodes(outer, inner)
    assert len(calls) == 1
    ((call_inputs, call_outputs),) = calls
    assert [id(t) for t in call_inputs] == [id(inputs)]
    assert [id(t) for t in call_outputs] == [id(hidden)]


def test_sublayers_lists_layers_nested_at_any_depth():
    inner = keras.Sequential([keras.layers.Dense(2, name="deep")], name="inner")
    top = keras.layers.Dense(1, name="top")
    outer = keras.Sequential([keras.Input((3,)), inner, top])
    names = [layer.name for layer in _backend.sublayers(outer)]
    assert {"inner", "deep", "top"} <= set(names)


def test_variables_a_failed_run_emptied_are_put_back():
    model = _dense_model()
    model.compile(optimizer="adam", loss="mse")
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
    with pytest.raises(RuntimeError, match="failed step"):
        with _backend.restore_variables_on_error(model):
            if keras.backend.backend() == "jax":
                # What Keras' JAX trainer does when a fit starts
                # (`JAXTrainer._purge_model_variables`); the Distiller's
                # end-to-end test (tests/distillation/distiller_inputs_test.py)
                # fails the same way without this function.
                for variable in model.variables:
                    variable._value = None
            raise RuntimeError("failed step")
    for value, variable in zip(before, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    assert model.optimizer.built or keras.backend.backend() != "jax"


def test_the_global_random_state_round_trips():
    import json

    state = json.loads(json.dumps(_backend.rng_state()))
    if keras.backend.backend() != "torch":
        assert state == {}
        return
    import torch

    first = torch.rand(3)
    _backend.set_rng_state(state)
    assert torch.equal(torch.rand(3), first)

"""`make_distribution`: validation, and the backends it refuses, on every backend."""

import keras
import numpy as np
import pytest

from keras_guide._host import row_chunks
from keras_guide.distribution import make_distribution


@pytest.fixture
def backend(monkeypatch):
    """Makes `make_distribution` see another backend (its only branch point)."""

    def use(name):
        monkeypatch.setattr(keras.backend, "backend", lambda: name)

    return use


def test_pytorch_backend_is_refused_with_the_reason(backend):
    if keras.backend.backend() != "torch":
        backend("torch")
    for kind, parallel in (("data", None), ("model", 2)):
        with pytest.raises(
            NotImplementedError,
            match="does not support the PyTorch backend.*KERAS_BACKEND=jax",
        ):
            make_distribution(kind, model_parallel=parallel)


def test_tensorflow_model_parallelism_is_refused_with_the_fix(backend):
    pytest.importorskip("tensorflow")
    backend("tensorflow")
    with pytest.raises(
        NotImplementedError,
        match="JAX backend only.*kind='data' \\(MirroredStrategy\\)",
    ):
        make_distribution("model", model_parallel=2)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="builds a tf.distribute strategy: TensorFlow runs only",
)
def test_tensorflow_data_parallelism_is_a_mirrored_strategy():
    import tensorflow as tf

    strategy = make_distribution("data")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync >= 1


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution runs on JAX only"
)
def test_jax_data_parallelism_replicates_over_the_given_devices():
    devices = keras.distribution.list_devices()
    distribution = make_distribution("data", devices=devices)
    assert isinstance(distribution, keras.distribution.DataParallel)
    assert distribution.device_mesh.shape == (len(devices),)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(kind="tensor"),
            "`kind` must be one of \\('data', 'model'\\). Received: kind='tensor'",
        ),
        (dict(kind="model"), "needs `model_parallel`.*Received: model_parallel=None"),
        (dict(kind="model", model_parallel=0), "Received: model_parallel=0"),
        (dict(kind="data", model_parallel=2), "applies to `kind='model'` only"),
    ],
)
def test_invalid_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_distribution(**kwargs)


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution runs on JAX only"
)
def test_model_parallelism_needs_models_and_a_dividing_size():
    with pytest.raises(ValueError, match="pass both"):
        make_distribution("model", model_parallel=1)
    with pytest.raises(ValueError, match="must divide the number of devices \\(1\\)"):
        make_distribution(
            "model", object(), object(), model_parallel=2, devices=["cpu:0"]
        )


def test_row_chunks_cover_the_table_in_order():
    table = np.arange(7 * 3, dtype="float32").reshape(7, 3)
    variable = keras.Variable(table)
    for source in (table, variable):
        chunks = list(row_chunks(source, 3))
        assert [c.shape[0] for c in chunks] == [3, 3, 1]
        np.testing.assert_array_equal(np.concatenate(chunks), table)


def test_row_chunks_validate_their_arguments():
    with pytest.raises(ValueError, match=r"2-D table.*shape \(4,\)"):
        list(row_chunks(np.zeros(4), 2))
    with pytest.raises(ValueError, match="Received: chunk_rows=0"):
        list(row_chunks(np.zeros((4, 2)), 0))

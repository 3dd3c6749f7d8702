"""Tiny models, data and float64 NumPy references shared by the tests (not
collected: the name has no `_test` suffix)."""

import keras
import numpy as np

VOCAB = 64
SEQ = 8


def gpt2(hidden=16, layers=1, dtype=None, seed=0):
    """A tiny KerasHub GPT-2 causal LM without preprocessor."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_heads=2,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
        max_sequence_length=16,
        dropout=0.0,
        dtype=dtype,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def lm_batch(rows=8, seed=0):
    """`(x, y, sample_weight)` with right padding of random lengths."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (rows, SEQ + 1)).astype("int32")
    lengths = rng.integers(3, SEQ + 1, rows)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype("int32")
    x = {"token_ids": ids[:, :-1] * mask, "padding_mask": mask}
    return x, ids[:, 1:], mask.astype("float32")


def dense_lm(vocab=12, width=6, seed=0, kernel_regularizer=None, dtype=None, scale=1.0):
    """Embedding → Dense logits: a minimal functional token model; `scale`
    multiplies the head kernel (sharper distributions)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(vocab, width, name="embed", dtype=dtype)(inputs)
    hidden = keras.layers.Dense(width, activation="tanh", name="block", dtype=dtype)(
        hidden
    )
    logits = keras.layers.Dense(
        vocab, name="head", kernel_regularizer=kernel_regularizer, dtype=dtype
    )(hidden)
    model = keras.Model(inputs, logits)
    head = model.get_layer("head")
    head.kernel.assign(keras.ops.convert_to_numpy(head.kernel) * scale)
    return model


def token_batch(rows=6, seq=5, vocab=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, (rows, seq)).astype("int32")
    y = rng.integers(0, vocab, (rows, seq)).astype("int32")
    weight = (rng.random((rows, seq)) < 0.6).astype("float32")
    weight[0, 0] = 1.0
    return x, y, weight


def log_softmax64(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def masked_mean64(values, weight=None):
    values = np.asarray(values, np.float64)
    if weight is None:
        return values.mean()
    weight = np.broadcast_to(np.asarray(weight, np.float64), values.shape)
    return (values * weight).sum() / weight.sum()


def kd_reference(teacher_logits, student_logits, temperature, weight=None):
    log_p = log_softmax64(np.asarray(teacher_logits, np.float64) / temperature)
    log_q = log_softmax64(np.asarray(student_logits, np.float64) / temperature)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    return temperature**2 * masked_mean64(kl, weight)


def ce_reference(labels, logits, weight=None):
    log_q = log_softmax64(logits)
    ce = -np.take_along_axis(log_q, np.asarray(labels)[..., None], -1)[..., 0]
    return masked_mean64(ce, weight)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def value_and_grad(fn, x):
    """`(fn(x), ∂fn/∂x)` as NumPy arrays, on the current backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(jax.numpy.asarray(x))
    elif backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(variable)
        grad = tape.gradient(value, variable)
    elif backend == "torch":
        import torch

        tensor = torch.tensor(x, requires_grad=True)
        value = fn(tensor)
        value.backward()
        grad = tensor.grad
    else:
        raise NotImplementedError(f"No gradient helper for backend {backend}")
    return numpy(value), numpy(grad)


def weights_bytes(model):
    """Every weight of `model` as raw bytes: equality means bit-identical."""
    return [numpy(w).tobytes() for w in model.weights]
